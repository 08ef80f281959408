"""Shared fixtures: workspaces on SQLite and on a real PostgreSQL server the suite starts."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tenure import Workspace

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# Test files sharing an expensive module or session fixture run on one worker (`make test` uses
# --dist loadgroup), so it is built once. pytest-xdist's own ``xdist_group`` marker does nothing
# under pytest 9: it renames items through an attribute pytest no longer reads.
WORKER_GROUPS = {
    "tests/test_models.py": "model_shop",
    "tests/test_model_report.py": "model_shop",
    "tests/test_recommendations.py": "model_shop",
    "tests/test_demo.py": "demo",
}
WRITE_KEY = "test-write-key"


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``loadgroup`` with the groups of ``WORKER_GROUPS``; every other test is scheduled on its own."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class FileGroupScheduling(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return WORKER_GROUPS.get(nodeid.split("::", 1)[0], nodeid)

    return FileGroupScheduling(config, log)


PORTS_PER_WORKER = 2000


def free_port() -> int:
    """A free port from this xdist worker's own range, below the kernel's ephemeral ports.

    Asking the kernel for port 0 is racy across workers: two workers can be handed the same
    port before either server binds it, and one test then talks to the other's server.
    """
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    start = 20_000 + worker * PORTS_PER_WORKER
    for port in random.Random().sample(range(start, start + PORTS_PER_WORKER), 50):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}-{start + PORTS_PER_WORKER}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free port; yields its base URL."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail("PostgreSQL is not installed: run `apt-get install -y postgresql` (.ci/run does)")
    base = Path(tempfile.mkdtemp(prefix="tenure-pg-"))
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(base, "postgres")
    data = base / "data"
    subprocess.run([*as_postgres, PG_BIN / "initdb", "-D", data, "-A", "trust", "-U", "tenure"], check=True, capture_output=True)
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=on"
    subprocess.run(
        [*as_postgres, PG_BIN / "pg_ctl", "-D", data, "-o", options, "-l", base / "log", "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://tenure@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_postgres, PG_BIN / "pg_ctl", "-D", data, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state DB URL for each backend; a fresh database per test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    server = request.getfixturevalue("postgres_server")
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


def make_workspace(root: Path, state_url: str | None = None) -> Workspace:
    """An initialised workspace with the test write key, optionally on another state DB."""
    root.mkdir(parents=True, exist_ok=True)
    text = (root / "tenure.toml").read_text() if (root / "tenure.toml").exists() else None
    if text is None:
        from tenure.config import default_settings_text

        text = default_settings_text()
        if state_url:
            text = text.replace('url = "sqlite:///state.db"', f'url = "{state_url}"')
        (root / "tenure.toml").write_text(text)
    ws = Workspace(root)
    if not ws.keys.verify(WRITE_KEY):
        ws.keys.create("write", "tests", key=WRITE_KEY)
    return ws


@pytest.fixture
def workspace(tmp_path: Path, state_url: str) -> Iterator[Workspace]:
    """A workspace on each state backend."""
    ws = make_workspace(tmp_path / "ws", state_url)
    yield ws
    ws.close()


@pytest.fixture
def sqlite_workspace(tmp_path: Path) -> Iterator[Workspace]:
    ws = make_workspace(tmp_path / "ws")
    yield ws
    ws.close()


def imported_shop(root: Path, *, users: int, days: int, seed: int) -> Workspace:
    """Generate a sample shop into ``root/files`` and import it into the workspace ``root/ws``."""
    from tenure.ingest.importer import import_file
    from tenure.sample import write_sample

    files = write_sample(root / "files", users=users, days=days, seed=seed)
    ws = make_workspace(root / "ws")
    for path, kind in ((files.items, "items"), (files.users, "users"), (files.events, "events")):
        import_file(ws, path, kind)  # type: ignore[arg-type]
    return ws


@pytest.fixture(scope="session")
def sample_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """A small generated shop, imported once per test process; tests must only read it."""
    ws = imported_shop(tmp_path_factory.mktemp("sample-shop"), users=400, days=150, seed=11)
    yield ws
    ws.close()


@pytest.fixture
def shop(sample_shop: Workspace, tmp_path: Path) -> Iterator[Workspace]:
    """A private copy of the session's sample shop, free to write to (segments, scores)."""
    import shutil

    shutil.copytree(sample_shop.settings.root, tmp_path / "shop")
    ws = Workspace(tmp_path / "shop")
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def model_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """A shop long enough to train models on (300 days), imported once; its files are in ``root/files``.

    Tests must only read it; ``trained_shop`` and copies are for writing.
    """
    ws = imported_shop(tmp_path_factory.mktemp("model-shop"), users=1500, days=300, seed=3)
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def trained_shop(model_shop: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """The model shop with churn (backtested against the generator's oracle), propensity and CLV
    trained and everyone scored. Tests must only read it; copy it to write."""
    ws = copy_workspace(model_shop, tmp_path_factory.mktemp("trained") / "ws")
    ws.models.train("churn", oracle=model_shop.settings.root.parent / "files")
    ws.models.train("propensity")
    ws.models.train("clv")
    ws.models.score()
    yield ws
    ws.close()


def copy_workspace(ws: Workspace, to: Path) -> Workspace:
    """A private copy of a (SQLite) workspace, free to write to."""
    import shutil

    shutil.copytree(ws.settings.root, to)
    return Workspace(to)
