"""The worked example of CONTRIBUTING.md works as documented (from a folder outside the
repository and an installed wheel: tests/test_outside_repo.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

import advrl
from advrl import registry
from advrl.component import DataSpec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def example():
    """The example registered the way its recipe's imports: does it: by path, sys.path untouched."""
    registry.import_user_modules([str(EXAMPLES / "l1_constraint.py")])


def test_example_term_value_and_gradient(example):
    term = advrl.make("constraint", "bc_l1", spec=DataSpec(2, 2), weight=2.0)
    policy_action = torch.tensor([[0.5, -0.5], [0.0, 1.0]], requires_grad=True)
    td = TensorDict({"action": torch.tensor([[0.0, 0.0], [0.5, 0.5]]), "policy_action": policy_action}, batch_size=[2])
    loss = term.compute(td, 1)["loss_bc_l1"]
    assert loss.item() == pytest.approx(2.0 * (0.5 + 0.5 + 0.5 + 0.5) / 4)
    loss.backward()
    assert torch.allclose(policy_action.grad, 2.0 / 4 * torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))


def test_example_recipe_swaps_the_term_into_td3bc(minari_root, tiny_overrides, tmp_path):
    result = advrl.train(EXAMPLES / "td3bc_l1.yaml", tiny_overrides, run_dir=tmp_path / "run", progress=False)
    assert result.steps == 20
    assert "loss_bc_l1" in (tmp_path / "run" / "train.csv").read_text().splitlines()[0]


def test_example_passes_the_conformance_kit(example):
    from advrl.testing import check_component

    report = check_component("constraint", "bc_l1", weight=2.0)
    assert report.loss_reaches == {"loss_bc_l1": ["policy_action"]} and report.unread == []
