"""The FastAPI application: its lifespan opens the workspace, the inbox and the flusher."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from tenure.api.collector import router as collector_router
from tenure.api.errors import install_error_handlers
from tenure.ingest.collector import Inbox
from tenure.spec.messages import Limits
from tenure.workspace import Workspace


def create_app(workspace: str | Path, *, flush: bool = True) -> FastAPI:
    """Build the app for one workspace.

    With ``flush`` the app starts ``tenure flush --follow`` as a child process, which moves
    the inbox into the lake on its own core; without it another process must do that.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ws = Workspace(workspace)
        app.state.ws = ws
        app.state.limits = Limits(max_future=timedelta(seconds=ws.settings.max_future_seconds))
        app.state.inbox = Inbox(ws.state)
        app.state.inbox.start()
        flusher = _start_flusher(ws.settings.root) if flush else None
        try:
            yield
        finally:
            await app.state.inbox.stop()
            if flusher:
                flusher.send_signal(signal.SIGTERM)  # it flushes what is left, then exits
                await asyncio.get_running_loop().run_in_executor(None, flusher.wait)
            ws.close()

    app = FastAPI(title="Tenure", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(collector_router)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _start_flusher(root: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "tenure.cli", "flush", "--follow", "--parent-pid", str(os.getpid()), "-w", str(root)]
    return subprocess.Popen(command)
