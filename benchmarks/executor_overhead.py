"""What each sweep executor adds before a run trains: seconds from the command's start to the run's
first training step (its first ``train`` record, ``train.log_every=1``), for a one-point sweep
of a tiny BC run, against ``advrl train`` of the same run alone.

    MINARI_DATASETS_PATH=... python benchmarks/executor_overhead.py [--repeat 3] [--executors local,ray,ray-attached,slurm]

``ray`` starts (and stops) a Ray instance in the command, as ``advrl sweep --executor ray`` does on
a laptop; ``ray-attached`` submits to one already running (``ray start --head``), as on a
cluster. ``slurm`` needs a cluster (scripts/slurm-local.sh). The dataset id must be local
(``advrl data make advrl/hopper/random-v0 --size 3000`` is enough).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "advrl.cli"]
RAY = str(Path(sys.executable).parent / "ray")  # the ray command of this environment
OVERRIDES = ["dataset.id=advrl/hopper/random-v0", "train.steps=20", "train.batch_size=32", "train.log_every=1",
             "train.checkpoint_every=20", "train.device=cpu", "eval.every=20", "eval.episodes=1", "eval.final_episodes=0"]


def first_step_seconds(command: list[str], metrics: Path, timeout: float = 300) -> float:
    """Start ``command``; seconds until ``metrics`` holds a train record. Waits for the command's end."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not (metrics.exists() and '"kind": "train"' in metrics.read_text()):
        if proc.poll() is not None and not metrics.exists():
            raise SystemExit(f"{' '.join(command[3:])} failed: {proc.stderr.read()[-2000:]}")
        if time.perf_counter() - start > timeout:
            proc.kill()
            raise SystemExit(f"no training step after {timeout} s: {' '.join(command[3:])}")
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    proc.wait()
    return elapsed


def command(executor: str, out: Path, address: str | None) -> tuple[list[str], Path]:
    recipe = str(REPO / "recipes" / "bc.yaml")
    if executor == "train":
        return CLI + ["train", recipe, *OVERRIDES, "--run-dir", str(out / "run"), "--no-progress"], out / "run" / "metrics.jsonl"
    extra = {"local": [], "ray": ["--executor", "ray"], "ray-attached": ["--executor", "ray", "--ray-address", address or ""],
             "slurm": ["--executor", "slurm", "--slurm", "partition=debug,time=10"]}[executor]
    return CLI + ["sweep", recipe, *OVERRIDES, "--out", str(out), *extra], out / "run" / "metrics.jsonl"


def start_head() -> str:
    """A running Ray instance, as a cluster's head would be; its temporary folder."""
    head = tempfile.mkdtemp(prefix="rayh", dir="/tmp")
    subprocess.run([RAY, "start", "--head", "--num-cpus=2", "--port=6390", f"--temp-dir={head}", "--include-dashboard=false"],
                   check=True, capture_output=True)
    return head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--executors", default="train,local,ray,ray-attached,slurm")
    args = parser.parse_args()
    for name in args.executors.split(","):
        head = start_head() if name == "ray-attached" else None
        try:
            seconds = []
            for _ in range(args.repeat):
                out = Path(tempfile.mkdtemp(prefix=f"ovh-{name}-", dir="/tmp"))
                cmd, metrics = command(name, out, "127.0.0.1:6390")
                seconds.append(first_step_seconds(cmd, metrics))
                shutil.rmtree(out, ignore_errors=True)
        finally:
            if head is not None:
                subprocess.run([RAY, "stop", "--force"], capture_output=True)
                shutil.rmtree(head, ignore_errors=True)
        print(f"{name:13s} submit -> first step: median {statistics.median(seconds):5.1f} s  "
              f"(runs: {', '.join(f'{s:.1f}' for s in seconds)})", flush=True)
    print(f"load average while measuring: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
