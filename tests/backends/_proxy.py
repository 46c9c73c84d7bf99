"""A fault-injecting HTTP proxy (real uvicorn server in a thread) in front of ``tq serve``.

Each POST takes the next fault from ``faults``: an int status (429, 503, 401, ...) is answered at once with an
OpenAI-style error body; ``"timeout"`` holds the request for ``hold_s`` seconds (longer than the client's
timeout) before forwarding it; ``None`` or an empty queue forwards. GETs are always forwarded.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse


class FaultProxy:
    def __init__(self, upstream: str, port: int, *, hold_s: float = 4.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = port
        self.hold_s = hold_s
        self.faults: collections.deque[Any] = collections.deque()
        self.log: list[tuple[str, Any]] = []  # (path, fault or status forwarded)
        app = FastAPI()

        @app.api_route("/{path:path}", methods=["GET", "POST"])
        async def relay(path: str, request: Request) -> Response:
            body = await request.body()
            fault = self.faults.popleft() if request.method == "POST" and self.faults else None
            self.log.append((path, fault))
            if isinstance(fault, int):
                msg = {429: "rate limited", 503: "overloaded", 401: "bad key"}.get(fault, "injected")
                return JSONResponse({"error": {"message": msg, "type": "injected", "code": fault}}, status_code=fault)
            if fault == "timeout":
                await asyncio.sleep(self.hold_s)
            async with httpx.AsyncClient(timeout=300) as c:
                r = await c.request(
                    request.method,
                    f"{self.upstream}/{path}",
                    content=body,
                    headers={"content-type": request.headers.get("content-type", "application/json")},
                )
            return Response(r.content, status_code=r.status_code, media_type=r.headers.get("content-type"))

        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fault proxy did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
