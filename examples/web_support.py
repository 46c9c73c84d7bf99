"""The ``support`` workflow behind a web handler (FastAPI).

    TQ_MODEL=Qwen/Qwen2.5-1.5B-Instruct uvicorn --factory examples.web_support:create_app

* One run store per deployment: a single SQLite file (``TQ_STORE``, default the per-user store) opened at
  startup and shared by every request; each customer message is one recorded run (`tq runs`, `tq replay`).
* One model per deployment: agents of concurrent requests share it (``LocalQwen`` batches them).
* One conversation per session id: ``POST /chat/{session_id}`` runs the workflow on the message plus the
  session's earlier turns; turns of one session are serialized, different sessions run concurrently.
  ``GET /chat/{session_id}`` returns the conversation with the run id of every turn.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from tq_agents.tools.commerce import Shop
from tq_agents.workflows.support import CustomerMessage, SupportOutcome, build_support

from tq_agents.models.base import ChatModel
from tq_agents.store import SQLiteRunStore


class ChatIn(BaseModel):
    message: str = Field(min_length=1, max_length=4000, description="What the customer wrote.")


class ChatOut(BaseModel):
    session_id: str
    run_id: str
    status: str
    reply: str
    language: str = ""
    escalated: bool = False
    ticket_id: int | None = None


@dataclass
class _Session:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    turns: list[dict[str, Any]] = field(default_factory=list)

    def history(self) -> list[str]:
        lines: list[str] = []
        for t in self.turns[-5:]:  # the last few exchanges are enough context
            lines += [f"customer: {t['message']}", f"support: {t['reply']}"]
        return lines


def create_app(
    model: ChatModel | None = None,
    *,
    store_path: str | os.PathLike[str] | None = None,
    shop: Shop | None = None,
    max_turns: int = 12,
    deadline_s: float = 120.0,
) -> FastAPI:
    """Build the app. ``model`` defaults to ``TQ_MODEL`` (see ``tq run --help``); ``store_path`` to ``TQ_STORE``."""
    if model is None:
        from tq_agents._cli_model import DEFAULT_MODEL, resolve_model

        model = resolve_model(os.environ.get("TQ_MODEL") or DEFAULT_MODEL)
    if store_path is None:
        from tq_agents._cli_model import default_store_path

        store_path = default_store_path()
    Path(store_path).parent.mkdir(parents=True, exist_ok=True)
    workflow = build_support(model, shop=shop)
    sessions: dict[str, _Session] = {}
    state: dict[str, SQLiteRunStore] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        state["store"] = SQLiteRunStore(store_path)
        try:
            yield
        finally:
            state.pop("store").close()

    app = FastAPI(title="tq-agents support", lifespan=lifespan)

    @app.post("/chat/{session_id}", response_model=ChatOut)
    async def chat(session_id: str, body: ChatIn) -> ChatOut:
        session = sessions.setdefault(session_id, _Session())
        async with session.lock:
            msg = CustomerMessage(text=body.message, history=session.history())
            result = await workflow.run(msg, store=state["store"], max_turns=max_turns, deadline_s=deadline_s)
            out = result.output
            if not isinstance(out, SupportOutcome):
                raise HTTPException(503, detail=f"run {result.run_id} ended with status {result.status}")
            session.turns.append({"run_id": result.run_id, "message": body.message, "reply": out.reply})
        return ChatOut(
            session_id=session_id,
            run_id=result.run_id,
            status=result.status,
            reply=out.reply,
            language=out.language,
            escalated=out.escalated,
            ticket_id=out.ticket_id,
        )

    @app.get("/chat/{session_id}")
    async def conversation(session_id: str) -> dict[str, Any]:
        session = sessions.get(session_id)
        if session is None:
            raise HTTPException(404, detail=f"no conversation with session id {session_id!r}")
        return {"session_id": session_id, "turns": session.turns}

    return app
