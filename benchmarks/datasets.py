"""Build advrl's local datasets and write what they hold to benchmarks/datasets.md.

    python benchmarks/datasets.py advrl/hopper/random-medium-expert-v0 advrl/hopper/medium-replay-v0
    python benchmarks/datasets.py --report-only        # rewrite the page from what is built

Each id that is not in the Minari store yet is built with `advrl data make` (its build time is
recorded by the build itself in advrl.json); then the page lists every exported behaviour
policy (its record: source run, step, return over 20 episodes) and every advrl-built dataset
in the store (size, episode-return statistics, normalised mean, build seconds). Timings are
only comparable when nothing else ran during the build; the page says what the machine was
doing if you pass --note.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "benchmarks" / "datasets.md"
NOTES = "## Notes"  # the page's last section, written by hand, kept when the page is rewritten


def build_missing(ids: list[str]) -> None:
    import minari

    local = set(minari.list_local_datasets())
    for dataset_id in ids:
        if dataset_id in local:
            print(f"{dataset_id}: already built", flush=True)
            continue
        command = [sys.executable, "-m", "advrl.cli", "data", "make", dataset_id]
        print("$ " + " ".join(["advrl", *command[3:]]), flush=True)
        subprocess.run(command, check=True)


def _score(value, env: str) -> str:
    from advrl.data.catalog import ENVS

    _, low, high = ENVS[env]
    return f"{100 * (value - low) / (high - low):.1f}"


def policy_rows() -> list[str]:
    from advrl.data import catalog, policies

    rows = [
        "| env | level | online run step | acting | return (20 episodes) | normalised | deterministic return |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for env in catalog.ENVS:
        for level in policies.FILE_LEVELS:
            if not policies.has(env, level):
                rows.append(f"| {env} | {level} | not exported yet | | | | |")
                continue
            r = policies.read_record(env, level)
            deterministic = r.get("deterministic_return_mean", r["return_mean"])
            rows.append(
                f"| {env} | {level} | {r['steps']} | {r.get('acting', 'deterministic')} "
                f"| {r['return_mean']:.1f} ± {r['return_std']:.1f} | {_score(r['return_mean'], env)} | {deterministic:.1f} |"
            )
    return rows


DATASET_HEADER = [
    "| dataset | transitions | episodes | return min / median / mean / max | normalised mean | seed | build s | content fingerprint |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
]


def rows_on_page(page_text: str) -> dict[str, str]:
    """The dataset rows of an earlier page, by id: builds of another machine that are not here."""
    if "## Datasets" not in page_text:
        return {}
    table = page_text.split("## Datasets", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| advrl/") and len(cells) == len(DATASET_HEADER[0].strip("|").split("|")):
            rows[cells[0]] = line
    return rows


def dataset_rows(earlier: dict[str, str]) -> list[str]:
    """A row for every advrl dataset in the store, and the earlier page's rows of the others.

    The store is per machine and each session may get a new one; dropping a row because its
    dataset is not built here would erase a measurement, so the earlier rows are kept.
    """
    import minari

    from advrl.data.collect import read_record
    from advrl.data.dataset import content_fingerprint, open_minari, read_episodes

    rows = dict(earlier)
    for dataset_id in minari.list_local_datasets():
        record = read_record(dataset_id)
        if not record or not dataset_id.startswith("advrl/"):
            continue
        r = record["returns"]
        env = dataset_id.split("/")[1]  # advrl/<env>/...: also mixtures made with `advrl data mix`
        rows[dataset_id] = (
            f"| {dataset_id} | {record['size']} | {record['episodes']} "
            f"| {r['min']:.1f} / {r['median']:.1f} / {r['mean']:.1f} / {r['max']:.1f} "
            f"| {_score(r['mean'], env)} | {record.get('seed')} | {record.get('build_seconds', '—')} "
            f"| `{content_fingerprint(read_episodes(open_minari(dataset_id)))}` |"
        )
    return DATASET_HEADER + [rows[dataset_id] for dataset_id in sorted(rows)]


def write_page(note: str | None) -> None:
    from advrl.data import policies

    earlier = PAGE.read_text() if PAGE.exists() else ""
    lines = [
        "# Datasets built here",
        "",
        "Written by `python benchmarks/datasets.py` from the policy records "
        f"(`{policies.policies_root().relative_to(REPO)}/<env>/<level>.json`) and the build records "
        "(`advrl.json` beside each dataset's `data/`). Normalised scores use D4RL's reference returns.",
        "",
        "## Behaviour policies",
        "",
        *policy_rows(),
        "",
        "`acting: sampled` means datasets roll the (SAC) policy out with sampled actions, as D4RL did;",
        "its return is measured that way, the deterministic (mean-action) return beside it.",
        "",
        "## Datasets",
        "",
        *dataset_rows(rows_on_page(earlier)),
        "",
        "Return statistics are over episodes: in a mixture the short random episodes far outnumber",
        "the others (a third of the transitions of random-medium-expert are random, in most of its episodes).",
        "",
        "## How they were made",
        "",
        "```bash",
        "advrl online recipes/online/sac.yaml online.env=Hopper-v5 seed=0 --run-dir RUN     # resumable",
        "advrl data export-policy RUN --env hopper --level expert --pick-snapshot --candidates 3",
        "advrl data export-policy RUN --env hopper --level medium --pick-snapshot",
        "advrl data make advrl/hopper/random-medium-expert-v0",
        "advrl data make advrl/hopper/medium-replay-v0 --retrain   # RUN's replay buffer; retrains RUN if it is not here",
        "python benchmarks/datasets.py --report-only               # this page",
        "```",
        "",
        "Each policy record (`advrl/policies/<env>/<level>.json`) holds its run, seed, step, the",
        "snapshots it was chosen from, the exact commands and the run's resolved recipe. The online",
        "run itself is not committed (its replay buffer is tens of MB), so on a new machine",
        "`--retrain` trains it again from that recipe on one thread, where the loop is deterministic,",
        "up to the medium policy's step, and says whether the committed medium actor was reproduced.",
        "",
        "The content fingerprint is the one each training run records in its `metrics.jsonl`",
        "(`kind: dataset`) and `advrl data info` shows: two builds of one id hold the same data",
        "exactly when their fingerprints agree.",
        "",
        f"Page written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
        + (f" {note}" if note else ""),
        "",
    ]
    if NOTES in earlier:  # hand-written notes survive a rewrite
        lines += [NOTES + earlier.split(NOTES, 1)[1].rstrip("\n"), ""]
    PAGE.write_text("\n".join(lines))
    print(f"written: {PAGE}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="dataset ids to build if missing")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the page")
    parser.add_argument("--note", help="a sentence for the page, e.g. what else ran during the builds")
    args = parser.parse_args()
    if not args.report_only:
        build_missing(args.ids)
    write_page(args.note)


if __name__ == "__main__":
    main()
