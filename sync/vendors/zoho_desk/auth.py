"""Zoho OAuth for one connection: the refresh-token grant, and the access-token cache.

Zoho's access tokens live an hour and a refresh token mints only about ten of them per ten
minutes (docs/vendor-apis.md §4.2), so a token is refreshed ahead of its expiry and never per
request:

- the token is cached in ``<state_dir>/zoho-<connection>.token.json``, created with mode 0600
  (docs/architecture.md §7.11), holding the access token, its expiry and a fingerprint of the
  client, never
  the refresh token; it is reused across runs and processes until near expiry;
- one ``asyncio.Lock`` serialises refreshes, so concurrent requests share one;
- ``invalidate(token)`` after Zoho said ``INVALID_OAUTH`` drops that token only, so several
  requests failing with the same token still cause one refresh.

Zoho Accounts answers a bad grant with ``{"error": "invalid_code"}`` (or ``invalid_client``),
observed with HTTP 200; the status is UNCONFIRMED, so the ``error`` key is honoured under any
status. Older Accounts replies give ``expires_in`` in milliseconds next to ``expires_in_sec``
(UNCONFIRMED for current servers): ``expires_in_sec`` wins, and an ``expires_in`` above a day
is read as milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sync.errors import AuthRejected, ProtocolError, RateLimited
from sync.http import HttpClient
from sync.redact import remember

TOKEN_PATH = "/oauth/v2/token"
#: Refresh this long before expiry at most (Zoho's tokens live 3600 s)...
REFRESH_AHEAD = 300.0
#: ...and at most this share of a token's lifetime (tests use tokens of a few seconds).
REFRESH_AHEAD_SHARE = 0.1
DEFAULT_ACCOUNTS = "https://accounts.zoho.com"
_CREDENTIAL_ERRORS = frozenset(
    {"invalid_code", "invalid_client", "invalid_client_secret", "unauthorized_client"}
)


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float  # wall-clock epoch seconds
    lifetime: float

    def fresh(self, now: float) -> bool:
        ahead = min(REFRESH_AHEAD, self.lifetime * REFRESH_AHEAD_SHARE)
        return now < self.expires_at - ahead


@dataclass(frozen=True, repr=False)
class ClientCredentials:
    client_id: str
    client_secret: str
    refresh_token: str
    accounts_url: str

    def fingerprint(self) -> str:
        # A cached token belongs to one client, refresh token and data centre; a hash lets
        # the cache tell, without ever storing the refresh token.
        material = "\n".join((self.accounts_url, self.client_id, self.refresh_token))
        return hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]


class ZohoAuth:
    """Hands out a valid access token, refreshing it (once, shared) when needed."""

    def __init__(
        self,
        connection: str,
        http: HttpClient,
        credentials: ClientCredentials,
        cache_path: Path | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.connection = connection
        self._http = http
        self._credentials = credentials
        self._cache_path = cache_path
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: AccessToken | None = None
        self._loaded = False
        self.refreshes = 0

    async def token(self) -> str:
        """A valid access token: the cached one, or a newly refreshed one."""
        current = self._token
        if current is not None and current.fresh(self._clock()):
            return current.value
        async with self._lock:
            if not self._loaded:
                self._loaded = True
                self._token = self._read_cache()
            current = self._token
            if current is None or not current.fresh(self._clock()):
                # Another process may have refreshed meanwhile (a daemon beside a --run-once).
                current = self._read_cache()
                if current is None or not current.fresh(self._clock()):
                    current = await self._refresh()
                self._token = current
            return current.value

    def invalidate(self, token: str) -> None:
        """Zoho rejected ``token``: the next ``token()`` refreshes, unless it already did."""
        if self._token is not None and self._token.value == token:
            self._token = AccessToken(token, expires_at=0.0, lifetime=self._token.lifetime)
            self._forget_cache(token)

    # -- refresh -----------------------------------------------------------------------------

    async def _refresh(self) -> AccessToken:
        creds = self._credentials
        form = {
            "grant_type": "refresh_token",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "refresh_token": creds.refresh_token,
        }
        # Form body rather than the query string Zoho's page shows: both are accepted, and a
        # body keeps the secrets out of proxies' access logs. A refresh is safe to repeat.
        response = await self._http.request(
            "POST", TOKEN_PATH, data=form, safe=True, ok=(200, 400, 401)
        )
        self.refreshes += 1
        document = response.json()
        if not isinstance(document, dict):
            raise ProtocolError(
                f"{self.connection}: Zoho's token endpoint answered {type(document).__name__}, "
                "not an object",
                connection=self.connection,
            )
        if document.get("access_token"):
            token = self._parse_grant(document)
            remember(token.value)  # masked in logs and messages from now on
            self._write_cache(token)
            return token
        raise self._grant_error(document, response.status)

    def _parse_grant(self, document: Mapping[str, Any]) -> AccessToken:
        try:
            if "expires_in_sec" in document:
                lifetime = float(document["expires_in_sec"])
            else:
                lifetime = float(document.get("expires_in", 3600))
                if lifetime > 86400:
                    lifetime /= 1000
        except (TypeError, ValueError):
            lifetime = 3600.0
        return AccessToken(str(document["access_token"]), self._clock() + lifetime, lifetime)

    def _grant_error(self, document: Mapping[str, Any], status: int) -> Exception:
        error = str(document.get("error") or f"HTTP {status} without an access_token")
        described = str(document.get("error_description") or "")
        if "too many requests" in described.lower() or error == "Access Denied":
            return RateLimited(
                f"{self.connection}: Zoho Accounts refused to refresh the access token: "
                f"{described or error} (Zoho allows about 10 refreshes per 10 minutes)",
                connection=self.connection,
                status=status,
                vendor_message=described or error,
            )
        if error in _CREDENTIAL_ERRORS or status in (400, 401):
            return AuthRejected(
                rejected_message(self.connection, error), connection=self.connection
            )
        return ProtocolError(
            f"{self.connection}: Zoho's token endpoint answered error {error!r}",
            connection=self.connection,
            status=status,
            vendor_message=error,
        )

    # -- cache file --------------------------------------------------------------------------

    def _read_cache(self) -> AccessToken | None:
        if self._cache_path is None:
            return None
        try:
            data = json.loads(self._cache_path.read_text(encoding="utf-8"))
            if data.get("client") != self._credentials.fingerprint():
                return None
            cached = AccessToken(
                str(data["access_token"]), float(data["expires_at"]), float(data["lifetime"])
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # no cache, or one we cannot trust: refresh instead
        remember(cached.value)
        return cached

    def _write_cache(self, token: AccessToken) -> None:
        if self._cache_path is None:
            return
        data = {
            "access_token": token.value,
            "expires_at": token.expires_at,
            "lifetime": token.lifetime,
            "client": self._credentials.fingerprint(),
        }
        self._cache_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # private
        # mkstemp: an unpredictable name, created exclusively (never through a symlink), 0600
        # from the start; the rename makes a reader see the old file or the new one.
        fd, temporary = tempfile.mkstemp(
            prefix=f".{self._cache_path.name}.", suffix=".tmp", dir=self._cache_path.parent
        )
        try:
            os.write(fd, json.dumps(data).encode("utf-8"))
        finally:
            os.close(fd)
        os.replace(temporary, self._cache_path)

    def _forget_cache(self, token: str) -> None:
        cached = self._read_cache()
        if cached is not None and cached.value == token and self._cache_path is not None:
            with contextlib.suppress(OSError):
                self._cache_path.unlink()


def rejected_message(connection: str, error: str) -> str:
    """What the operator reads when Zoho will not refresh: what happened, and what to do."""
    return (
        f"{connection}: Zoho rejected the refresh token or client ({error}). Create a new "
        f"refresh token in the Zoho API console and update "
        f"connections.{connection}.credentials.refresh_token."
    )


def api_root(base_url: str) -> str:
    """The API host; a ``base_url`` given with ``/api/v1`` is accepted and trimmed."""
    trimmed = base_url.rstrip("/")
    return trimmed[: -len("/api/v1")] if trimmed.endswith("/api/v1") else trimmed


def accounts_for(base_url: str) -> str:
    """Zoho Accounts host of the data centre ``base_url`` is in (``desk.zoho.eu`` -> ``.eu``).

    Desk and Accounts share the top-level domain in every data centre but Canada, whose
    Accounts host is ``accounts.zohocloud.ca`` (docs/vendor-apis.md §4.2; the CA Desk host spelling
    is
    UNCONFIRMED). Unknown hosts fall back to the US; ``credentials.accounts_url`` overrides.
    """
    host = urlsplit(base_url).hostname or ""
    if host.startswith("desk.zoho."):
        tld = host[len("desk.zoho.") :]
        return "https://accounts.zohocloud.ca" if tld == "ca" else f"https://accounts.zoho.{tld}"
    return DEFAULT_ACCOUNTS


def token_cache_path(state_dir: Path | None, connection: str) -> Path | None:
    return None if state_dir is None else Path(state_dir) / f"zoho-{connection}.token.json"
