"""advrl.testing.check_component: every built-in component passes it, and it catches the
mistakes a plug-in author makes (each negative test is a component with one such mistake)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from omegaconf import OmegaConf

from advrl import Component, DataSpec, option, registry
from advrl.component import ContractError
from advrl.testing import check_component

BUILTIN = [(kind, name) for kind in registry.KINDS for name in registry.names(kind) if (kind, name) != ("selector", "iql_advantage")]


@pytest.mark.parametrize(("kind", "name"), BUILTIN)
def test_every_builtin_component_conforms(kind, name):
    check_component(kind, name)


def test_the_pretrained_selector_conforms_once_prepared(minari_root, tmp_path, monkeypatch):
    monkeypatch.setenv("ADVRL_CACHE", str(tmp_path))
    from advrl.data.dataset import load_offline_data
    from advrl.recipe import DataConfig, DatasetConfig

    data = load_offline_data(OmegaConf.structured(DatasetConfig(id="advrl/hopper/random-v0")),
                             OmegaConf.structured(DataConfig), torch.device("cpu"))
    spec = DataSpec(**data.info.facts())
    check_component("selector", "iql_advantage", spec=spec, data=data, pretrain_steps=5, batch_size=16)


def test_the_report_names_what_each_loss_trains():
    report = check_component("objective", "td3_actor")
    assert report.loss_reaches == {"loss_actor": ["critic", "policy_action"]}
    assert check_component("value", "td").loss_reaches == {"loss_value": ["_checked"]}


# ---- components with one mistake each -------------------------------------------------------------
def _plug_in(cls, monkeypatch) -> str:
    """Register ``cls`` for one test only (the registry is global: other tests list it)."""
    from advrl import registry as table

    name = cls.__name__.lower()
    monkeypatch.setattr(cls, "kind", "constraint")
    monkeypatch.setattr(cls, "name", name)
    monkeypatch.setitem(table._TABLES["constraint"], name, cls)
    return name


class _Base(Component):
    @dataclass
    class Config:
        weight: float = option(1.0, "weight")

    reads = ("action", "policy_action")
    losses = ("loss_mistake",)

    def loss(self, td):
        return self.config.weight * ((td["policy_action"] - td["action"]) ** 2).mean()


class ReadsUndeclared(_Base):
    def compute(self, td, step):
        return {"loss_mistake": self.loss(td) * td["advantage"].mean()}


class StepsItself(_Base):
    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def compute(self, td, step):
        with torch.no_grad():
            self.scale.mul_(0.5)  # an optimiser step of its own
        return {"loss_mistake": self.scale * self.loss(td)}


class TrainsNothing(_Base):
    def compute(self, td, step):
        return {"loss_mistake": self.loss(td).detach()}


class IgnoresOwnParameters(_Base):
    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def compute(self, td, step):
        return {"loss_mistake": self.loss(td)}


class Float32Only(_Base):
    writes = ("noise",)

    def compute(self, td, step):
        return {"loss_mistake": self.loss(td), "noise": torch.zeros(td["action"].shape[0])}


class GlobalNoise(_Base):
    def compute(self, td, step):
        jitter = torch.randn_like(td["action"]) * 0.01  # advrl.noise.randn_like would be right
        return {"loss_mistake": self.config.weight * ((td["policy_action"] - td["action"] - jitter) ** 2).mean()}


class UnregisteredState(_Base):
    """A tensor drawn at construction but kept outside parameters and buffers: vectorised seeds
    cannot stack it, so every seed would use the first seed's."""

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.scale = torch.rand(())

    def compute(self, td, step):
        return {"loss_mistake": self.loss(td) * self.scale}


class NotFinite(_Base):
    logs = ("ratio",)

    def compute(self, td, step):
        return {"loss_mistake": self.loss(td), "ratio": self.loss(td).detach() / 0.0}


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (ReadsUndeclared, "reads batch key 'advantage' without declaring it in `reads`"),
        (StepsItself, "changed a parameter inside compute"),
        (TrainsNothing, "loss 'loss_mistake' reaches no trainable parameter or input"),
        (IgnoresOwnParameters, "has trainable parameters, but none of its losses reaches them"),
        (Float32Only, "returned 'noise' as torch.float32 from torch.float64 inputs"),
        (NotFinite, "returned non-finite values in 'ratio'"),
        (GlobalNoise, "draws random numbers from torch's global generator"),
        (UnregisteredState, "returns another 'loss_mistake' for seed 1 when two seeds run vectorised"),
    ],
)
def test_the_kit_names_each_mistake(cls, message, monkeypatch):
    with pytest.raises(ContractError, match=message):
        check_component("constraint", _plug_in(cls, monkeypatch))


class OverDeclared(_Base):
    reads = ("action", "policy_action", "observation")

    def compute(self, td, step):
        return {"loss_mistake": self.loss(td)}


def test_declared_but_unread_keys_are_reported_not_refused(monkeypatch):
    assert check_component("constraint", _plug_in(OverDeclared, monkeypatch)).unread == ["observation"]
