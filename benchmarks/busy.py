"""advrl's TD3+BC steps/s on a shared machine: 2 threads beside busy processes, with OpenMP's
default wait policy (threads spin before they sleep) and with ``OMP_WAIT_POLICY=PASSIVE`` (what
the ``advrl`` CLI sets unless the user set the variable; see advrl/threads.py).

    python benchmarks/busy.py [--steps 300] [--repeats 3] [--threads 2] [--busy 1] [--idle]

Each measurement is a fresh process (the policy is read once, when torch starts) timing
``--steps`` gradient steps of recipes/td3bc.yaml on throughput.py's synthetic data, while
``--busy`` other processes each keep one core busy (a Python loop). The two policies alternate
which goes first in each of the ``--repeats`` rounds; steps/s are medians (min-max shown).
``--idle`` adds the same two measurements with nothing else running. Anything else running on
the machine adds to the load: the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
POLICIES = {"default": None, "passive": "PASSIVE"}
SPIN = "while True: pass"


def worker(steps: int) -> None:
    """Time ``steps`` TD3+BC steps in this process; print one JSON line."""
    import torch

    sys.path.insert(0, str(HERE.parent))
    from throughput import AdvrlRunner, rate

    runner = AdvrlRunner("td3bc", torch.device("cpu"))
    runner.run(20)  # warm-up: allocator, kernels, the thread pool
    print(json.dumps({"steps_per_s": rate(runner, steps), "threads": torch.get_num_threads()}))


def measure(policy: str, steps: int, threads: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "ADVRL_OMP_CHOSEN")}
    env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent.parent), env.get("PYTHONPATH", "")])
    if POLICIES[policy]:
        env["OMP_WAIT_POLICY"] = POLICIES[policy]
    proc = subprocess.run([sys.executable, str(HERE), "--worker", "--steps", str(steps)], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])["steps_per_s"]


def rounds(steps: int, repeats: int, threads: int, busy: int) -> dict[str, list[float]]:
    """Steps/s per policy over ``repeats`` rounds, with ``busy`` spinning processes running."""
    hogs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(busy)]
    try:
        time.sleep(0.5 if busy else 0)  # let the hogs take their cores
        rates = {policy: [] for policy in POLICIES}
        for repeat in range(repeats):
            order = list(POLICIES) if repeat % 2 == 0 else list(reversed(POLICIES))  # alternate who goes first
            for policy in order:
                rates[policy].append(measure(policy, steps, threads))
        return rates
    finally:
        for hog in hogs:
            hog.terminate()
        for hog in hogs:
            hog.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="gradient steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the measured process")
    parser.add_argument("--busy", type=int, default=1, help="processes each keeping one core busy")
    parser.add_argument("--idle", action="store_true", help="also measure with no busy process")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.steps)
        return
    load_before = os.getloadavg()[0]
    results = {f"busy {args.busy}": rounds(args.steps, args.repeats, args.threads, args.busy)}
    if args.idle:
        results["idle"] = rounds(args.steps, args.repeats, args.threads, 0)
    if args.json:
        print(json.dumps({"load_before": load_before, "results": results}))
        return
    print(f"TD3+BC, {args.threads} threads, {args.steps} steps per measurement, {args.repeats} rounds; "
          f"{os.cpu_count()} CPUs, 1-min load average before: {load_before:.2f} (the busy processes add {args.busy})")
    print(f"{'setting':10s} {'wait policy':12s} {'steps/s':>8s}  (min-max)")
    for setting, rates in results.items():
        for policy, values in rates.items():
            print(f"{setting:10s} {policy:12s} {statistics.median(values):8.1f}  ({min(values):.1f}-{max(values):.1f})")


if __name__ == "__main__":
    main()
