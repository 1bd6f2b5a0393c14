"""The profiler's grouping of py-spy stacks (``python -m bench.profile``), on synthetic samples."""

from __future__ import annotations

import pytest
from bench.load.results import Closed, Usage
from bench.profile import STORE_CALLS, main, summarise

_LOAD = Closed(4, 1000, 1.0, 1000.0, 1.0, 2.0, 0, {}, Usage(1.0, 0.0, 0.2), False)
_MAIN = "thread (1): MainThread"
_UVICORN = "uvicorn/protocols/http/httptools_impl.py"
_ROUTE = f"run_asgi ({_UVICORN}:422);verify (zkauth/server/routes.py:9)"
_UNIT = f"{_ROUTE};Verification.verify (zkauth/service/verification.py:70)"
_IN_TX = f"{_UNIT};transaction (zkauth/service/audit.py:95)"

RAW = "\n".join(
    [
        f"{_MAIN};{_IN_TX};SqlChallengeStore.consume (zkauth/storage/sql.py:315) 30",
        f"{_MAIN};{_IN_TX};SqlChallengeStore.consume (zkauth/storage/sql.py:315);"
        "sqlite3VdbeExec (libsqlite3.so.0.8.6) 20",
        f"{_MAIN};{_IN_TX};SqlAuditLog.append_all (zkauth/storage/sql_audit.py:80) 10",
        f"{_MAIN};{_UNIT};verify (zkauth/crypto/sigma.py:200) 25",
        f"{_MAIN};{_ROUTE};RequestResponseCycle.send ({_UVICORN}:524);write (libc.so.6) 15",
        "thread (2): zkauth-checkpoint;_worker (concurrent/futures/thread.py:81);"
        "0x7f0256aa3f16 (libc.so.6) 400",
        f"{_MAIN};run_forever (loop.c:33192);uv_run (core.c:452);epoll_pwait (libc.so.6) 300",
    ]
)


def test_native_profile_separates_c_work_and_leaves_out_waiting_threads() -> None:
    profile = summarise("verify", _LOAD, RAW, sample_rate=100, seconds=1.0, native=True)
    assert dict(profile.categories) == {
        STORE_CALLS: 30,
        "SQLite's own work (C library, file I/O)": 20,
        "audit trail (events, pending rows, sealing into the hash chain)": 10,
        "proof verification (zkauth.crypto)": 25,
        "writing responses to the socket (send syscalls, loopback TCP)": 15,
    }
    assert profile.samples == 100  # the 700 waiting samples are not work
    assert profile.sampled_ms_per_flow == 1e3 * 100 / 100 / 1000


def test_gil_profile_keeps_every_sample_and_has_no_native_categories() -> None:
    profile = summarise("verify", _LOAD, RAW, sample_rate=100, seconds=1.0)
    categories = dict(profile.categories)
    assert profile.samples == 800
    # Without --native, the C frames fall to the Python caller's category.
    assert categories[STORE_CALLS] == 50
    assert "SQLite's own work (C library, file I/O)" not in categories


def test_census_refuses_the_in_memory_stores(capsys: pytest.CaptureFixture[str]) -> None:
    # They make no database or Redis call to count: a clear refusal, not a table of zeros.
    with pytest.raises(SystemExit) as exited:
        main(["--census", "--backend", "memory"])
    assert exited.value.code == 2
    assert "--census counts database and Redis calls" in capsys.readouterr().err
