"""Gradient steps per second of advrl's TD3+BC and IQL recipes against a plain single-file
PyTorch implementation of the same update (benchmarks/reference.py), in the same process,
on the same synthetic Hopper-shaped data (obs 11, action 3, batch 256). ``--algos a2pr``
also times recipes/a2pr.yaml against benchmarks/reference_a2pr.py, ``--algos a2po``
recipes/a2po.yaml against benchmarks/reference_a2po.py, ``--algos cql`` recipes/cql.yaml
against benchmarks/reference_cql.py.

    python benchmarks/throughput.py [--steps 1000] [--repeats 3] [--algos td3bc iql a2pr a2po cql] [--json]

Timings alternate advrl and reference blocks ``--repeats`` times (alternating which goes
first); steps/s are medians and the ratio is the median of the per-pair ratios (min and max
are reported too), so a slow moment of the machine does not favour either side. Run it on an
otherwise idle machine: on 2 cores any other job distorts the numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from tensordict import TensorDict

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference  # noqa: E402
import reference_a2po  # noqa: E402
import reference_a2pr  # noqa: E402
import reference_cql  # noqa: E402

from advrl.component import DataSpec  # noqa: E402
from advrl.data.dataset import DatasetInfo, ObservationNormalizer, OfflineData  # noqa: E402
from advrl.learner.assembly import build_components, build_updates  # noqa: E402
from advrl.recipe import load_recipe  # noqa: E402

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
OBS_DIM, ACT_DIM, SIZE, BATCH = 11, 3, 100_000, 256


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
    def __init__(self, recipe_name: str, device: torch.device):
        spec = DataSpec(OBS_DIM, ACT_DIM, 1.0)
        recipe = load_recipe(RECIPES / f"{recipe_name}.yaml", dataset_facts=vars(spec))
        info = DatasetInfo("synthetic", OBS_DIM, ACT_DIM, 1.0, SIZE, 100, None, None, None)
        normalizer = ObservationNormalizer(torch.zeros(OBS_DIM), torch.ones(OBS_DIM))
        self.data = OfflineData(synthetic_transitions(device), info, normalizer)
        self.components = build_components(recipe, spec, bind=False)
        for component in self.components.values():
            component.to(device)
        self.updates, dataset_reads = build_updates(recipe, self.components, device)
        self.data.select(sorted(dataset_reads))
        self.step = 0
        self.step_tensor = torch.zeros((), dtype=torch.long, device=device)

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step += 1
            self.step_tensor.fill_(self.step)
            batch = self.data.sample(BATCH)
            for update in self.updates:
                if update.active(self.step):
                    update.run(batch, self.step, self.step_tensor)


class ReferenceRunner:
    def __init__(self, algo: str, device: torch.device):
        td = synthetic_transitions(device)
        self.columns = (td["observation"], td["action"], td["reward"].unsqueeze(-1), td["next", "observation"], td["terminated"].unsqueeze(-1))
        if algo == "a2pr":
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
    start = time.perf_counter()
    runner.run(steps)
    return steps / (time.perf_counter() - start)


def measure(algo: str, steps: int, repeats: int, device: torch.device) -> dict:
    """Alternate advrl and reference blocks; the ratio is the median over adjacent pairs, so
    a slow stretch of the machine hits both sides of a pair rather than one algorithm."""
    torch.manual_seed(0)
    ours, ref = AdvrlRunner(algo, device), ReferenceRunner(algo, device)
    ours.run(20), ref.run(20)  # warm-up: allocator, kernels
    ours_rates, ref_rates = [], []
    for repeat in range(repeats):
        first, second = (ours, ref) if repeat % 2 == 0 else (ref, ours)  # alternate who goes first
        a, b = rate(first, steps), rate(second, steps)
        ours_rates.append(a if first is ours else b)
        ref_rates.append(b if first is ours else a)
    ratios = [o / r for o, r in zip(ours_rates, ref_rates)]
    return {
        "steps_per_s": statistics.median(ours_rates),
        "reference_steps_per_s": statistics.median(ref_rates),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="gradient steps per timed block")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--algos", nargs="+", default=["td3bc", "iql"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    device = torch.device(args.device)
    results = {algo: measure(algo, args.steps, args.repeats, device) for algo in args.algos}
    if args.json:
        print(json.dumps(results))
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}, batch {BATCH}")
    print(f"{'algorithm':10s} {'advrl steps/s':>14s} {'reference':>10s} {'ratio':>6s}  (min-max over pairs)")
    for algo, r in results.items():
        print(
            f"{algo:10s} {r['steps_per_s']:14.1f} {r['reference_steps_per_s']:10.1f} {r['ratio']:6.2f}"
            f"  ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})"
        )


if __name__ == "__main__":
    main()
