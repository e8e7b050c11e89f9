"""train.precision: fp32 stays bit-identical to the code before it existed; bf16 runs each term's
compute under autocast while losses, weights, optimiser state and the batch stay float32; a slot
can opt out; bad values fail in one line; the choice travels with the run (resume, eval)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from tensordict import TensorDict

import advrl
from advrl import device as advrl_device
from advrl import provenance
from advrl.cli import main
from advrl.component import Component, DataSpec
from advrl.data.dataset import DatasetInfo, ObservationNormalizer, OfflineData
from advrl.learner.assembly import build_components, build_updates
from advrl.learner.trainer import RECIPE_FILE, Trainer
from advrl.recipe import RecipeError, load_recipe
from advrl.registry import register

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SPEC = DataSpec(obs_dim=5, action_dim=2, max_action=1.0)
N = 512

# sha256 (first 16 hex) of every component's state after 6 steps (tests below), computed by the
# code before train.precision existed (commit 8069f7f), one thread, on the processor and torch
# named here: float32 kernels differ between instruction sets, so elsewhere the digests differ
RECORDED_ON = ("fb86c92f4654", "2.13.0+cpu")  # provenance.processor()["flags_sha256"], torch.__version__
BEFORE_PRECISION = {"td3bc": "2dc0293af7794bad", "iql": "3cd15f635f18574a", "cql": "2cc33cc8a5478347", "a2pr": "87a12e9b0537ce9e"}


def synthetic_data() -> OfflineData:
    gen = torch.Generator().manual_seed(0)
    td = TensorDict(
        {"observation": torch.randn(N, 5, generator=gen), "action": torch.rand(N, 2, generator=gen) * 1.8 - 0.9,
         "reward": torch.randn(N, generator=gen), "next": {"observation": torch.randn(N, 5, generator=gen)},
         "terminated": (torch.rand(N, generator=gen) < 0.05).float(), "truncated": torch.zeros(N),
         "episode": torch.arange(N) // 32, "episode_return": torch.randn(N, generator=gen),
         "return_to_go": torch.randn(N, generator=gen), "index": torch.arange(N)},
        batch_size=[N], device="cpu",
    )
    info = DatasetInfo("synthetic", 5, 2, 1.0, N, N // 32, None, None, None)
    return OfflineData(td, info, ObservationNormalizer(torch.zeros(5), torch.ones(5)))


def run_steps(recipe_name: str, overrides=(), steps: int = 6):
    """(components, the last losses of each update) after ``steps`` steps on synthetic data."""
    recipe = load_recipe(RECIPES / f"{recipe_name}.yaml", ["train.batch_size=32", *overrides], dataset_facts=vars(SPEC))
    data = synthetic_data()
    torch.manual_seed(0)
    components = build_components(recipe, SPEC, bind=False)
    updates, reads = build_updates(recipe, components, torch.device("cpu"))
    data.select(sorted(reads))
    step_tensor, losses = torch.zeros((), dtype=torch.long), {}
    for step in range(1, steps + 1):
        step_tensor.fill_(step)
        batch = data.sample(32)
        for update in updates:
            if update.active(step):
                losses.update(update.run(batch, step, step_tensor))
    return components, updates, losses, batch


def digest(components) -> str:
    h = hashlib.sha256()
    for component in components.values():
        for _, value in sorted(component.state_dict().items()):
            h.update(value.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("recipe_name", sorted(BEFORE_PRECISION))
def test_fp32_steps_are_bit_identical_to_the_code_before_precision(recipe_name, one_thread):
    here = (provenance.processor()["flags_sha256"], torch.__version__)
    if here != RECORDED_ON:
        pytest.skip(f"digests recorded on processor/torch {RECORDED_ON}, this is {here}")
    components, *_ = run_steps(recipe_name, ["train.precision=fp32"])
    assert digest(components) == BEFORE_PRECISION[recipe_name]


def test_fp32_never_enters_autocast(monkeypatch):
    """Anywhere: the fp32 step is the old code path, not autocast with float32."""
    def refuse(*args, **kwargs):
        raise AssertionError("autocast entered in an fp32 run")

    monkeypatch.setattr(torch, "autocast", refuse)
    run_steps("td3bc", steps=2)
    with pytest.raises(AssertionError, match="autocast entered"):
        run_steps("td3bc", ["train.precision=bf16"], steps=2)


@pytest.fixture
def bf16_cpu(monkeypatch):
    """bf16 in effect whatever the CPU (torch runs bf16 autocast everywhere, slowly without it)."""
    monkeypatch.setattr(advrl_device, "cpu_has_bf16", lambda: True)


def test_bf16_trains_with_float32_losses_weights_optimiser_state_and_batch(bf16_cpu, one_thread):
    fp32, *_ = run_steps("td3bc")
    components, updates, losses, batch = run_steps("td3bc", ["train.precision=bf16"])
    assert {"loss_critic", "loss_actor", "loss_bc"} <= set(losses)
    assert {v.dtype for v in losses.values()} == {torch.float32}  # losses and logged scalars
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(p.dtype == torch.float32 for c in components.values() for p in c.state_dict().values() if p.is_floating_point())
    state = [s for u in updates for g in u.groups for s in g.optimizer.state.values()]
    assert state and all(t.dtype == torch.float32 for s in state for t in s.values())
    assert all(v.dtype == torch.float32 for v in batch.values(include_nested=True, leaves_only=True) if v.is_floating_point())
    moved = [not torch.equal(a, b) for a, b in zip(fp32["actor"].parameters(), components["actor"].parameters())]
    assert any(moved)  # bf16 products round differently: the run did compute in bf16


@register("constraint", "test_dtype_probe")
class DtypeProbe(Component):
    """BC through a linear layer that records the dtype its matrix product ran in."""

    @dataclass
    class Config:
        pass

    reads = ("action", "policy_action")
    losses = ("loss_bc",)
    seen: list = []

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.head = torch.nn.Linear(spec.action_dim, spec.action_dim)

    def compute(self, td, step):
        out = self.head(td["policy_action"])
        DtypeProbe.seen.append(out.dtype)
        return {"loss_bc": ((out - td["action"]) ** 2).mean()}


@pytest.mark.parametrize(("slot_precision", "expected"), [(None, torch.bfloat16), ("fp32", torch.float32)])
def test_a_slot_can_opt_out_of_bf16(bf16_cpu, slot_precision, expected):
    overrides = ["train.precision=bf16", "components.constraint.name=test_dtype_probe"]
    if slot_precision:
        overrides.append(f"components.constraint.precision={slot_precision}")
    DtypeProbe.seen.clear()
    _, _, losses, _ = run_steps("bc", overrides, steps=2)
    assert DtypeProbe.seen == [expected, expected]
    assert losses["loss_bc"].dtype == torch.float32  # cast back before the backward sum


@pytest.mark.parametrize("key", ["train.precision", "components.actor.precision"])
def test_an_unknown_precision_fails_in_one_line_naming_the_choices(key, capsys):
    message = {"train.precision": "train.precision=fp16 is not allowed: must be one of fp32, bf16. Did you mean 'bf16'?",
               "components.actor.precision": "components.actor.precision is 'fp16'; choose one of fp32, bf16."}[key]
    with pytest.raises(RecipeError, match=f"^{re.escape(message)}$"):
        load_recipe(RECIPES / "bc.yaml", [f"{key}=fp16"])
    assert main(["recipe", "show", str(RECIPES / "bc.yaml"), f"{key}=fp16"]) == 1
    assert capsys.readouterr().err == f"advrl: error: {message}\n"


def test_without_bf16_on_the_cpu_it_says_so_once_and_runs_fp32(monkeypatch, capsys):
    monkeypatch.setattr(advrl_device, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(advrl_device, "_told", set())
    recipe = load_recipe(RECIPES / "td3bc.yaml", ["train.precision=bf16"])
    from advrl.learner.assembly import compute_dtypes

    assert set(compute_dtypes(recipe, torch.device("cpu")).values()) == {None}
    assert set(compute_dtypes(recipe, torch.device("cpu")).values()) == {None}
    assert capsys.readouterr().err.count("no native bf16") == 1


def test_bf16_is_saved_with_the_run_and_honoured_by_resume_eval_and_finetuning(bf16_cpu, minari_root, tiny_overrides, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    advrl.train(RECIPES / "td3bc.yaml", [*tiny_overrides, "train.precision=bf16", "eval.episodes=0"], run_dir=run_dir, progress=False)
    recipe = load_recipe(run_dir / RECIPE_FILE)
    assert recipe.train.precision == "bf16"
    resumed = Trainer(recipe, run_dir, resume=True, progress=False)
    try:
        assert {dtype for u in resumed.updates for dtype in u._dtypes} == {torch.bfloat16}
    finally:
        resumed.logger.close()
    run = advrl.load_run(run_dir)
    actions = run.policy(np.zeros((3, run.info.obs_dim), dtype=np.float32))  # numpy has no bf16: cast back
    assert actions.dtype == np.float32 and actions.shape == (3, run.info.action_dim)

    from advrl.learner import update as update_module
    from advrl.learner.finetune import finetune

    autocast_dtypes = []

    def spy(device, dtype):
        autocast_dtypes.append(dtype)
        return advrl_device.autocast(device, dtype)

    monkeypatch.setattr(update_module, "autocast", spy)
    online = ["online.steps=12", "online.learning_starts=5", "eval.episodes=0", "train.checkpoint_every=12", "online.top_k=3"]
    result = finetune(run_dir, online, progress=False)
    assert load_recipe(result.run_dir / RECIPE_FILE).train.precision == "bf16"
    assert autocast_dtypes and set(autocast_dtypes) == {torch.bfloat16}  # the online updates ran under autocast
