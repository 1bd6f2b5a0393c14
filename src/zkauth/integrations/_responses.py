"""The two answers a protected endpoint gives instead of its own: prebuilt, so identical.

The bytes are the zkauth server's own (``zkauth.server.problems``): a client sees the same
refusal from zkauth's resources and from yours, whatever the cause.
"""

from __future__ import annotations

from typing import Final

from zkauth.errors import Refused, ServiceUnavailable
from zkauth.server.problems import PROBLEM_JSON, REFUSED_BODY, WWW_AUTHENTICATE, problem_body

#: Status, headers (beyond the content type) and body.
Answer = tuple[int, dict[str, str], bytes]

UNAVAILABLE_BODY: Final = problem_body(
    503, ServiceUnavailable.code, "Service Unavailable", "a backend is unavailable"
)
REFUSED: Final[Answer] = (401, {"WWW-Authenticate": WWW_AUTHENTICATE}, REFUSED_BODY)
UNAVAILABLE: Final[Answer] = (503, {}, UNAVAILABLE_BODY)


def answer_for(error: Refused | ServiceUnavailable) -> Answer:
    """The prebuilt answer for ``error``; looks at nothing but its type."""
    return REFUSED if isinstance(error, Refused) else UNAVAILABLE


__all__ = ["PROBLEM_JSON", "REFUSED", "UNAVAILABLE", "Answer", "answer_for"]
