"""``curator tui`` on the command line: registration and option checks (the app itself is tested
through Textual's pilot in the other test_tui files)."""

from __future__ import annotations

from typer.testing import CliRunner

from curator.cli import app


def test_tui_command_is_registered() -> None:
    result = CliRunner().invoke(app, ["tui", "--help"])
    assert result.exit_code == 0
    assert "--graphics" in result.output
    assert "--curator" in result.output


def test_tui_rejects_unknown_graphics_mode(tmp_path) -> None:
    result = CliRunner().invoke(app, ["--home", str(tmp_path), "tui", "--graphics", "sixel"])
    assert result.exit_code == 1
    assert "invalid --graphics 'sixel'; expected 'auto' or 'off'" in result.output
