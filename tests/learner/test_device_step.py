"""A training step ready for CUDA, checked without a GPU: every shipped offline recipe runs full
steps (sampling included) with its modules and data on the ``meta`` device, under a dispatch
mode that fails on any host synchronisation or any tensor computed on the CPU.

Why ``meta``: on torch's CPU wheel, fake CUDA tensors cannot be made from modules
(``module.to("cuda")`` fails without CUDA linked in), while meta tensors run forward passes,
``autograd.grad`` and the fused Adam kernel, and hold no data, so nothing can be read back:
``.item()``, ``bool(t)``, ``.cpu()``, ``.tolist()`` and ``.numpy()`` raise, as does mixing a
CPU tensor into an op. The mode below also names the op, and catches what meta alone lets
pass (a tensor created on the CPU and used only with other CPU tensors or as a scalar).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from advrl.component import Component, DataSpec
from advrl.data.dataset import DatasetInfo, ObservationNormalizer, OfflineData
from advrl.learner.assembly import build_components, build_updates
from advrl.recipe import load_recipe
from advrl.registry import register

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
OFFLINE_RECIPES = ["td3bc", "iql", "cql", "bc", "a2pr", "a2po", "ssar_td3bc", "ssar_cql"]
SPEC = DataSpec(obs_dim=5, action_dim=2, max_action=1.0)
SIZE, BATCH = 256, 16
META = torch.device("meta")


class HostSyncError(AssertionError):
    """The step read a device tensor back to the host, or computed a tensor on the CPU."""


class WatchHost(TorchDispatchMode):
    """Raise at the first op that reads a value back to the host or (``cpu_ok`` False) outputs
    a CPU tensor."""

    def __init__(self, cpu_ok: bool = False, cpu_scalars_ok: bool = False):
        super().__init__()
        self.cpu_ok, self.cpu_scalars_ok = cpu_ok, cpu_scalars_ok

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in ("_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2"):
            raise HostSyncError(f"host synchronisation in the step: aten.{name} (.item(), bool(t) or a data-dependent shape)")
        out = func(*args, **(kwargs or {}))
        cpu = [] if self.cpu_ok else [t for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.device.type == "cpu"
                                      and not (self.cpu_scalars_ok and t.dim() == 0)]
        if cpu:
            raise HostSyncError(f"aten.{name} made a tensor on the CPU (shape {list(cpu[0].shape)}) inside the step")
        return out


def transitions(size: int = SIZE) -> TensorDict:
    gen = torch.Generator().manual_seed(0)
    return TensorDict(
        {
            "observation": torch.randn(size, SPEC.obs_dim, generator=gen),
            "action": torch.rand(size, SPEC.action_dim, generator=gen) * 1.8 - 0.9,
            "reward": torch.randn(size, generator=gen),
            "next": {"observation": torch.randn(size, SPEC.obs_dim, generator=gen)},
            "terminated": (torch.rand(size, generator=gen) < 0.05).float(),
            "truncated": torch.zeros(size),
            "episode": torch.arange(size) // 32,
            "episode_return": torch.randn(size, generator=gen) * 10,
            "return_to_go": torch.randn(size, generator=gen) * 10,
            "index": torch.arange(size),
        },
        batch_size=[size],
        device="cpu",
    )


def tiny(recipe_name: str, extra: list[str]) -> list[str]:
    """Overrides shrinking every network of a recipe (and SSAR's IQL pre-training) to seconds."""
    recipe = load_recipe(RECIPES / f"{recipe_name}.yaml")
    overrides = [f"train.batch_size={BATCH}", "train.steps=100", *extra]
    for slot, entry in recipe.components.items():
        if "hidden_sizes" in entry:
            overrides.append(f"components.{slot}.hidden_sizes=[8,8]")
        if "pretrain_steps" in entry:
            overrides += [f"components.{slot}.pretrain_steps=2", f"components.{slot}.batch_size=8"]
    return overrides


def prepared_components(recipe_name: str, extra: list[str] = (), device: torch.device = META):
    """The recipe, its components prepared on the CPU (pre-training needs data) and moved to
    ``device``, and the data there."""
    recipe = load_recipe(RECIPES / f"{recipe_name}.yaml", tiny(recipe_name, list(extra)), dataset_facts=vars(SPEC))
    info = DatasetInfo("synthetic/meta-v0", SPEC.obs_dim, SPEC.action_dim, SPEC.max_action, SIZE, SIZE // 32, None, None, None)
    normalizer = ObservationNormalizer(torch.zeros(SPEC.obs_dim), torch.ones(SPEC.obs_dim))
    components = build_components(recipe, SPEC, bind=False)
    cpu_data = OfflineData(transitions(), info, normalizer)
    build_updates(recipe, components, torch.device("cpu"))  # binds, as the trainer does before prepare
    for component in components.values():
        component.prepare(cpu_data, {"seed": 0, "device": torch.device("cpu")})
    for component in components.values():
        component.to(device)
    return recipe, components, OfflineData(transitions().to(device), info, normalizer)


def meta_setup(recipe_name: str, extra: list[str] = (), device: torch.device = META):
    recipe, components, data = prepared_components(recipe_name, extra, device)
    updates, reads = build_updates(recipe, components, device)
    data.select(sorted(reads))
    return data, updates


def vectorised_meta_setup(recipe_name: str, extra: list[str] = (), replicas: int = 2):
    """``replicas`` seeds stacked on ``meta`` as ``advrl train --vectorize`` stacks them. meta has
    no generators, so the replicas draw from the default one (None): checked here is where
    tensors live and that nothing syncs; the streams are tests/learner/test_vectorized.py's."""
    from advrl.learner.replicas import ReplicaStack

    built = []
    for seed in range(replicas):
        torch.manual_seed(seed)
        recipe, components, data = prepared_components(recipe_name, extra)
        built.append(components)
    stack = ReplicaStack(built, [None] * replicas, list(range(replicas)))
    updates, reads = build_updates(recipe, stack.components, META, replicas=stack)
    data.select(sorted(reads))
    return data, updates, stack


def run_steps(data: OfflineData, updates, steps: int = 4, cpu_ok: bool = False, generators=None) -> set[str]:
    """Steps 1..steps as the trainer's loop runs them (non-logging); then each update that was
    not due yet once more at its first due step. Returns the names of the updates run.
    ``generators``: one per vectorised seed (batches ``[K, B]``)."""
    step_tensor = torch.zeros((), dtype=torch.long, device=data.device)
    ran = set()
    plan = [(step, [u for u in updates if u.active(step)]) for step in range(1, steps + 1)]
    for update in updates:
        if update.name not in {u.name for _, due in plan for u in due}:
            first = next(s for s in range(1, 10**7) if update.active(s))
            plan += [(first, [update]), (first + update.every, [update])]
    for step, due in plan:
        # vmap turns Python numbers (``alpha / q``) into 0-dim CPU tensors; a CUDA kernel takes
        # those as arguments, read on the host, without a copy or a device sync
        with WatchHost(cpu_ok, cpu_scalars_ok=generators is not None):
            step_tensor.fill_(step)
            batch = data.sample(BATCH) if generators is None else data.sample_replicas(BATCH, generators)
            for update in due:
                update.run(batch, step, step_tensor)
        ran.update(u.name for u in due)
    return ran


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVRL_CACHE", str(tmp_path / "cache"))  # SSAR's IQL labels


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("recipe_name", OFFLINE_RECIPES)
def test_every_recipe_steps_on_the_device_without_host_syncs(recipe_name, precision):
    data, updates = meta_setup(recipe_name, [f"train.precision={precision}"])
    assert run_steps(data, updates) == {u.name for u in updates}  # every update ran
    params = [p for u in updates for g in u.groups for p in g.params]
    assert params and all(p.device == META for p in params)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("recipe_name", OFFLINE_RECIPES)
def test_every_recipe_steps_vectorised_on_the_device_without_host_syncs(recipe_name, precision):
    data, updates, stack = vectorised_meta_setup(recipe_name, [f"train.precision={precision}"])
    assert run_steps(data, updates, generators=stack.generators) == {u.name for u in updates}
    params = [p for u in updates for g in u.groups for p in g.params]
    assert params and all(p.device == META and p.shape[0] == stack.size for p in params)


@pytest.mark.parametrize("recipe_name", OFFLINE_RECIPES)
def test_bf16_autocast_adds_no_host_sync(recipe_name, monkeypatch):
    """meta has no autocast, so the step above runs bf16's code path without autocast's own
    kernels; here the real CPU autocast kernels run, watched for host syncs (CPU tensors are the
    point here, so only syncs count)."""
    from advrl import device as advrl_device

    monkeypatch.setattr(advrl_device, "cpu_has_bf16", lambda: True)
    data, updates = meta_setup(recipe_name, ["train.precision=bf16"], torch.device("cpu"))
    assert {dtype for u in updates for dtype in u._dtypes} == {torch.bfloat16}
    assert run_steps(data, updates, cpu_ok=True) == {u.name for u in updates}


# ways a compute reads a device tensor back to the host
READ_BACK = {
    "item": lambda t: t.item(),
    "bool": lambda t: bool(t > 0),
    "cpu": lambda t: t.cpu(),
    "tolist": lambda t: t.tolist(),
    "numpy": lambda t: t.detach().numpy(),
    "mask": lambda t: t.reshape(1)[t.reshape(1) > 0],  # a data-dependent shape
}


@register("constraint", "test_syncing_bc")
class SyncingBC(Component):
    """BC that reads its loss back to the host inside compute: the kind of sync the test must catch."""

    @dataclass
    class Config:
        how: str = "item"

    reads = ("observation", "action", "policy_action")
    losses = ("loss_bc",)

    def compute(self, td, step):
        loss = ((td["policy_action"] - td["action"]) ** 2).mean()
        READ_BACK[self.config.how](loss.detach())  # a host sync on every step
        return {"loss_bc": loss}


@register("constraint", "test_cpu_constant_bc")
class CpuConstantBC(SyncingBC):
    """BC scaled by a constant made on the CPU each step (a host-to-device copy on CUDA)."""

    def compute(self, td, step):
        weight = torch.tensor(0.5)
        return {"loss_bc": ((td["policy_action"] - td["action"]) ** 2).mean() * weight}


@pytest.mark.parametrize("how", sorted(READ_BACK))
def test_a_step_that_reads_a_tensor_back_to_the_host_is_caught(how):
    data, updates = meta_setup("bc", ["components.constraint.name=test_syncing_bc", f"components.constraint.how={how}"])
    with pytest.raises((HostSyncError, RuntimeError, NotImplementedError, TypeError)) as caught:
        run_steps(data, updates)
    assert "meta" in str(caught.value) or isinstance(caught.value, HostSyncError)  # the step's read, not another error


def test_a_step_that_computes_on_the_cpu_is_caught():
    data, updates = meta_setup("bc", ["components.constraint.name=test_cpu_constant_bc"])
    with pytest.raises(HostSyncError, match="on the CPU"):
        run_steps(data, updates)


def test_a_sync_inside_bf16_autocast_on_the_cpu_is_caught(monkeypatch):
    from advrl import device as advrl_device

    monkeypatch.setattr(advrl_device, "cpu_has_bf16", lambda: True)
    data, updates = meta_setup("bc", ["train.precision=bf16", "components.constraint.name=test_syncing_bc"], torch.device("cpu"))
    with pytest.raises(HostSyncError, match="host synchronisation"):
        run_steps(data, updates, cpu_ok=True)

