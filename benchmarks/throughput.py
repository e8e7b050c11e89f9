"""Gradient steps per second of advrl's TD3+BC and IQL recipes against a plain single-file
PyTorch implementation of the same update (benchmarks/reference.py), in the same process,
on the same synthetic Hopper-shaped data (obs 11, action 3, batch 256). ``--algos a2pr``
also times recipes/a2pr.yaml against benchmarks/reference_a2pr.py, ``--algos a2po``
recipes/a2po.yaml against benchmarks/reference_a2po.py, ``--algos cql`` recipes/cql.yaml
against benchmarks/reference_cql.py. ``--precision fp32 bf16`` times advrl at each
``train.precision`` (bf16: matrix products under autocast, see README "Speed") against the
same float32 reference, and prints the processor's bf16 flags (AVX512-BF16, AMX-BF16).

    python benchmarks/throughput.py [--steps 1000] [--repeats 3] [--algos td3bc iql a2pr a2po cql] [--json]
    python benchmarks/throughput.py --algos td3bc cql a2pr --precision fp32 bf16

Timings alternate advrl and reference blocks ``--repeats`` times (rotating which goes
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
    def __init__(self, recipe_name: str, device: torch.device, precision: str = "fp32"):
        spec = DataSpec(OBS_DIM, ACT_DIM, 1.0)
        recipe = load_recipe(RECIPES / f"{recipe_name}.yaml", [f"train.precision={precision}"], dataset_facts=vars(spec))
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


def measure(algo: str, steps: int, repeats: int, device: torch.device, precisions=("fp32",)) -> dict:
    """Time advrl (at each precision) and the reference in rotating order; each ratio is the
    median over the rounds of advrl / reference measured in the same round, so a slow stretch
    of the machine hits both sides of a ratio rather than one of them."""
    torch.manual_seed(0)
    runners = {precision: AdvrlRunner(algo, device, precision) for precision in precisions}
    runners["reference"] = ReferenceRunner(algo, device)
    for runner in runners.values():
        runner.run(20)  # warm-up: allocator, kernels
    rates = {name: [] for name in runners}
    names = list(runners)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:  # rotate who goes first
            rates[name].append(rate(runners[name], steps))
    results = {}
    for precision in precisions:
        ratios = [o / r for o, r in zip(rates[precision], rates["reference"])]
        results[precision] = {
            "steps_per_s": statistics.median(rates[precision]),
            "reference_steps_per_s": statistics.median(rates["reference"]),
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
    # one precision: the flat layout earlier results (RESULTS.md) were written in
    return results[precisions[0]] if len(precisions) == 1 else results


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
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    device = torch.device(args.device)
    precisions = tuple(dict.fromkeys(args.precision))
    results = {algo: measure(algo, args.steps, args.repeats, device, precisions) for algo in args.algos}
    if args.json:
        print(json.dumps(results))
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}, batch {BATCH}")
    if "bf16" in precisions:
        print(f"CPU bf16 features: {bf16_flags()}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'algorithm':10s} {'precision':9s} {'advrl steps/s':>14s} {'reference':>10s} {'ratio':>6s}  (min-max over rounds)")
    for algo, result in results.items():
        rows = result if len(precisions) > 1 else {precisions[0]: result}
        for precision, r in rows.items():
            print(
                f"{algo:10s} {precision:9s} {r['steps_per_s']:14.1f} {r['reference_steps_per_s']:10.1f} {r['ratio']:6.2f}"
                f"  ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})"
            )


if __name__ == "__main__":
    main()
