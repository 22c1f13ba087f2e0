"""Who is asking: the API's principal from ``Authorization: Bearer <API key>``.

With ``[govern] require_auth`` (the default) a request without a valid key is refused
(401, and an ``auth_failure`` audit record); with ``require_auth = false`` a request
without a key acts as the project's bootstrap admin (an open, single-user deployment),
while a request that sends a key still acts as that key's principal.

:func:`authenticated` guards every route of the API but ``/api/health`` (for liveness
probes) and the ``/api/events`` stream (a browser's ``EventSource`` cannot send a header;
it carries live aggregates, never rows of the lake).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from fluvial.govern.model import Principal
from fluvial.serve.api.services import Services

__all__ = ["OPEN_PATHS", "Caller", "authenticated", "bearer_key", "principal"]

#: API paths that answer without a key
OPEN_PATHS = frozenset({"/api/health"})


def bearer_key(request: Request) -> str | None:
    """The API key of ``Authorization: Bearer <key>``, or None.

    >>> from starlette.requests import Request as R
    >>> bearer_key(R({"type": "http", "headers": [(b"authorization", b"Bearer fvk_x")]}))
    'fvk_x'
    """
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


def principal(request: Request) -> Principal:
    """The request's principal (a FastAPI dependency).

    Raises:
        AuthenticationError: a missing key while ``require_auth``, or an unknown, revoked
            or disabled key (HTTP 401).
    """
    from fluvial.govern.principals import open_principals

    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:  # authenticated once per request (and audited once on failure)
        return known
    svc: Services = request.app.state.services
    key = bearer_key(request)
    store = open_principals(svc.project)
    if key is None and not svc.settings.govern.require_auth:
        found = store.local_admin()
    else:
        found = store.authenticate(key)
    request.state.principal = found
    return found


def authenticated(request: Request) -> None:
    """Refuse a request without a valid key, but to :data:`OPEN_PATHS` (a router dependency).

    Raises:
        AuthenticationError: as :func:`principal`.
    """
    if request.url.path not in OPEN_PATHS:
        principal(request)


Caller = Annotated[Principal, Depends(principal)]
