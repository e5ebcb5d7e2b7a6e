"""README's "Your labels" examples run exactly as written (in a scratch directory that sees
the repository's .venv, samples and models)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Your labels"


def section_commands() -> list[str]:
    """The section's indented shell lines: heredocs whole, then one command per line."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert SECTION in readme, f"README has no {SECTION!r} section (renamed? update this test)"
    body = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    commands, heredoc = [], None
    for line in body.splitlines():
        if not line.startswith("    "):
            continue
        text = line[4:]
        if heredoc is not None:
            heredoc.append(text)
            if text == "JSON":
                commands.append("\n".join(heredoc))
                heredoc = None
        elif text.startswith("cat > "):
            heredoc = [text]
        elif text.startswith(".venv/bin/"):
            commands.append(re.sub(r"\s+# .*$", "", text))
    return commands


def test_the_labels_section_runs_as_written(tmp_path):
    for name in (".venv", "samples", "models"):
        os.symlink(REPO / name, tmp_path / name)
    commands = section_commands()
    assert any("--labels moods.json" in c for c in commands) and any(" evaluate " in c for c in commands)
    for command in commands:
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
    assert (tmp_path / "build" / "moods" / "lyrics.report.html").is_file()
    assert (tmp_path / "build" / "eval" / "metrics.json").is_file()
