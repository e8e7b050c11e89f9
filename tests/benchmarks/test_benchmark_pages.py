"""benchmarks/datasets.py: the dataset page lists each local build with its fingerprint and
keeps its hand-written notes when it is rewritten."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
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


def test_rows_of_datasets_not_built_here_are_kept_and_rows_of_local_ones_replaced(minari_root, tmp_path, monkeypatch):
    # each session may run on a new machine whose store lacks earlier builds: their
    # measurements must survive a rewrite, while a dataset built here gets its fresh row
    elsewhere = "| advrl/hopper/elsewhere-v0 | 200000 | 1436 | 3.5 / 286.8 / 364.1 / 3140.9 | 11.8 | 0 | 2959.7 | `29e57c975c250d5f` |"
    stale_local = "| advrl/hopper/random-v0 | 1 | 1 | 0.0 / 0.0 / 0.0 / 0.0 | 0.0 | 0 | 1.0 | `0000000000000000` |"
    page = tmp_path / "datasets.md"
    page.write_text(f"# old page\n\n## Datasets\n\n{datasets_page.DATASET_HEADER[0]}\n"
                    f"{datasets_page.DATASET_HEADER[1]}\n{elsewhere}\n{stale_local}\n\nafter\n\n## Notes\n\nkeep me\n")
    monkeypatch.setattr(datasets_page, "PAGE", page)
    datasets_page.write_page(None)
    lines = page.read_text().splitlines()
    assert elsewhere in lines and stale_local not in lines
    ids = [line.split("|")[1].strip() for line in lines if line.startswith("| advrl/")]
    assert ids == sorted(ids) and ids.count("advrl/hopper/random-v0") == 1 and "advrl/hopper/elsewhere-v0" in ids
