"""The worked example of CONTRIBUTING.md works as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

import advrl
from advrl.component import DataSpec

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def example(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    from examples import l1_constraint

    return l1_constraint


def test_example_term_value_and_gradient(example):
    term = advrl.make("constraint", "bc_l1", spec=DataSpec(2, 2), weight=2.0)
    policy_action = torch.tensor([[0.5, -0.5], [0.0, 1.0]], requires_grad=True)
    td = TensorDict({"action": torch.tensor([[0.0, 0.0], [0.5, 0.5]]), "policy_action": policy_action}, batch_size=[2])
    loss = term.compute(td, 1)["loss_bc_l1"]
    assert loss.item() == pytest.approx(2.0 * (0.5 + 0.5 + 0.5 + 0.5) / 4)
    loss.backward()
    assert torch.allclose(policy_action.grad, 2.0 / 4 * torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))


def test_example_swaps_into_td3bc_with_one_override(example, minari_root, tiny_overrides, tmp_path):
    overrides = tiny_overrides + ["imports=[examples.l1_constraint]", "components.constraint.name=bc_l1"]
    result = advrl.train(REPO / "recipes" / "td3bc.yaml", overrides, run_dir=tmp_path / "run", progress=False)
    assert result.steps == 20
    assert "loss_bc_l1" in (tmp_path / "run" / "train.csv").read_text().splitlines()[0]
