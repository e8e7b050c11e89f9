"""constraint: generative_bc — BC towards the behaviour model's action, detached."""

from __future__ import annotations

import pytest
import torch
from _helpers import bind_all, make, t
from tensordict import TensorDict

from advrl import DataSpec

SPEC = DataSpec(obs_dim=2, action_dim=2)


def constant_vae(value: list[float]):
    """A VAE whose decoder outputs tanh(bias) whatever the input (zero weights, no hidden layer)."""
    vae = make("behavior", "vae", SPEC, hidden_sizes=[])
    with torch.no_grad():
        for p in vae.parameters():
            p.zero_()
        vae.decoder[-1].bias.copy_(torch.atanh(t(value)))
    return vae


@pytest.mark.parametrize("mode", ["sample", "reconstruct"])
def test_loss_towards_the_model_action_and_gradient_only_to_the_policy(mode):
    components = bind_all({"behavior": constant_vae([0.5, -0.5]), "bc": make("constraint", "generative_bc", SPEC, weight=2.0, mode=mode)})
    policy_action = t([[0.0, 0.0], [1.0, -1.0]]).requires_grad_()
    td = TensorDict({"observation": torch.zeros(2, 2), "policy_action": policy_action}, batch_size=[2])
    loss = components["bc"].compute(td, 1)["loss_bc"]
    # squared distances: (0.25 + 0.25) and (0.25 + 0.25) -> mean over 4 entries 0.25, times 2
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    assert all(p.grad is None for p in components["behavior"].parameters())
    assert torch.allclose(policy_action.grad, 2.0 * 2 * (policy_action.detach() - t([0.5, -0.5])) / 4)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        make("constraint", "generative_bc", SPEC, mode="nearest")
