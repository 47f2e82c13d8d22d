"""ASGI middleware: a request body limit counted as the body arrives, and a bearer token.

Both answer before the app sees the request (or as soon as the body passes the limit), with a
one-line JSON ``detail`` like every other error of the REST API.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Room for the multipart envelope and form fields around an upload of the limit's size.
UPLOAD_BUFFER_BYTES = 64 * 1024
#: Routes under ``/api`` that stay open when a token is required.
OPEN_API_PATHS = frozenset({"/api/health"})


class _BodyTooLargeError(Exception):
    """Raised into the app when the request body passes the limit."""


async def send_json(
    send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    """Send a complete JSON response ``{"detail": detail}`` that closes the connection."""
    body = json.dumps({"detail": detail}).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((name.encode(), value.encode()) for name, value in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class UploadLimitMiddleware:
    """Refuse with 413 any request whose body passes ``max_bytes`` plus a small buffer.

    A declared ``Content-Length`` over the limit is refused before anything is read; any
    other body (chunked, or longer than declared) is counted as it arrives, and the app's
    next read fails as soon as the count passes the limit, so at most the limit plus
    :data:`UPLOAD_BUFFER_BYTES` reaches the app (and the disk). The 413 response closes the
    connection, so the client's remaining body is not read.

    Parameters
    ----------
    app : ASGI app
        The app to protect.
    max_bytes : int
        Largest accepted upload, in bytes.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.limit = max_bytes + UPLOAD_BUFFER_BYTES

    def _message(self, size: int | None = None) -> str:
        what = "upload" if size is None else f"upload of {size / 2**20:.0f} MiB"
        return (
            f"{what} is larger than the limit of {self.max_bytes / 2**20:g} MiB; crop the "
            "stack or raise GERMSEG_MAX_UPLOAD_MB"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length") or ""
        if length.isdigit() and int(length) > self.limit:
            await send_json(send, 413, self._message(int(length)))
            return
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                # whatever the app answers to its failed read, the client gets the 413
                if not started:
                    started = True
                    await send_json(send, 413, self._message())
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLargeError:
            if not started:
                await send_json(send, 413, self._message())
        if exceeded:
            logger.info("refused a request body over %d bytes on %s", self.limit, scope["path"])


class BearerTokenMiddleware:
    """Require ``Authorization: Bearer <token>`` on ``/api`` routes (but ``/api/health``).

    Parameters
    ----------
    app : ASGI app
        The app to protect.
    token : str
        The expected token; compared in constant time.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    def _authorized(self, scope: Scope) -> bool:
        given = (_header(scope, b"authorization") or "").strip().encode("latin-1")
        return hmac.compare_digest(given, self.expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        protected = (
            scope["type"] == "http" and path.startswith("/api/") and path not in OPEN_API_PATHS
        )
        if protected and not self._authorized(scope):
            await send_json(
                send,
                401,
                "missing or wrong API token: send the header 'Authorization: Bearer <token>' "
                "with the server's GERMSEG_API_TOKEN",
                headers={"www-authenticate": "Bearer"},
            )
            return
        await self.app(scope, receive, send)
