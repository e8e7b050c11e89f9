"""Learning parity of bf16 against fp32 with vectorised seeds (issue: fast training, item 6).

Each configuration is one ``advrl train RECIPE seed=0,...,K-1 --vectorize`` command, trained
once in fp32 and once with ``train.precision=bf16``, on ``advrl/hopper/random-medium-expert-v0``.
``run`` trains the commands in two queues, one per core (``OMP_NUM_THREADS=1`` each, the two
queues balanced by the measured seed-steps/s); ``report`` reads the runs' records and writes
the per-seed curves side by side (PNG), a table of final and last-3 scores per seed, and
whether bf16 moved the outcome beyond the seeds' spread (the difference of the means against
a bootstrap interval over the seeds).

    python benchmarks/parity.py run --out /tmp/parity [--only iql]   # all: ~3 h of both cores
    python benchmarks/parity.py report /tmp/parity --keep benchmarks/results/parity
    python benchmarks/parity.py report benchmarks/results/parity --png benchmarks/results/parity.png

Sizes (steps, seeds) are in CONFIGS; the records to keep (metrics, recipe: a few kB per run)
are copied by ``report --keep DIR``, and ``report DIR`` on them gives the table of every
configuration kept so far (sessions end; checkpoints stay where they were trained). SUITE_ARMS
compares arms that benchmark suites trained.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATASET = "advrl/hopper/random-medium-expert-v0"
EVAL = ["eval.episodes=5", "eval.final_episodes=10", "eval.last_n=3"]
# name -> (recipe, seeds, steps, evaluation every); queues balanced by the measured cost
# (seed-steps / seed-steps per s, benchmarks/RESULTS.md), sized for ~75 min of both cores
CONFIGS = {
    # fp32: trained to 30k, grown to 60k, then to 100k (no step-dependent schedule); bf16 trained
    # anew to 100k once vectorised bf16 layers kept their activations in bf16 (advrl/nn.py bias_dtype)
    "td3bc": ("recipes/td3bc.yaml", 5, 100_000, 5_000),
    "iql": ("recipes/iql.yaml", 5, 100_000, 5_000),  # its cosine schedule spans train.steps: trained at its size
    "a2pr": ("recipes/a2pr.yaml", 3, 12_000, 10_000),
}
# name -> (fp32 records, bf16 records): arms trained as benchmark suites, one run
# per seed and two runs at a time (benchmarks/harness.py), their records committed. A2PR at
# 100k: a vectorised group of three would take ~4.5 h on one core, while single runs spread
# over both cores take ~2 h (per seed-step vectorising gains nothing for A2PR on this CPU).
# Both suites evaluate 10 episodes every 5k steps; the older fp32 runs have no final_eval
# record, so both arms are scored alike by their last periodic evaluation and the mean of
# their last three.
RESULTS = ROOT / "benchmarks" / "results"
SUITE_ARMS = {
    "a2pr-100k": (RESULTS / "hopper_rme_advantage" / "a2pr", RESULTS / "hopper_rme_a2pr_bf16" / "a2pr"),
}
QUEUES = (
    [("a2pr", "fp32"), ("td3bc", "bf16"), ("iql", "bf16")],
    [("a2pr", "bf16"), ("td3bc", "fp32"), ("iql", "fp32")],
)


def command(name: str, precision: str, out: Path) -> list[str]:
    recipe, seeds, steps, every = CONFIGS[name]
    return [sys.executable, "-m", "advrl.cli", "train", str(ROOT / recipe), f"dataset.id={DATASET}",
            f"train.steps={steps}", f"train.precision={precision}", f"eval.every={every}", *EVAL,
            "seed=" + ",".join(map(str, range(seeds))), "--vectorize", "--run-dir", str(out / f"{name}-{precision}"),
            "--no-progress"]


def run(out: Path, only: list[str] | None = None) -> None:
    """Train the configurations (``only``: those named) in the two queues, one per core."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    scripts = []
    for queue in QUEUES:  # each queue one shell: its commands one after the other
        lines = [" ".join(map(str, command(name, precision, out))) + f" > {out}/{name}-{precision}.log 2>&1"
                 for name, precision in queue if not only or name in only]
        if not lines:
            continue
        scripts.append(subprocess.Popen(["bash", "-c", " && ".join(lines)], env=env))
    codes = [p.wait() for p in scripts]
    if any(codes):
        raise SystemExit(f"a queue failed (exit codes {codes}); see the logs in {out}")


