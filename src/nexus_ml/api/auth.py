"""API keys and scopes.

Keys are held only as SHA-256 digests: a request's key is hashed and compared
with ``hmac.compare_digest`` against every configured digest, so the check
leaks neither which key matched nor how much of a guessed key was right. Logs and the audit table
see a short fingerprint of the digest, never the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from nexus_ml.config import Scope, Settings

# admin may do everything; monitor and predict are disjoint duties.
_GRANTS: dict[str, frozenset[str]] = {
    "admin": frozenset({"admin", "monitor", "predict"}),
    "monitor": frozenset({"monitor"}),
    "predict": frozenset({"predict"}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's scope and a fingerprint safe to log and audit."""

    scope: Scope
    fingerprint: str

    def allows(self, needed: str) -> bool:
        """Whether this key's scope grants ``needed``."""
        return needed in _GRANTS[self.scope]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeyStore:
    """The configured keys, by digest."""

    def __init__(self, keys: dict[str, Scope]) -> None:
        self._entries = [(_digest(k), s) for k, s in keys.items()]

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, key: str) -> Principal | None:
        """The principal for ``key``, or None.

        Every configured digest is compared, in constant time, on every attempt,
        and the decision is taken after the loop: how long a check takes says
        nothing about which key, or how much of one, was close.
        """
        digest = _digest(key)
        found: Scope | None = None
        for stored, scope in self._entries:
            if hmac.compare_digest(stored, digest):
                found = scope
        if found is None:
            return None
        return Principal(scope=found, fingerprint=digest.hex()[:12])


_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <API key>")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None.

    The one parser of that header, for the API keys and the ``/metrics`` token alike: the
    scheme is case-insensitive (RFC 9110, section 11.1), the token is taken as sent.
    """
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def presented_key(request: Request) -> str | None:
    """The API key a request carries: its bearer token, else its ``X-API-Key`` header."""
    headers = request.headers
    return key_of(headers.get("authorization"), headers.get("x-api-key"))


def key_of(authorization: str | None, api_key: str | None) -> str | None:
    """The key of a request's ``Authorization`` and ``X-API-Key`` headers: bearer first."""
    return bearer_token(authorization) or (api_key or None)


def require(scope: str):
    """Dependency: the caller must present a key whose scope grants ``scope``.

    ``async`` on purpose: FastAPI runs a plain ``def`` dependency in the thread
    pool, a hop that costs more than the whole key check.
    """

    async def dependency(
        request: Request,
        # Declared so that OpenAPI publishes both schemes; the key is read by presented_key.
        _bearer_scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        _header_scheme: Annotated[str | None, Depends(_header)],
    ) -> Principal:
        return authorize(request, scope)

    return dependency


def authorize(request: Request, scope: str) -> Principal:
    """The caller's principal if its key grants ``scope``; else the 401 or 403 to answer.

    A module-level function rather than the body of the closure ``require`` builds at import
    time: mutation testing swaps module-level functions, never a closure already built.
    """
    return check_key(request.app.state.keys, presented_key(request), scope)


def check_key(keys: KeyStore, key: str | None, scope: str) -> Principal:
    """The principal of ``key`` if it grants ``scope``; else the 401 or 403 to answer.

    The one decision, for the routes FastAPI resolves and for the prediction hot path
    (``api/hot_path.py``), which reads the key from the raw headers itself.
    """
    if not key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = keys.authenticate(key)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not principal.allows(scope):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this API key has scope '{principal.scope}'; this endpoint needs '{scope}'",
        )
    return principal


PredictKey = Annotated[Principal, Depends(require("predict"))]
MonitorKey = Annotated[Principal, Depends(require("monitor"))]
AdminKey = Annotated[Principal, Depends(require("admin"))]


def ensure_first_start_key(settings: Settings) -> tuple[Settings, str | None]:
    """With no keys configured, create (once) an admin key under the data folder.

    Returns the settings to use and the key when it was newly generated (so the
    CLI prints it exactly once). The file is created with 0600 permissions.
    """
    if settings.api_keys.get_secret_value():
        return settings, None
    path = Path(settings.data_dir) / "api_key"
    created: str | None = None
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = "nx_" + secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(key + "\n")
        created = key
    updated = settings.model_copy(update={"api_keys": type(settings.api_keys)(f"admin:{key}")})
    return updated, created
