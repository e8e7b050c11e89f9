"""A fixed-capacity replay buffer on the training device, sampled like the offline data."""

from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict

from advrl.data.dataset import DatasetInfo, ObservationNormalizer, _unchecked_tensordict

REPLAY_KEYS = ("observation", "action", "reward", "next.observation", "terminated", "truncated")


class ReplayBuffer:
    """Ring buffer of transitions; ``sample`` returns the same keys as :class:`OfflineData`.

    ``add`` takes raw environment data and stores what the learner trains on: observations
    through ``normalizer`` (identity for agents trained from scratch; the offline dataset's
    statistics when fine-tuning an offline policy) and rewards through ``reward_fn``.
    ``extra`` columns (e.g. a selector's trust label) get ``extra_defaults`` for online data.
    With ``offline_fraction`` set, the first ``extend``-ed rows form an offline part and each
    batch takes that fraction from it and the rest from the online rows (once there are any).
    """

    def __init__(
        self,
        capacity: int,
        info: DatasetInfo,
        device: torch.device,
        normalizer: ObservationNormalizer | None = None,
        reward_fn=None,
        extra_defaults: dict[str, float] | None = None,
        offline_fraction: float | None = None,
    ):
        self.capacity, self.info, self.device = capacity, info, device
        self.normalizer = normalizer or ObservationNormalizer(torch.zeros(info.obs_dim), torch.ones(info.obs_dim))
        self.reward_fn = reward_fn or (lambda reward: reward)
        self.extra_defaults = dict(extra_defaults or {})
        self.keys = REPLAY_KEYS + tuple(self.extra_defaults)
        self.columns = {
            "observation": torch.zeros(capacity, info.obs_dim, device=device),
            "action": torch.zeros(capacity, info.action_dim, device=device),
            "reward": torch.zeros(capacity, device=device),
            "next.observation": torch.zeros(capacity, info.obs_dim, device=device),
            "terminated": torch.zeros(capacity, device=device),
            "truncated": torch.zeros(capacity, device=device),
            **{key: torch.zeros(capacity, device=device) for key in self.extra_defaults},
        }
        self.size = 0
        self.position = 0
        self.offline_size = 0
        self.offline_fraction = offline_fraction
        self._selected = list(self.keys)

    def add(self, obs, action, reward: float, next_obs, terminated: bool, truncated: bool) -> None:
        i = self.position
        normalize = self.normalizer
        row = {
            "observation": normalize(torch.as_tensor(np.asarray(obs, dtype=np.float32))),
            "action": torch.as_tensor(np.asarray(action, dtype=np.float32)),
            "reward": self.reward_fn(float(reward)),
            "next.observation": normalize(torch.as_tensor(np.asarray(next_obs, dtype=np.float32))),
            "terminated": float(terminated),
            "truncated": float(truncated),
            **self.extra_defaults,
        }
        for key, value in row.items():
            self.columns[key][i] = torch.as_tensor(value, dtype=torch.float32)
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def extend(self, rows: dict[str, torch.Tensor], offline: bool = False) -> None:
        """Append already-transformed rows (e.g. offline transitions kept for fine-tuning)."""
        count = len(rows["reward"])
        if self.position + count > self.capacity:
            raise ValueError(f"{count} rows do not fit in the replay buffer ({self.capacity - self.position} free).")
        for key in self.keys:
            self.columns[key][self.position : self.position + count] = rows[key].to(self.device, torch.float32)
        self.position += count
        self.size = max(self.size, self.position)
        if offline:
            self.offline_size = self.position

    def select(self, keys) -> None:
        unknown = [k for k in keys if k not in self.keys]
        if unknown:
            raise KeyError(f"The replay buffer has no keys {unknown}; it holds {', '.join(self.keys)}.")
        self._selected = list(keys)

    def _indices(self, batch_size: int) -> torch.Tensor:
        online = self.size - self.offline_size
        if self.offline_fraction is None or online <= 0 or self.offline_size == 0:
            return torch.randint(self.size, (batch_size,), device=self.device)
        from_offline = int(round(batch_size * self.offline_fraction))
        return torch.cat([
            torch.randint(self.offline_size, (from_offline,), device=self.device),
            torch.randint(self.offline_size, self.size, (batch_size - from_offline,), device=self.device),
        ])

    def sample(self, batch_size: int) -> TensorDict:
        idx = self._indices(batch_size)
        flat = {k: torch.index_select(self.columns[k], 0, idx) for k in self._selected if not k.startswith("next.")}
        if "next.observation" in self._selected:
            nested = {"observation": torch.index_select(self.columns["next.observation"], 0, idx)}
            flat["next"] = _unchecked_tensordict(nested, batch_size, self.device)
        return _unchecked_tensordict(flat, batch_size, self.device)

    def state_dict(self) -> dict:
        return {
            "size": self.size,
            "position": self.position,
            "offline_size": self.offline_size,
            "columns": {k: v[: self.size].cpu() for k, v in self.columns.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.size, self.position = state["size"], state["position"]
        self.offline_size = state.get("offline_size", 0)
        for key, value in state["columns"].items():
            self.columns[key][: self.size] = value.to(self.device)
