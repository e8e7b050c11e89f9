"""Gradient steps per second of advrl's TD3+BC and IQL recipes against a plain single-file
PyTorch implementation of the same update (benchmarks/reference.py), in the same process,
on the same synthetic Hopper-shaped data (obs 11, action 3, batch 256). ``--algos a2pr``
also times recipes/a2pr.yaml against benchmarks/reference_a2pr.py, ``--algos a2po``
recipes/a2po.yaml against benchmarks/reference_a2po.py, ``--algos cql`` recipes/cql.yaml
against benchmarks/reference_cql.py, ``--algos ssar_td3bc`` recipes/ssar_td3bc.yaml against
benchmarks/reference_ssar_td3bc.py (its selection mask: a fixed random column in the
reference; advrl's IQL pre-training for it is shortened to 10 steps, outside the timed
steps). ``--precision fp32 bf16`` times advrl at each ``train.precision`` (bf16: matrix
products under autocast, see README "Speed") against the same float32 reference, and prints
the processor's bf16 flags (AVX512-BF16, AMX-BF16). ``--replicas K`` also times advrl with K
vectorised seeds (one process, K seeds stacked and stepped under vmap, built as
``advrl train RECIPE seed=0,...,K-1 --vectorize`` builds them) at each precision, rows
``fp32 K=5``, ``bf16 K=5``: their steps/s count seed-steps (K x steps / s), against the same
one-seed float32 reference, so the ratio is the gain per trained seed.

    python benchmarks/throughput.py [--steps 1000] [--repeats 7] [--algos td3bc iql a2pr a2po cql ssar_td3bc] [--json]
    python benchmarks/throughput.py --algos td3bc cql a2pr --precision fp32 bf16
    OMP_NUM_THREADS=1 python benchmarks/throughput.py --algos td3bc iql cql a2pr a2po ssar_td3bc --precision fp32 bf16 --replicas 5

Timings alternate advrl and reference blocks ``--repeats`` times (rotating which goes
first); steps/s are medians and the ratio is the median of the per-pair ratios (min and max
are reported too), so a slow moment of the machine does not favour either side. Run it on an
otherwise idle machine: on 2 cores any other job distorts the numbers. ``--json`` prints
``{algo: row}`` with one row (one precision, no ``--replicas``), else ``{algo: {label: row}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from unittest import mock

import torch
from tensordict import TensorDict

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference  # noqa: E402
import reference_a2po  # noqa: E402
import reference_a2pr  # noqa: E402
import reference_cql  # noqa: E402
import reference_ssar_td3bc  # noqa: E402

from advrl.component import DataSpec  # noqa: E402
from advrl.data.dataset import DatasetInfo, ObservationNormalizer, OfflineData  # noqa: E402
from advrl.device import generator_like_global  # noqa: E402
from advrl.learner.assembly import build_components, build_updates  # noqa: E402
from advrl.learner.replicas import ReplicaStack  # noqa: E402
from advrl.recipe import load_recipe  # noqa: E402

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
OBS_DIM, ACT_DIM, SIZE, BATCH = 11, 3, 100_000, 256
# preparation (SSAR's IQL pre-training for its selection mask) is outside the timed steps: kept short
OVERRIDES = {"ssar_td3bc": ["components.selector.pretrain_steps=10"]}


def synthetic_transitions(device: torch.device) -> TensorDict:
    gen = torch.Generator().manual_seed(0)
    return TensorDict(
        {
            "observation": torch.randn(SIZE, OBS_DIM, generator=gen),
            "action": torch.rand(SIZE, ACT_DIM, generator=gen) * 2 - 1,
            "reward": torch.randn(SIZE, generator=gen),
            "next": {"observation": torch.randn(SIZE, OBS_DIM, generator=gen)},
            "terminated": (torch.rand(SIZE, generator=gen) < 0.01).float(),
            "truncated": torch.zeros(SIZE),
            "episode": torch.arange(SIZE) // 1000,
            "episode_return": torch.randn(SIZE, generator=gen),
            "return_to_go": torch.randn(SIZE, generator=gen),
        },
        batch_size=[SIZE],
    ).to(device)


class AdvrlRunner:
    """One run of a recipe, or (``replicas=K``) K vectorised seeds assembled as
    ``VectorizedTrainer`` assembles them: replica k built after ``torch.manual_seed(k)``, with a
    generator holding the global state after its build, then stacked (``ReplicaStack``)."""

    def __init__(self, recipe_name: str, device: torch.device, precision: str = "fp32", replicas: int | None = None):
        spec = DataSpec(OBS_DIM, ACT_DIM, 1.0)
        overrides = [f"train.precision={precision}", *OVERRIDES.get(recipe_name, [])]
        recipe = load_recipe(RECIPES / f"{recipe_name}.yaml", overrides, dataset_facts=vars(spec))
        info = DatasetInfo("synthetic", OBS_DIM, ACT_DIM, 1.0, SIZE, 100, None, None, None)
        normalizer = ObservationNormalizer(torch.zeros(OBS_DIM), torch.ones(OBS_DIM))
        self.data = OfflineData(synthetic_transitions(device), info, normalizer)
        self.seeds, stack = replicas or 1, None
        if replicas is None:
            self.components = self._build(recipe, spec, device, seed=0)
        else:
            built, generators = [], []
            for seed in range(replicas):
                torch.manual_seed(seed)
                built.append(self._build(recipe, spec, device, seed))
                generators.append(generator_like_global(device))
            stack = ReplicaStack(built, generators, list(range(replicas)))
            self.components = stack.components
        self.updates, dataset_reads = build_updates(recipe, self.components, device, self.data.keys, stack)
        self.data.select(sorted(dataset_reads))
        self.sample = partial(self.data.sample, BATCH) if stack is None else partial(
            self.data.sample_replicas, BATCH, stack.generators)
        self.step = 0
        self.step_tensor = torch.zeros((), dtype=torch.long, device=device)

    def _build(self, recipe, spec: DataSpec, device: torch.device, seed: int) -> dict:
        """A single run's components, prepared on the synthetic data (their caches, e.g. the
        SSAR selector's labels, go to a temporary folder, not the user's)."""
        components = build_components(recipe, spec, bind=False)
        for component in components.values():
            component.to(device)
        with tempfile.TemporaryDirectory() as cache, mock.patch.dict(os.environ, {"ADVRL_CACHE": cache}):
            for component in components.values():
                component.prepare(self.data, {"seed": seed, "device": device})
        return components

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step += 1
            self.step_tensor.fill_(self.step)
            batch = self.sample()
            for update in self.updates:
                if update.active(self.step):
                    update.run(batch, self.step, self.step_tensor)


class ReferenceRunner:
    seeds = 1

    def __init__(self, algo: str, device: torch.device):
        td = synthetic_transitions(device)
        self.columns = (td["observation"], td["action"], td["reward"].unsqueeze(-1), td["next", "observation"], td["terminated"].unsqueeze(-1))
        if algo == "ssar_td3bc":  # the selection mask: a fixed random column (its IQL pre-training is not timed)
            trust = torch.rand(SIZE, 1, generator=torch.Generator().manual_seed(1)) < 0.5
            self.columns += (trust.float().to(device),)
            self.agent = reference_ssar_td3bc.SSARTD3BC(OBS_DIM, ACT_DIM, device=device)
        elif algo == "a2pr":
            self.agent = reference_a2pr.A2PR(OBS_DIM, ACT_DIM, device=device)
        elif algo == "a2po":
            self.agent = reference_a2po.A2PO(OBS_DIM, ACT_DIM, device=device)
        elif algo == "cql":
            self.agent = reference_cql.CQL(OBS_DIM, ACT_DIM, device=device)
        else:
            self.agent = reference.TD3BC(OBS_DIM, ACT_DIM) if algo == "td3bc" else reference.IQL(OBS_DIM, ACT_DIM)
        self.device = device

    def run(self, steps: int) -> None:
        for _ in range(steps):
            idx = torch.randint(SIZE, (BATCH,), device=self.device)
            self.agent.train([column[idx] for column in self.columns])


def rate(runner, steps: int) -> float:
    """Seed-steps per second: gradient steps times the seeds each step trains."""
    start = time.perf_counter()
    runner.run(steps)
    return runner.seeds * steps / (time.perf_counter() - start)


def measure(algo: str, steps: int, repeats: int, device: torch.device, precisions=("fp32",),
            replicas: int | None = None) -> dict:
    """Time advrl (at each precision; with ``replicas=K`` also K vectorised seeds at each,
    rows ``"bf16 K=5"``) and the reference in rotating order; each ratio is the median over
    the rounds of advrl / reference measured in the same round, so a slow stretch of the
    machine hits both sides of a ratio rather than one of them."""
    torch.manual_seed(0)
    runners = {precision: AdvrlRunner(algo, device, precision) for precision in precisions}
    runners["reference"] = ReferenceRunner(algo, device)
    if replicas:
        runners.update({f"{p} K={replicas}": AdvrlRunner(algo, device, p, replicas) for p in precisions})
    for runner in runners.values():
        runner.run(20)  # warm-up: allocator, kernels
    rates = {name: [] for name in runners}
    names = list(runners)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:  # rotate who goes first
            rates[name].append(rate(runners[name], steps))
    results = {}
    for name in (n for n in names if n != "reference"):
        ratios = [o / r for o, r in zip(rates[name], rates["reference"])]
        results[name] = {
            "steps_per_s": statistics.median(rates[name]),  # per seed-step
            "reference_steps_per_s": statistics.median(rates["reference"]),
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
    # one row: the flat layout earlier results (RESULTS.md) were written in
    return results[precisions[0]] if len(results) == 1 else results


def bf16_flags() -> str:
    """The processor's native bf16 features, as /proc/cpuinfo names them."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith(("flags", "Features"))), [])
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    found = sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_tile", "bf16"))
    return ", ".join(found) or "none (bf16 is emulated: slower than fp32)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="gradient steps per timed block")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--algos", nargs="+", default=["td3bc", "iql"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                        help="train.precision values of advrl to time (the reference is float32)")
    parser.add_argument("--replicas", type=int, default=None, metavar="K",
                        help="also time K vectorised seeds at each precision, per seed-step")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    device = torch.device(args.device)
    precisions = tuple(dict.fromkeys(args.precision))
    results = {algo: measure(algo, args.steps, args.repeats, device, precisions, args.replicas) for algo in args.algos}
    if args.json:
        print(json.dumps(results))
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}, batch {BATCH}")
    if "bf16" in precisions:
        print(f"CPU bf16 features: {bf16_flags()}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}")
    if args.replicas:
        print(f"K={args.replicas} rows: vectorised seeds, steps/s counted per seed-step (K x steps / s)")
    print(f"{'algorithm':10s} {'precision':10s} {'advrl steps/s':>14s} {'reference':>10s} {'ratio':>6s}  (min-max over rounds)")
    for algo, result in results.items():
        rows = result if "ratio" not in result else {precisions[0]: result}
        for label, r in rows.items():
            print(
                f"{algo:10s} {label:10s} {r['steps_per_s']:14.1f} {r['reference_steps_per_s']:10.1f} {r['ratio']:6.2f}"
                f"  ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})"
            )


if __name__ == "__main__":
    main()
