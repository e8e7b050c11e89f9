"""Datasets advrl can build locally on first use, with D4RL's reference returns.

``advrl/<env>/random-v0``: a uniform-random policy on the Gymnasium v5 environment.
Scores use D4RL's reference returns (``../shared/reference/d4rl_ref_scores.md``), so they
read like the papers' even though v5 is not D4RL's mujoco-py v2.
"""

from __future__ import annotations

import re

ENVS = {
    "hopper": ("Hopper-v5", -20.272305, 3234.3),
    "halfcheetah": ("HalfCheetah-v5", -280.178953, 12135.0),
    "walker2d": ("Walker2d-v5", 1.629008, 4592.3),
}
DEFAULT_SIZE = 100_000
_PATTERN = re.compile(r"^advrl/(?P<env>[a-z0-9]+)/(?P<kind>random)-v0$")


def is_buildable(dataset_id: str) -> bool:
    match = _PATTERN.match(dataset_id)
    return bool(match) and match["env"] in ENVS


def build(dataset_id: str, size: int = DEFAULT_SIZE, seed: int = 0) -> str:
    from advrl.data.collect import collect_episodes, write_minari_dataset

    match = _PATTERN.match(dataset_id)
    if not match or match["env"] not in ENVS:
        known = ", ".join(f"advrl/{env}/random-v0" for env in ENVS)
        raise KeyError(f"advrl cannot build {dataset_id!r}; buildable ids: {known}.")
    env_id, ref_min, ref_max = ENVS[match["env"]]
    episodes = collect_episodes(env_id, None, size, seed)
    description = f"{size} transitions of a uniform-random policy on {env_id}, seed {seed}, built by advrl."
    return write_minari_dataset(dataset_id, episodes, env_id, ref_min, ref_max, description, algorithm_name="uniform-random")
