"""Save and restore an environment mid-episode, so that an interrupted online run resumes
exactly where it stopped.

Without it a resumed run starts a fresh episode and its data, and every dataset built from its
replay buffer (medium-replay), differ from an uninterrupted run's. A behaviour policy's 1M
steps span several sessions here, so that difference would make `--retrain` builds irreproducible.

What is kept: the MuJoCo integration state (``mj_getState`` with ``mjSTATE_INTEGRATION``:
positions, velocities, controls, time and the solver's warm start, so the next ``mj_step``
computes the same numbers), the step count of the ``TimeLimit`` wrapper, and the random
generators of the environment and of its action space. Environments that are not MuJoCo
return ``None`` and resume with a fresh episode, as before. The state is a tensor and plain
values, so checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from advrl.learner.checkpoint import CheckpointError


def _time_limit(env: gym.Env):
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = env.env
    return None


def capture(env: gym.Env) -> dict | None:
    """The state an environment needs to continue its episode, or None if advrl cannot keep it."""
    base = env.unwrapped
    model, data = getattr(base, "model", None), getattr(base, "data", None)
    try:
        import mujoco
    except ImportError:
        return None
    if not isinstance(data, mujoco.MjData):
        return None
    kind = mujoco.mjtState.mjSTATE_INTEGRATION
    physics = np.empty(mujoco.mj_stateSize(model, kind), dtype=np.float64)
    mujoco.mj_getState(model, data, physics, kind)
    limit = _time_limit(env)
    return {
        "physics": torch.from_numpy(physics),
        "elapsed_steps": None if limit is None else limit._elapsed_steps,
        "env_rng": base.np_random.bit_generator.state,
        "action_space_rng": env.action_space.np_random.bit_generator.state,
    }


def restore(env: gym.Env, state: dict) -> None:
    """Put a freshly made (and reset) environment back into a ``capture``d state."""
    import mujoco

    base = env.unwrapped
    physics = np.asarray(state["physics"], dtype=np.float64)  # a tensor, or an ndarray in older checkpoints
    if physics.size != mujoco.mj_stateSize(base.model, mujoco.mjtState.mjSTATE_INTEGRATION):
        raise CheckpointError(
            f"The checkpoint's environment state ({physics.size} numbers) does not fit {env.spec.id if env.spec else 'this env'}'s "
            "MuJoCo model: the run was saved with another environment or MuJoCo version. Resume it where it was made."
        )
    mujoco.mj_setState(base.model, base.data, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(base.model, base.data)  # derived quantities (positions of bodies) for the reward
    limit = _time_limit(env)
    if limit is not None and state["elapsed_steps"] is not None:
        limit._elapsed_steps = state["elapsed_steps"]
    base.np_random.bit_generator.state = state["env_rng"]
    env.action_space.np_random.bit_generator.state = state["action_space_rng"]
