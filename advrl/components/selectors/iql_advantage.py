"""SSAR's 'iql' selection: trust (s, a) where an IQL critic finds Q(s, a) >= V(s) (Luo et al. 2025)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from advrl.cache import cache_root
from advrl.component import Component, DataSpec, option
from advrl.registry import register

# in the cache file name: labels made by an older pre-training are remade, not reused
# (v2: the official update order, V(s') read before the V step, and the mean of the Q losses)
LABELS_VERSION = "v2"


def iql_recipe(dataset_id: str, expectile: float):
    """SSAR's IQL pre-training (QinwenLuo/SSAR action_selection.py ``IQL_qv``) as a recipe.

    ``IQL_qv.train`` reads next_v = V(s') *before* the step's V update, then steps V (expectile
    on the target twin-Q min), then Q (on r + gamma (1 - d) next_v, the two MSEs averaged), then
    Polyak-updates the target Q. The same arithmetic in advrl's updates: the critic first (V
    not yet moved), then V (the target Q not yet moved), then the target Q.
    """
    from advrl.recipe import validate

    return validate(OmegaConf.create({
        "dataset": {"id": dataset_id},
        "components": {
            "critic": {"name": "q_ensemble", "num_q": 2, "hidden_sizes": [256, 256]},
            "value": {"name": "expectile", "expectile": expectile},
            "critic_loss": {"kind": "objective", "name": "value_backup_critic", "gamma": 0.99,
                            "ensemble_reduction": "mean"},  # official: sum(MSEs) / len(qs)
        },
        "updates": {
            "critic": {"terms": ["critic_loss"], "optimize": {"critic": {"lr": 3e-4}}},
            "value": {"terms": ["value"], "optimize": {"value": {"lr": 3e-4}}, "update_targets": ["critic"]},
        },
    }))


@register("selector", "iql_advantage")
class IQLAdvantage(Component):
    """mask(s, a) = 1[min_i Q_i(s, a) >= V(s)] from an IQL (expectile ``expectile``) trained on
    the dataset before the run, for ``pretrain_steps`` steps with advrl's own IQL components
    (twin 2x256 Q, 2x256 V, lr 3e-4, batch 256, gamma 0.99, tau 0.005; SSAR pre-trains 1e6),
    updated in the official order (:func:`iql_recipe`).

    The labels depend on dataset, seed, expectile and steps; they are cached under
    ``$ADVRL_CACHE`` (default ~/.cache/advrl)/iql_trust/<dataset>/seed<k>/ and reused, since
    the pre-training costs more than many runs; a cache made on another build of the dataset
    (other content fingerprint) is not reused but remade. Reads each sample's dataset ``index``.
    """

    @dataclass
    class Config:
        expectile: float = option(0.7, "IQL expectile tau (SSAR: 0.7, hopper-me 0.5)", gt=0, lt=1)
        pretrain_steps: int = option(1_000_000, "IQL gradient steps before the run (scale it with the run)", ge=1)
        batch_size: int = option(256, "IQL batch size", ge=1)
        out_key: str = option("trust", "batch key of the 0/1 mask")

    reads = ("index",)
    writes = ("{out_key}",)

    def __init__(self, config: Config, spec):
        super().__init__(config, spec)
        self.register_buffer("labels", torch.zeros(0), persistent=False)
        self.pretrain_seconds = 0.0
        self.cache_file: Path | None = None

    def cache_path(self, dataset_id: str, seed: int) -> Path:
        cfg = self.config
        name = f"tau{cfg.expectile}-steps{cfg.pretrain_steps}-batch{cfg.batch_size}-{LABELS_VERSION}.pt"
        return cache_root() / "iql_trust" / dataset_id.replace("/", "__") / f"seed{seed}" / name

    def prepare(self, data, context: dict) -> dict:
        transitions = getattr(data, "transitions", None)
        if transitions is None:
            raise TypeError("selector iql_advantage needs an offline dataset to pre-train on.")
        path = self.cache_path(data.info.id, context["seed"])
        self.cache_file = path
        cached = self._read_cache(path) if path.is_file() else None
        if cached is not None:
            # caches written before fingerprints existed are matched on size alone
            if cached["n_transitions"] == data.size and cached.get("fingerprint") in (None, data.info.fingerprint):
                self.labels = cached["labels"].to(data.device)
                self.pretrain_seconds = cached["seconds"]
                return self._facts(from_cache=True)
        start = time.perf_counter()
        labels = self._pretrain(data, context)
        self.pretrain_seconds = time.perf_counter() - start
        path.parent.mkdir(parents=True, exist_ok=True)
        from advrl.learner.checkpoint import atomic_torch_save

        record = {"labels": labels.cpu(), "n_transitions": data.size, "fingerprint": data.info.fingerprint,
                  "seconds": self.pretrain_seconds}
        atomic_torch_save(record, path)
        self.labels = labels.to(data.device)
        return self._facts(from_cache=False)

    @staticmethod
    def _read_cache(path: Path) -> dict:
        """The cached labels, loaded weights-only: a cache file handed over with a parked run
        must not be able to run code."""
        from advrl.learner.checkpoint import CheckpointError, read_error, safe_load

        try:
            cached = safe_load(path, "IQL trust cache")
        except CheckpointError:
            raise
        except Exception as err:
            raise CheckpointError(
                f"IQL trust cache {path} cannot be read ({read_error(err)}); delete it and the labels are computed again."
            ) from err
        if not isinstance(cached, dict) or not {"labels", "n_transitions", "seconds"} <= cached.keys():
            raise CheckpointError(f"{path} is not an IQL trust cache of advrl; delete it and the labels are computed again.")
        return cached

    def _facts(self, from_cache: bool) -> dict:
        """What the pre-training cost (measured when the labels were made, also on a cache hit)."""
        return {
            "pretrain_steps": self.config.pretrain_steps,
            "pretrain_seconds": round(self.pretrain_seconds, 3),
            "from_cache": from_cache,
            "trusted_fraction": round(float(self.labels.float().mean()), 4),
            # under the cache root: the benchmark harness parks it with an unfinished run
            "cache": self.cache_file.relative_to(cache_root()).as_posix(),
        }

    def _pretrain(self, data, context: dict) -> torch.Tensor:
        from advrl.data.dataset import OfflineData
        from advrl.learner.assembly import build_components, build_updates

        cfg = self.config
        recipe = iql_recipe(data.info.id, cfg.expectile)
        spec = DataSpec(data.info.obs_dim, data.info.action_dim, data.info.max_action)
        rng_state = torch.get_rng_state()
        torch.manual_seed(context["seed"])
        components = build_components(recipe, spec, bind=False)
        for component in components.values():
            component.to(data.device)
        updates, reads = build_updates(recipe, components, data.device)
        source = OfflineData(data.transitions, data.info, data.normalizer)
        source.select(sorted(reads))
        step_tensor = torch.zeros((), dtype=torch.long, device=data.device)
        for step in range(1, cfg.pretrain_steps + 1):
            batch = source.sample(cfg.batch_size)
            for update in updates:
                update.run(batch, step, step_tensor)
        torch.set_rng_state(rng_state)  # the run's own random stream is unaffected
        labels = []
        with torch.no_grad():
            for chunk in data.transitions.split(65536):
                q = components["critic"].q(chunk["observation"], chunk["action"], reduce="min")
                labels.append((q >= components["value"](chunk["observation"])).float())
        return torch.cat(labels)

    def compute(self, td, step):
        return {self.config.out_key: self.labels[td["index"]]}
