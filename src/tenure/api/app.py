"""The FastAPI application: its lifespan opens the workspace, the inbox and the flusher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from tenure.api.collector import router as collector_router
from tenure.api.errors import install_error_handlers
from tenure.ingest.collector import Inbox
from tenure.ingest.flusher import Flusher
from tenure.spec.messages import Limits
from tenure.workspace import Workspace


def create_app(workspace: str | Path, *, flush: bool = True) -> FastAPI:
    """Build the app for one workspace; ``flush=False`` leaves the inbox for another process."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ws = Workspace(workspace)
        app.state.ws = ws
        app.state.limits = Limits(max_future=timedelta(seconds=ws.settings.max_future_seconds))
        app.state.inbox = Inbox(ws.state)
        app.state.inbox.start()
        flusher = Flusher(ws, ws.settings.flush_interval_seconds) if flush else None
        if flusher:
            flusher.start()
        try:
            yield
        finally:
            await app.state.inbox.stop()
            if flusher:
                flusher.stop()
            ws.close()

    app = FastAPI(title="Tenure", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(collector_router)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
