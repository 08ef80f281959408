"""The CLI end to end on a small workspace: init, import, status, profile, identity, errors."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from tenure.cli import app

runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_init_import_profile_and_unmerge(tmp_path: Path) -> None:
    ws = str(tmp_path / "ws")
    assert "write key: k-123" in run("init", ws, "--write-key", "k-123")
    events = tmp_path / "events.csv"
    events.write_text(
        "message_id,type,event,user_id,anonymous_id,timestamp,properties\n"
        "1,page,Home,,phone,2025-01-01T10:00:00Z,\n"
        "2,identify,,ann,phone,2025-01-01T10:01:00Z,\n"
        "3,track,Order Completed,ann,,2025-01-02T10:00:00Z,\"{\"\"order_id\"\": \"\"o1\"\", \"\"revenue\"\": 12.5}\"\n"
        "4,identify,,bob,phone,2025-01-03T10:00:00Z,\n"
        "5,page,Home,,phone,2025-01-04T10:00:00Z,\n"
    )
    assert re.search(r"imported\s*│\s*5 ", run("import", str(events), "--kind", "events", "-w", ws))
    assert re.search(r"duplicates\s*│\s*5 ", run("import", str(events), "-w", ws))
    profile = run("profile", "bob", "-w", ws)
    assert "person ann" in profile and "bob" in profile and "phone" in profile  # a shared device merged bob into ann
    links = run("identity", "links", "bob", "-w", ws)
    link_id = next(line.split("│")[1].strip() for line in links.splitlines() if "│ bob" in line)
    assert "bob" in run("identity", "unmerge", link_id, "-w", ws)
    after = run("profile", "bob", "-w", ws)
    assert "person bob" in after and re.search(r"events\s*│\s*1 ", after)
    ann = run("profile", "ann", "-w", ws)
    assert re.search(r"orders\s*│\s*1 ", ann) and "12.50" in ann and re.search(r"events\s*│\s*4 ", ann)


def test_errors_are_one_line_and_exit_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "-w", str(tmp_path)])
    assert result.exit_code == 1 and "not a Tenure workspace" in result.output
    run("init", str(tmp_path / "ws"))
    result = runner.invoke(app, ["import", str(tmp_path / "nope.csv"), "-w", str(tmp_path / "ws")])
    assert result.exit_code == 1 and "does not exist" in result.output
    result = runner.invoke(app, ["import", str(tmp_path / "x.csv"), "--kind", "people", "-w", str(tmp_path / "ws")])
    assert result.exit_code == 2 and "--kind" in result.output