def read_seed(run_dir: Path, periodic_only: bool = False) -> dict:
    """A seed's evaluation curve, final score and last-3 mean: from its final_eval record
    (a grown run: its last), or with ``periodic_only`` from its periodic evaluations alone
    (the last one and the mean of the last three)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [(r["step"], r["score_mean"]) for r in rows if r["kind"] == "eval"]
    if periodic_only:
        scores = [score for _, score in evals]
        return {"curve": evals, "final": scores[-1] if scores else None,
                "last3": float(np.mean(scores[-3:])) if scores else None, "step": evals[-1][0] if evals else 0}
    final = next((r for r in reversed(rows) if r["kind"] == "final_eval"), None)
    return {"curve": evals, "final": final["score_mean"] if final else None,
            "last3": final.get("last_n_score_mean") if final else None, "step": final["step"] if final else 0}


def seeds_in(group: Path, periodic_only: bool = False) -> dict[int, dict]:
    """seed -> records of the seed<k> folders in ``group`` that have metrics."""
    seeds = sorted(group.glob("seed*"), key=lambda p: int(p.name[4:])) if group.is_dir() else []
    return {int(p.name[4:]): read_seed(p, periodic_only) for p in seeds if (p / "metrics.jsonl").exists()}


def read(out: Path) -> dict[str, dict]:
    """name -> {"fp32": seed -> records, "bf16": seed -> records}."""
    results = {name: {p: seeds_in(out / f"{name}-{p}") for p in ("fp32", "bf16")} for name in CONFIGS}
    for name, (fp32, bf16) in SUITE_ARMS.items():
        results[name] = {"fp32": seeds_in(fp32, True), "bf16": seeds_in(bf16, True)}
    return results


def verdict(fp32: list[float], bf16: list[float], reps: int = 4000) -> str:
    """bf16 - fp32 difference of the mean scores with a 95 % bootstrap interval (the seeds of each
    precision resampled on their own); an interval holding 0 is within the seeds' noise."""
    rng = np.random.default_rng(0)
    draws = [rng.choice(np.asarray(x), size=(reps, len(x))).mean(1) for x in (fp32, bf16)]
    low, high = np.percentile(draws[1] - draws[0], [2.5, 97.5])
    delta = float(np.mean(bf16) - np.mean(fp32))
    return f"{delta:+.1f} [{low:+.1f}, {high:+.1f}] " + ("(within seed noise)" if low <= 0.0 <= high else "(beyond seed noise)")


def table(results: dict) -> str:
    lines = ["| algorithm | seeds x steps | precision | final score per seed (10 episodes) | mean | last-3 mean per seed | mean |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    verdicts = []
    for name, result in results.items():
        finals = {}
        for precision in ("fp32", "bf16"):
            by_seed = result[precision]
            if not by_seed or any(r["final"] is None for r in by_seed.values()):
                continue  # not trained yet, or still training
            final = [r["final"] for r in by_seed.values() if r["final"] is not None]
            last3 = [r["last3"] for r in by_seed.values()]
            finals[precision] = (final, last3)
            steps = min(r["step"] for r in by_seed.values())  # reached (a config may be growing towards its size)
            lines.append(f"| {name} | {len(by_seed)} x {steps // 1000}k | {precision} | {', '.join(f'{v:.1f}' for v in final)} | "
                         f"{np.mean(final):.1f} ± {np.std(final):.1f} | {', '.join(f'{v:.1f}' for v in last3)} | "
                         f"{np.mean(last3):.1f} ± {np.std(last3):.1f} |")
        if len(finals) == 2 and all(finals[p][0] for p in finals):
            verdicts.append(f"- {name}: bf16 - fp32, final {verdict(finals['fp32'][0], finals['bf16'][0])}; "
                            f"last-3 {verdict(finals['fp32'][1], finals['bf16'][1])}")
    return "\n".join(lines + [""] + verdicts)


def plot(results: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6), squeeze=False)
    for ax, (name, result) in zip(axes[0], results.items()):
        for precision, style in (("fp32", "-"), ("bf16", "--")):
            for i, (seed, record) in enumerate(sorted(result[precision].items())):
                steps, scores = zip(*record["curve"]) if record["curve"] else ((), ())
                ax.plot(steps, scores, style, color=f"C{i}", label=f"{precision} seed {seed}" if i < 5 else None)
        reached = [r["curve"][-1][0] for p in ("fp32", "bf16") for r in result[p].values() if r["curve"]]
        ax.set_title(f"{name}: to {min(reached, default=0) // 1000}k steps, {DATASET.split('/')[1]} random-medium-expert", fontsize=9)
        ax.set_xlabel("gradient step")
        ax.set_ylabel("normalised score")
    axes[0][0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(png, dpi=90)


def keep(out: Path, folder: Path) -> None:
    """The records worth committing (metrics and recipe of each seed; no checkpoints)."""
    for run_dir in out.glob("*-*/seed*"):
        target = folder / run_dir.parent.name / run_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.jsonl", "recipe.yaml", "software.json"):
            if (run_dir / name).exists():
                shutil.copy2(run_dir / name, target / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    running = sub.add_parser("run", help="train every configuration in fp32 and bf16")
    running.add_argument("--out", type=Path, required=True)
    running.add_argument("--only", nargs="+", choices=sorted(CONFIGS), help="train these configurations only")
    reporting = sub.add_parser("report", help="table, bf16 verdict and per-seed curves of the runs in OUT")
    reporting.add_argument("out", type=Path)
    reporting.add_argument("--png", type=Path)
    reporting.add_argument("--keep", type=Path, help="copy each seed's records (no checkpoints) here")
    args = parser.parse_args()
    if args.command == "run":
        run(args.out, args.only)
        return
    results = read(args.out)
    print(table(results))
    if args.png:
        plot(results, args.png)
    if args.keep:
        keep(args.out, args.keep)


if __name__ == "__main__":
    main()
