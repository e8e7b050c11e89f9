"""The repository stands on its own: no citation of files outside it, a licence matching the
package metadata."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUTSIDE = "../" + "shared/"  # split, so that this file does not match itself


def test_no_file_cites_a_folder_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    citing = [name for name in files if (REPO / name).is_file() and OUTSIDE.encode() in (REPO / name).read_bytes()]
    assert citing == []


def test_licence_file_matches_the_declared_licence():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 advrl contributors\n")
