"""A fixed-capacity replay buffer on the training device, sampled like the offline data."""

from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict

from advrl.data.dataset import DatasetInfo, ObservationNormalizer, _unchecked_tensordict

REPLAY_KEYS = ("observation", "action", "reward", "next.observation", "terminated", "truncated")


class ReplayBuffer:
    """Ring buffer of transitions; ``sample`` returns the same keys as :class:`OfflineData`.

    Observations are stored raw: online agents train on raw observations (identity
    normaliser), as TD3 and SAC do.
    """

    keys = REPLAY_KEYS

    def __init__(self, capacity: int, info: DatasetInfo, device: torch.device):
        self.capacity, self.info, self.device = capacity, info, device
        self.normalizer = ObservationNormalizer(torch.zeros(info.obs_dim), torch.ones(info.obs_dim))
        self.columns = {
            "observation": torch.zeros(capacity, info.obs_dim, device=device),
            "action": torch.zeros(capacity, info.action_dim, device=device),
            "reward": torch.zeros(capacity, device=device),
            "next.observation": torch.zeros(capacity, info.obs_dim, device=device),
            "terminated": torch.zeros(capacity, device=device),
            "truncated": torch.zeros(capacity, device=device),
        }
        self.size = 0
        self.position = 0
        self._selected = list(REPLAY_KEYS)

    def add(self, obs, action, reward: float, next_obs, terminated: bool, truncated: bool) -> None:
        i = self.position
        row = {
            "observation": obs,
            "action": action,
            "reward": reward,
            "next.observation": next_obs,
            "terminated": float(terminated),
            "truncated": float(truncated),
        }
        for key, value in row.items():
            self.columns[key][i] = torch.as_tensor(np.asarray(value, dtype=np.float32))
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def select(self, keys) -> None:
        unknown = [k for k in keys if k not in REPLAY_KEYS]
        if unknown:
            raise KeyError(f"The replay buffer has no keys {unknown}; it holds {', '.join(REPLAY_KEYS)}.")
        self._selected = list(keys)

    def sample(self, batch_size: int) -> TensorDict:
        idx = torch.randint(self.size, (batch_size,), device=self.device)
        flat = {k: torch.index_select(self.columns[k], 0, idx) for k in self._selected if not k.startswith("next.")}
        if "next.observation" in self._selected:
            nested = {"observation": torch.index_select(self.columns["next.observation"], 0, idx)}
            flat["next"] = _unchecked_tensordict(nested, batch_size, self.device)
        return _unchecked_tensordict(flat, batch_size, self.device)

    def state_dict(self) -> dict:
        return {"size": self.size, "position": self.position, "columns": {k: v[: self.size].cpu() for k, v in self.columns.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.position = state["size"], state["position"]
        for key, value in state["columns"].items():
            self.columns[key][: self.size] = value.to(self.device)
