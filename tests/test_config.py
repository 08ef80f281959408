"""Settings: the documented defaults, environment overrides, and errors naming the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tenure import ConfigError, Workspace, WorkspaceError
from tenure.config import Settings, default_settings_text, load_settings


def test_the_written_file_documents_every_setting_with_its_default(tmp_path: Path) -> None:
    doc = tomllib.loads(default_settings_text())
    assert set(doc) == {
        "state", "lake", "engine", "analytics", "lifecycle", "rfm", "segments", "models", "recommendations", "collector",
        "currency",
    }
    Workspace.init(tmp_path).close()
    settings = load_settings(tmp_path, environ={})
    defaults = Settings(root=tmp_path)
    assert settings.engine == defaults.engine == "duckdb"
    assert settings.state_url == f"sqlite:///{tmp_path.resolve() / 'state.db'}"
    assert settings.lake_path == tmp_path.resolve() / "lake"
    assert settings.currency_rates["EUR"] == doc["currency"]["rates"]["EUR"]
    assert settings.lifecycle == defaults.lifecycle
    assert settings.lifecycle.churned_days == doc["lifecycle"]["churned_days"]
    assert (settings.timezone, settings.rfm_bins) == (doc["analytics"]["timezone"], doc["rfm"]["bins"])
    assert (settings.segments_live, settings.segments_refresh_minutes) == (
        doc["segments"]["live"], doc["segments"]["refresh_minutes"]) == (defaults.segments_live,
                                                                         defaults.segments_refresh_minutes)
    assert settings.models == defaults.models
    assert settings.recommendations == defaults.recommendations
    assert {f: getattr(settings.models, f) for f in doc["models"]} == doc["models"]
    assert (tmp_path / "state.db").exists() and (tmp_path / "lake").is_dir()


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    settings = load_settings(tmp_path, environ={"TENURE_ENGINE": "spark", "TENURE_STATE_URL": "postgresql://x@h/db"})
    assert (settings.engine, settings.state_url) == ("spark", "postgresql://x@h/db")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[engine]\nname = "oracle"\n', "engine.name"),
        ("[collector]\nport = \"eighty\"\n", "collector.port"),
        ("[currency.rates]\nEUR = -1\n", "currency.rates.EUR"),
        ("[lake\n", "tenure.toml"),
        ("[lifecycle]\nchurned_days = 0\n", "lifecycle.churned_days"),
        ('[lifecycle]\nat_risk_factor = "x"\n', "lifecycle.at_risk_factor"),
        ('[analytics]\ntimezone = "Mars/Olympus"\n', "analytics.timezone"),
        ('[models]\nchurn_basis = "visits"\n', "models.churn_basis"),
        ("[models]\ncutoffs = 0\n", "models.cutoffs"),
        ('[models]\ndiscount_rate = "ten"\n', "models.discount_rate"),
    ],
)
def test_malformed_settings_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    (tmp_path / "tenure.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, environ={})
    assert info.value.key == key


def test_a_folder_without_settings_is_not_a_workspace(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="tenure init"):
        Workspace(tmp_path)
