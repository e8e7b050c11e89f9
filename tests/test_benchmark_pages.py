"""benchmarks/datasets.py: the dataset page lists each local build with its fingerprint and
keeps its hand-written notes when it is rewritten."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import datasets as datasets_page  # noqa: E402

from advrl.data.dataset import content_fingerprint, open_minari, read_episodes  # noqa: E402


def test_page_rows_carry_fingerprints_and_notes_survive_a_rewrite(minari_root, tmp_path, monkeypatch):
    page = tmp_path / "datasets.md"
    page.write_text("# old page\n\nstale table\n\n## Notes\n\n### a finding\n\nkeep me\n")
    monkeypatch.setattr(datasets_page, "PAGE", page)
    datasets_page.write_page("built beside nothing")
    text = page.read_text()
    fingerprint = content_fingerprint(read_episodes(open_minari("advrl/hopper/random-v0")))
    row = next(line for line in text.splitlines() if line.startswith("| advrl/hopper/random-v0 |"))
    assert row.startswith("| advrl/hopper/random-v0 | 3000 |") and f"`{fingerprint}`" in row
    assert "stale table" not in text and "built beside nothing" in text
    assert text.count("## Notes") == 1 and text.rstrip().endswith("keep me")
    datasets_page.write_page(None)  # a second rewrite keeps them once more
    assert page.read_text().count("keep me") == 1
