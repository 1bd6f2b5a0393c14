"""Deferred statements on PostgreSQL: how a transaction's writes become one statement.

Property tests of the SQL assembly (no database needed); the statements it builds run against
PostgreSQL in ``test_pg_direct.py`` and in the unit-of-work contract suite.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

from zkauth.storage import sql
from zkauth.storage.pg_direct import _in_order, combined_sql
from zkauth.storage.prepared import Prepared
from zkauth.storage.schema import audit_pending, challenges, clients
from zkauth.storage.sql import HOT_POSTGRESQL_STATEMENTS

_DIALECT = PGDialect_asyncpg(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
_INSERTS = [Prepared(s, _DIALECT).sql for s in HOT_POSTGRESQL_STATEMENTS if s.is_insert]
_UPDATES = [Prepared(s, _DIALECT).sql for s in HOT_POSTGRESQL_STATEMENTS if s.is_update]
_GUARDS = [Prepared(sql._TAKE, _DIALECT).sql]
_DIVIDE = ") SELECT 1 / count(*) FROM g"
_PLACEHOLDER = re.compile(r"\$(\d+)")


#: Up to four of the hot inserts, each with up to five rows.
_DEFERRED = st.lists(
    st.tuples(st.sampled_from(_INSERTS), st.integers(min_value=1, max_value=5)),
    min_size=1,
    max_size=4,
    unique_by=lambda insert: insert[0],
)


def _placeholders(sql: str) -> list[int]:
    return [int(n) for n in _PLACEHOLDER.findall(sql)]


def _listed(sql: str) -> list[str]:
    """The names of a statement's WITH queries, as listed."""
    return re.findall(r"(?:WITH |\), )(d\d+|g) AS \(", sql)


def _in_deferral_order(sql: str, count: int) -> list[int]:
    """``sql``'s parameters, the WITH queries taken in the order they were deferred (d0, d1…:
    listed in reverse, so that PostgreSQL runs them in that order)."""
    assert _listed(sql)[-count:] == [f"d{n}" for n in reversed(range(count))]
    blocks = re.split(r"(?:WITH |\), )d\d+ AS \(", sql)[1:]
    return [n for block in reversed(blocks) for n in _placeholders(block)]


@given(_DEFERRED)
def test_the_parameters_are_numbered_in_order_of_the_rows(inserts: list[tuple[str, int]]) -> None:
    """Every row of every insert gets its own run of parameters, in order, none twice, none
    skipped: ``$1…$w`` the first row of the first insert, then its next row, and so on."""
    sql = combined_sql(inserts)
    total = sum(len(_placeholders(insert)) * count for insert, count in inserts)
    for insert, _ in inserts:  # each insert once, with all its rows in its one VALUES list
        assert sql.count(insert.split(" VALUES ")[0]) == 1
    if len(inserts) == 1:
        assert _placeholders(sql) == list(range(1, total + 1))
    else:
        assert _in_deferral_order(sql, len(inserts)) == list(range(1, total + 1))


@given(_DEFERRED, st.sampled_from(_UPDATES))
def test_inserts_riding_with_a_statement_come_first_and_its_parameters_follow(
    inserts: list[tuple[str, int]], main: str
) -> None:
    """In front of ``main``: the inserts' parameters as on their own, then ``main``'s, shifted
    past them, and ``main`` itself is the statement the ``WITH`` queries belong to."""
    sql = combined_sql(inserts, main)
    total = sum(len(_placeholders(insert)) * count for insert, count in inserts)
    assert main.startswith("UPDATE ")
    with_queries, _, rest = sql.rpartition(") UPDATE ")
    assert _in_deferral_order(with_queries + ")", len(inserts)) == list(range(1, total + 1))
    assert _placeholders(rest) == [n + total for n in _placeholders(main)]
    assert _PLACEHOLDER.sub("$", sql).endswith(") " + _PLACEHOLDER.sub("$", main))


def test_one_insert_of_one_row_is_sent_as_it_is() -> None:
    assert combined_sql([(_INSERTS[0], 1)]) == _INSERTS[0]


def test_several_rows_of_an_insert_go_in_one_values_list() -> None:
    one = "INSERT INTO t (a, b) VALUES ($1::VARCHAR, $2::NUMERIC(10, 2)) RETURNING t.id"
    assert combined_sql([(one, 3)]) == (
        "INSERT INTO t (a, b) VALUES ($1::VARCHAR, $2::NUMERIC(10, 2)), "
        "($3::VARCHAR, $4::NUMERIC(10, 2)), ($5::VARCHAR, $6::NUMERIC(10, 2)) RETURNING t.id"
    )


def test_an_insert_without_a_values_list_cannot_take_several_rows() -> None:
    with pytest.raises(ValueError, match="VALUES"):
        combined_sql([("INSERT INTO t (a) SELECT $1::VARCHAR", 2)])


@given(_DEFERRED, st.sampled_from(_GUARDS))
def test_a_guarded_statement_fails_as_a_whole_when_its_guard_returns_no_row(
    inserts: list[tuple[str, int]], guard: str
) -> None:
    """With a guard, the deferred statements' parameters come first, the guard's follow, and
    the statement divides by the guard's row count: no row, and it fails (22012), keeping
    nothing of any of its parts."""
    sql = combined_sql(inserts, guard=guard)
    total = sum(len(_placeholders(insert)) * count for insert, count in inserts)
    assert _listed(sql)[0] == "g"  # read by the main query: it runs first, wherever listed
    guard_part, _, deferred = sql.partition("), d")
    assert _placeholders(guard_part) == [n + total for n in _placeholders(guard)]
    assert _in_deferral_order("WITH d" + deferred, len(inserts)) == list(range(1, total + 1))
    assert _PLACEHOLDER.sub("$", guard_part) == "WITH g AS (" + _PLACEHOLDER.sub("$", guard)
    assert sql.endswith(_DIVIDE)


def test_a_guard_alone_is_its_own_with_query() -> None:
    guard = _GUARDS[0]
    assert combined_sql([], guard=guard) == "WITH g AS (" + guard + _DIVIDE


def test_a_guarded_statement_carries_no_main_statement() -> None:
    with pytest.raises(ValueError, match="guard"):
        combined_sql([(_INSERTS[0], 1)], _UPDATES[0], _GUARDS[0])


def _item(statement: Any, guard: bool = False) -> tuple[Prepared, list[Any], bool]:
    return (Prepared(statement, _DIALECT), [], guard)


def test_deferred_statements_split_where_one_must_see_anothers_rows() -> None:
    """Statements go together unless an UPDATE shares a table with another write (it would not
    see that write's rows in one statement), or a second guard comes: then a new group starts,
    in order."""
    event, challenge, client = audit_pending.insert(), challenges.insert(), clients.insert()
    lockout, take = sql._SAVE_LOCKOUT, sql._TAKE
    groups = _in_order([_item(event), _item(event), _item(lockout), _item(take, guard=True)])
    assert [len(group) for group in groups] == [4]
    groups = _in_order([_item(event), _item(challenge), _item(take, guard=True)])
    assert [len(group) for group in groups] == [2, 1]
    groups = _in_order([_item(client), _item(lockout), _item(event)])
    assert [len(group) for group in groups] == [1, 2]
    groups = _in_order([_item(lockout), _item(client)])
    assert [len(group) for group in groups] == [1, 1]
    groups = _in_order([_item(take, guard=True), _item(take, guard=True)])
    assert [len(group) for group in groups] == [1, 1]
    groups = _in_order([_item(take, guard=True), _item(challenge)])
    assert [len(group) for group in groups] == [1, 1]
