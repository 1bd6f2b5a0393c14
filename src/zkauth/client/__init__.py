"""zkauth's Python SDK: log in to an API by proving knowledge of a secret, never sending it.

Three lines for an API consumer::

    import httpx
    from zkauth.client import ZkAuth
    with httpx.Client(auth=ZkAuth.from_file("cred.json"), base_url="https://api.example") as http:
        http.get("/v1/resources/x")

For explicit control, :class:`ZkAuthClient` (blocking) and :class:`AsyncZkAuthClient` expose each
endpoint: ``enroll``, ``login``, ``rotate``, ``resource``. Credentials live in files handled by
:class:`CredentialFile` (mode 0600, atomic writes). Errors are those of :mod:`zkauth.errors` plus
:class:`ServerError` and :class:`EnrollmentRefused` (see :mod:`zkauth.client.errors`).
"""

from zkauth.client._core import Enrollment, Session
from zkauth.client.aio import AsyncZkAuthClient
from zkauth.client.auth import ZkAuth
from zkauth.client.credentials import CredentialFile
from zkauth.client.errors import EnrollmentRefused, RateLimited, Refused, ServerError
from zkauth.client.sync import ZkAuthClient
from zkauth.crypto import Credential

__all__ = [
    "AsyncZkAuthClient",
    "Credential",
    "CredentialFile",
    "Enrollment",
    "EnrollmentRefused",
    "RateLimited",
    "Refused",
    "ServerError",
    "Session",
    "ZkAuth",
    "ZkAuthClient",
]
