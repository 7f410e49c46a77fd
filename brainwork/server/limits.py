"""Backpressure, body size and API keys: what keeps the server alive under load and abuse.

- `Admission`: at most `max_concurrent` requests do model work at once and at most `max_queue`
  wait for a turn (FIFO); the next one is refused at once with 429 and `Retry-After`, so memory
  and latency stay bounded instead of a queue growing without end.
- `BodyLimit`: bodies over the limit get 413 before they are read into memory.
- `KeyCheck`: bearer keys compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
from collections import deque

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brainwork.server.errors import APIError


class Admission:
    def __init__(self, max_concurrent: int, max_queue: int, retry_after: int = 1) -> None:
        if max_concurrent < 1 or max_queue < 0:
            raise ValueError(f"max_concurrent must be >= 1 and max_queue >= 0, got {max_concurrent}, {max_queue}")
        self.max_concurrent, self.max_queue, self.retry_after = max_concurrent, max_queue, retry_after
        self.active = 0
        self.rejected = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    async def acquire(self) -> None:
        """Take a slot, waiting in line if needed; raise 429 when the line is full."""
        if self.active < self.max_concurrent and not self.queued:
            self.active += 1
            return
        if self.queued >= self.max_queue:
            self.rejected += 1
            raise APIError(
                429,
                f"the server is at capacity: {self.active} requests running and {self.queued} waiting "
                f"(limits {self.max_concurrent} and {self.max_queue}); retry after {self.retry_after}s",
                "rate_limit_error",
                code="server_busy",
                headers={"Retry-After": str(self.retry_after)},
            )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut  # `release` hands its slot over by completing this future
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # the slot arrived as we were cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot moves to the next in line; `active` is unchanged
                return
        self.active -= 1


class _TooLarge(HTTPException):
    pass


class BodyLimit:
    """ASGI middleware: 413 for bodies over `max_bytes`, by Content-Length or as they stream in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_413(send, self.max_bytes)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # FastAPI re-raises HTTPException from a body read
                    raise _TooLarge(413, _too_large(self.max_bytes))
            return message

        await self.app(scope, limited, send)


def _too_large(limit: int) -> str:
    return f"the request body is over the server's limit of {limit} bytes"


async def _send_413(send: Send, limit: int) -> None:
    import json

    from brainwork.server.errors import error_body

    body = json.dumps(error_body(_too_large(limit), "invalid_request_error", None, "request_too_large")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class KeyCheck:
    """A FastAPI dependency: `Authorization: Bearer KEY` must match one of the keys (if any)."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode() for k in keys]

    def __call__(self, request: Request) -> None:
        if not self._keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        token = given.strip().encode() if scheme.lower() == "bearer" else b""
        # compare against every key, always: the time taken does not say which key nearly matched
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(token, key)
        if not ok:
            raise APIError(
                401,
                "missing API key: send 'Authorization: Bearer KEY'" if not token else "incorrect API key provided",
                "authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
