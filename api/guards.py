"""What stands between the network and the routes: which requests are served at all, how many
large images are decoded at once, and how long an idle connection may stay open.

- ``RequestGuard`` (ASGI middleware, outermost): the ``Host`` must name this server (an IP
  address, ``localhost``, or a name given with ``--allowed-host``), so a web page on a domain
  that re-points its DNS to this machine (DNS rebinding) is refused; a request that could change
  or cost something (any method but GET/HEAD/OPTIONS) coming from another site's page (its
  ``Origin`` is not this server's, nor a ``--cors-origin``) is refused, even without an API key;
  and the API key is checked before any body is read.
- ``DecodeBudget``: decoding costs about ten bytes a pixel whatever the file's size (a 300 KB
  PNG can hold 100 megapixels), so decodes share a memory budget; a request that does not fit
  now gets 503 with Retry-After.
- ``GuardedH11``: uvicorn's HTTP/1.1 protocol with a deadline for a request's headers, so
  connections that never send a request (or send it a byte at a time) are closed.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

from PIL import Image
from uvicorn.protocols.http.h11_impl import H11Protocol

from indexer.errors import Busy

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
OPEN_PATHS = ("/", "/health", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc")  # no key needed
OPEN_PREFIXES = ("/static/",)
DECODE_BYTES_PER_PIXEL = 10  # Pillow's decode, the RGB copy and the working-size resize, measured on a 100 MP PNG
DEFAULT_DECODE_BUDGET = 2 << 30
HEADER_TIMEOUT = 10.0  # seconds from connecting (or from the last answer) to a request's complete headers


class Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers or {}


async def send_error(send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    """An ``{"error": ...}`` answer straight from ASGI (before any route or body)."""
    body = json.dumps({"error": message}).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _host_name(host: str) -> str:
    """The name in a Host header or an origin's netloc, without the port, lower case."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class RequestGuard:
    """ASGI middleware: Host allow-list, cross-site refusal and the API key, before anything else
    (see the module docstring)."""

    def __init__(
        self, app, api_key: str | None, allowed_hosts: tuple[str, ...] = (), cors_origins: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.allowed_hosts = {"localhost", *(_host_name(h) for h in allowed_hosts)}
        self.cors_origins = {o.rstrip("/").lower() for o in cors_origins}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            self.check(scope["method"], scope["path"], headers)
        except Refused as refused:
            return await send_error(send, refused.status, str(refused), refused.headers)
        await self.app(scope, receive, send)

    def check(self, method: str, path: str, headers: dict[str, str]) -> None:
        host = headers.get("host", "")
        name = _host_name(host)
        if not (_is_ip(name) or name in self.allowed_hosts or name.endswith(".localhost")):
            raise Refused(
                421,
                f"this server does not answer to the host name {name!r}; start it with --allowed-host {name} to "
                "allow it",
            )
        origin = headers.get("origin")
        if method not in SAFE_METHODS and origin is not None:
            own = {f"http://{host}".lower(), f"https://{host}".lower()}
            if origin.rstrip("/").lower() not in own | self.cors_origins:
                raise Refused(
                    403,
                    f"a request from another site's page ({origin}) may not change or use this server; "
                    "allow that site with --cors-origin",
                )
        if self.api_key is not None and path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES):
            if not key_matches(headers, self.api_key):
                raise Refused(401, "missing or wrong API key (send X-API-Key)", {"WWW-Authenticate": "Bearer"})


def key_matches(headers: dict[str, str], api_key: str) -> bool:
    """Whether the request's X-API-Key or bearer token is ``api_key`` (compared in constant time)."""
    given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ").strip()
    return bool(given) and secrets.compare_digest(given.encode("latin-1"), api_key.encode())


class DecodeBudget:
    """Bytes that image decodes may hold at once (see the module docstring). One image larger
    than the whole budget is still decoded when nothing else is."""

    def __init__(self, budget: int = DEFAULT_DECODE_BUDGET) -> None:
        self.budget = budget
        self.in_use = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def held(self, image: bytes | str | Path) -> Iterator[None]:
        cost = decode_cost(image)
        with self._lock:
            if self.in_use and self.in_use + cost > self.budget:
                raise Busy(
                    f"the server is decoding other large images ({self.in_use >> 20} MiB of its "
                    f"{self.budget >> 20} MiB); try again in a moment"
                )
            self.in_use += cost
        try:
            yield
        finally:
            with self._lock:
                self.in_use -= cost


def decode_cost(image: bytes | str | Path) -> int:
    """Bytes decoding ``image`` will take, from its header alone (0 when the header cannot be
    read: the decode then fails at once)."""
    try:
        with Image.open(io.BytesIO(image) if isinstance(image, (bytes, bytearray)) else image) as opened:
            width, height = opened.size
    except Exception:  # any header Pillow cannot read: nothing will be decoded
        return 0
    return width * height * DECODE_BYTES_PER_PIXEL


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with ``HEADER_TIMEOUT``: a connection whose request headers are not
    complete that long after it opened (or after the last answer) is closed."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._header_deadline = self.loop.call_later(HEADER_TIMEOUT, self._headers_too_slow)

    def _headers_too_slow(self) -> None:
        if self.cycle is None or self.cycle.response_complete:  # no request began: idle, or its headers still coming
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._header_deadline.cancel()
        if not self.transport.is_closing():
            self._header_deadline = self.loop.call_later(HEADER_TIMEOUT, self._headers_too_slow)

    def connection_lost(self, exc) -> None:
        self._header_deadline.cancel()
        super().connection_lost(exc)
