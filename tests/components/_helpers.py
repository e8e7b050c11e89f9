"""Small builders shared by the component tests: tiny specs, batches, bound component sets and
networks with hand-set weights (so expected values can be written down by hand)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDict

import advrl
from advrl import DataSpec


def make(kind: str, name: str, spec: DataSpec, **config):
    return advrl.make(kind, name, spec=spec, **config)


def bind_all(components: dict) -> dict:
    """Bind every component of a slot dict to the others (what the recipe assembly does)."""
    for component in components.values():
        component.bind(components)
    return components


def batch(spec: DataSpec, size: int = 4, seed: int = 0, **extra) -> TensorDict:
    """A random transition batch with the standard keys; ``extra`` adds or overrides keys."""
    gen = torch.Generator().manual_seed(seed)
    data = {
        "observation": torch.randn(size, spec.obs_dim, generator=gen),
        "action": (torch.rand(size, spec.action_dim, generator=gen) * 2 - 1) * spec.max_action * 0.9,
        "reward": torch.randn(size, generator=gen),
        "next": {"observation": torch.randn(size, spec.obs_dim, generator=gen)},
        "terminated": (torch.rand(size, generator=gen) < 0.3).float(),
        "episode_return": torch.randn(size, generator=gen) * 10,
    }
    for key, value in extra.items():
        data[key] = value
    return TensorDict(data, batch_size=[size])


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


@torch.no_grad()
def set_linear_critic(critic, weights: Sequence[Sequence[float]], biases: Sequence[float], target: bool = False) -> None:
    """For a ``q_ensemble`` built with ``hidden_sizes=[]``: Q_i(s, a) = weights[i] . [s, a] + biases[i]."""
    net = critic.target_net.module if target else critic.net
    (layer,) = list(net)
    layer.weight.copy_(t(weights).unsqueeze(-1))
    layer.bias.copy_(t(biases).reshape(-1, 1, 1))


@torch.no_grad()
def set_constant_critic(critic, value: float) -> None:
    """Every weight zero and the output bias ``value``: Q_i(s, a) = value for every member,
    online and target."""
    for net in (critic.net, critic.target_net.module):
        for p in net.parameters():
            p.zero_()
        list(net)[-1].bias.fill_(value)


@torch.no_grad()
def set_linear(layer: torch.nn.Linear, weight, bias) -> None:
    layer.weight.copy_(t(weight))
    layer.bias.copy_(t(bias))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def assert_unchanged(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    for name, p in module.named_parameters():
        assert torch.equal(p, before[name]), f"parameter {name} changed"


def assert_all_changed(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    for name, p in module.named_parameters():
        assert not torch.equal(p, before[name]), f"parameter {name} did not change"


class _FixedData:
    """Stands in for the offline data: every sample is the same batch."""

    def __init__(self, td):
        self.td = td

    def sample(self, batch_size):
        return self.td


def train_step(updates, td, step):
    """advrl's own Trainer._train_step on a fixed batch: every update that is due, in order."""
    from types import SimpleNamespace

    from advrl.learner.trainer import Trainer

    data = _FixedData(td)
    host = SimpleNamespace(data=data, updates=updates, _batch=data.sample)  # what TrainingLoop._train_step uses
    return Trainer._train_step(host, step, torch.tensor(step), td.batch_size[0], True)


def run(stage, td, step):
    return stage.run(td, step, torch.tensor(step))


def parts(comps):
    """The networks of an actor/critic/value/behaviour recipe, for change tracking."""
    return {
        "actor": comps["actor"].net,
        "actor_target": comps["actor"].target_net,
        "critic": comps["critic"].net,
        "critic_target": comps["critic"].target_net,
        "value": comps["value"],
        "behavior": comps["behavior"],
    }


@torch.no_grad()
def copy_vae_into_reference(behavior, ref_vae) -> None:
    """Copy advrl's (C)VAE weights into a reference VAE with separate mean/log_std heads
    (advrl's encoder ends in one layer producing both, mean first)."""
    from torch import nn

    enc = [m for m in behavior.encoder if isinstance(m, nn.Linear)]
    ref_enc = [m for m in ref_vae.encoder if isinstance(m, nn.Linear)]
    assert len(enc) == len(ref_enc) + 1
    for src, dst in zip(enc[:-1], ref_enc):
        dst.load_state_dict(src.state_dict())
    latent = ref_vae.latent_dim
    ref_vae.mean.weight.copy_(enc[-1].weight[:latent])
    ref_vae.mean.bias.copy_(enc[-1].bias[:latent])
    ref_vae.log_std.weight.copy_(enc[-1].weight[latent:])
    ref_vae.log_std.bias.copy_(enc[-1].bias[latent:])
    ref_vae.decoder.load_state_dict(behavior.decoder.state_dict())


@torch.no_grad()
def copy_actor_critic_into_reference(comps, ref) -> None:
    """advrl's actor (and target) and critic ensemble (and target) into a CORL-style reference:
    ensemble member m -> ``q{m+1}_net`` (advrl stores weights [in, out], nn.Linear [out, in])."""
    from torch import nn

    ref.actor.net.load_state_dict(comps["actor"].net.state_dict())
    ref.actor_target.net.load_state_dict(comps["actor"].target_net.module.state_dict())
    for src, dst in ((comps["critic"].net, ref.critic), (comps["critic"].target_net.module, ref.critic_target)):
        ensemble_layers = [m for m in src if hasattr(m, "weight")]
        for member, net in enumerate((dst.q1_net, dst.q2_net)):
            linears = [m for m in net if isinstance(m, nn.Linear)]
            assert len(linears) == len(ensemble_layers)
            for layer, linear in zip(ensemble_layers, linears):
                linear.weight.copy_(layer.weight[member].T)
                linear.bias.copy_(layer.bias[member, 0])


def small_transitions(seed: int, size: int = 16) -> TensorDict:
    """A batch of 5-d states and 2-d actions inside the box, a quarter of them terminal: the
    input of the step-for-step comparisons with the plain references."""
    gen = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "observation": torch.randn(size, 5, generator=gen),
            "action": torch.rand(size, 2, generator=gen) * 1.8 - 0.9,
            "reward": torch.randn(size, generator=gen),
            "next": {"observation": torch.randn(size, 5, generator=gen)},
            "terminated": (torch.rand(size, generator=gen) < 0.25).float(),
        },
        batch_size=[size],
    )


def benchmark_module(name: str):
    """A module of benchmarks/ (the plain reference implementations), loaded by path (with
    benchmarks/ on the import path: a reference may import from another, e.g. its actor)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
