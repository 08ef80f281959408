"""The public surface is deliberate: every name in ``__all__`` exists and nothing else leaks."""

from __future__ import annotations

import tenure


def test_exported_members() -> None:
    assert sorted(tenure.__all__) == sorted(
        name for name in dir(tenure) if not name.startswith("_") and name not in {
            "analytics", "api", "cli", "clock", "config", "errors", "identity", "ingest", "keys", "models",
            "overview", "profiles", "sample", "segments", "spec", "store", "workspace",
        }
    )
    for name in tenure.__all__:
        assert getattr(tenure, name) is not None
