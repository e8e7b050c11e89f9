"""Locally built D4RL-style datasets: behaviour policies, catalog kinds, mixing, records, CLI.

No real behaviour policies exist yet, so a fake online run is made here: tiny deterministic
actors whose output layer is zero with bias +3 (the "medium" snapshot, actions ~ +0.995) or
-3 (the "expert" snapshot, actions ~ -0.995), made-up evaluation returns, a recipe.yaml and
a checkpoint whose replay buffer is a real Hopper roll-out. Every transition of a built
dataset can then be traced to its source from its action alone. Datasets are a few hundred
steps; each test gets its own Minari store (a fresh MINARI_DATASETS_PATH).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

import advrl
from advrl import provenance
from advrl.cli import main
from advrl.data import catalog, policies
from advrl.data.collect import collect_episodes, read_record
from advrl.data.dataset import DatasetError

SNAPSHOT_RETURNS = {100: 30.0, 200: 100.0, 300: 310.0, 400: 290.0}  # best 310 -> medium ~103 = step 200
MARKERS = {200: 3.0, 300: -3.0}  # output bias of the medium / expert snapshots
RUN_STEPS = 400
REPO = Path(__file__).resolve().parents[2]


def fake_actor(bias: float = 0.0):
    actor = advrl.make("actor", "deterministic", spec=advrl.DataSpec(11, 3), hidden_sizes=[8])
    last = [m for m in actor.net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(bias)
    return actor


def source_of(actions: np.ndarray) -> np.ndarray:
    """+1 medium, -1 expert, 0 random, per transition."""
    actions = np.asarray(actions)
    return np.where((actions > 0.99).all(1), 1, np.where((actions < -0.99).all(1), -1, 0))


def replay_rollout(n: int) -> dict[str, torch.Tensor]:
    """A real Hopper roll-out laid out as the online trainer's replay columns (float32)."""
    columns = {k: [] for k in ("observation", "action", "reward", "next.observation", "terminated", "truncated")}
    for episode in collect_episodes("Hopper-v5", None, n, seed=7):
        obs = np.asarray(episode.observations, dtype=np.float32)
        columns["observation"].append(obs[:-1])
        columns["next.observation"].append(obs[1:])
        columns["action"].append(episode.actions)
        columns["reward"].append(np.asarray(episode.rewards, dtype=np.float32))
        columns["terminated"].append(np.asarray(episode.terminations, dtype=np.float32))
        columns["truncated"].append(np.asarray(episode.truncations, dtype=np.float32))
    return {k: torch.from_numpy(np.concatenate(v).astype(np.float32)) for k, v in columns.items()}


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("online") / "hopper-run"
    (run / "snapshots").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    recipe = {
        "name": "td3_online",
        "seed": 3,
        "eval": {"policy": "actor", "episodes": 10},
        "online": {"env": "Hopper-v5", "steps": RUN_STEPS, "buffer_size": 1000, "snapshot_every": 100},
        "components": {"actor": {"name": "deterministic", "hidden_sizes": [8], "target": True}},
    }
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    for step, ret in SNAPSHOT_RETURNS.items():
        actor = fake_actor(MARKERS.get(step, 0.0))
        evaluation = {"return_mean": ret, "return_std": 1.0, "length_mean": 50.0, "score_mean": 1.0, "score_std": 0.0}
        torch.save(
            {"step": step, "actor": actor.state_dict(), "evaluation": evaluation, "slot": "actor"},
            run / "snapshots" / f"step{step:08d}.pt",
        )
    replay = replay_rollout(RUN_STEPS)
    state = {
        "step": RUN_STEPS,
        "components": {"actor": fake_actor(0.5).state_dict()},
        "normalizer": {"mean": torch.zeros(11), "std": torch.ones(11)},
        "replay": {"size": RUN_STEPS, "position": RUN_STEPS, "columns": replay},
        "episodes": 0,
    }
    torch.save(state, run / "checkpoints" / "last.pt")
    return run


@pytest.fixture(scope="module")
def policy_root(fake_run, tmp_path_factory) -> Path:
    """medium (step 200) and expert (step 300) of the fake run, exported by D4RL's rule."""
    root = tmp_path_factory.mktemp("policies")
    policies.export_policy(fake_run, "hopper", "medium", episodes=3, root=root, pick_snapshot=True)
    policies.export_policy(fake_run, "hopper", "expert", episodes=3, root=root, pick_snapshot=True)
    return root


@pytest.fixture
def store(minari_root, tmp_path, monkeypatch, policy_root) -> Path:
    """A fresh Minari store for this test, with the fake policies as the policies root."""
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    monkeypatch.setenv(policies.ENV_VAR, str(policy_root))
    return root


def episodes_of(dataset_id: str):
    import minari

    return list(minari.load_dataset(dataset_id).iterate_episodes())


def actions_of(dataset_id: str) -> np.ndarray:
    return np.concatenate([ep.actions for ep in episodes_of(dataset_id)])


# ---- behaviour policies -----------------------------------------------------------------
def test_select_snapshot_is_d4rls_rule(fake_run):
    assert policies.select_snapshot(fake_run, "expert").name == "step00000300.pt"
    assert policies.select_snapshot(fake_run, "medium").name == "step00000200.pt"  # |100 - 310/3| is smallest
    assert [row["step"] for row in policies.list_snapshots(fake_run)] == [100, 200, 300, 400]


def test_export_writes_small_actor_and_record(fake_run, tmp_path):
    record = policies.export_policy(fake_run / "snapshots" / "step00000200.pt", "hopper", "medium", root=tmp_path)
    payload = torch.load(tmp_path / "hopper" / "medium.pt", weights_only=True)
    assert payload["actor"] == {"name": "deterministic", "config": {"hidden_sizes": [8], "target": False}}
    assert not any("target" in key for key in payload["state_dict"])
    assert all(v.dtype == torch.float32 and v.device.type == "cpu" for v in payload["state_dict"].values())
    on_disk = json.loads((tmp_path / "hopper" / "medium.json").read_text())
    assert on_disk == record
    assert record["eval_episodes"] == 20 and record["steps"] == 200 and record["seed"] == 3
    assert record["source_run"] == str(fake_run.resolve()) and "advrl online" in record["command"]
    assert np.isfinite(record["return_mean"]) and record["return_std"] >= 0
    assert policies.available("hopper", tmp_path) == ["random", "medium"]
    policy = policies.load_policy("hopper", "medium", root=tmp_path)
    obs = np.linspace(-1, 1, 11)
    np.testing.assert_array_equal(policy(obs), policy(obs))
    assert policy(obs).shape == (3,) and policy(np.stack([obs, obs])).shape == (2, 3)
    assert (policy(obs) > 0.99).all()  # the step-200 actor's marker


def test_expert_is_the_best_of_the_top_snapshots_evaluated_again(fake_run, tmp_path):
    record = policies.export_policy(fake_run, "hopper", "expert", episodes=2, root=tmp_path, pick_snapshot=True, candidates=2)
    tried = record["candidates"]
    assert [c["steps"] for c in tried] == [300, 400]  # the two best by the run's own evaluation
    assert [c["snapshot_return"] for c in tried] == [310.0, 290.0]
    best = max(tried, key=lambda c: c["return_mean"])
    assert record["steps"] == best["steps"] and record["return_mean"] == best["return_mean"]
    assert json.loads((tmp_path / "hopper" / "expert.json").read_text()) == record
    assert record["sha256"] == policies.file_sha256("hopper", "expert", tmp_path)
    action = policies.load_policy("hopper", "expert", root=tmp_path)(np.zeros(11))
    marker = MARKERS.get(record["steps"], 0.0)  # the output bias of the kept snapshot's actor
    np.testing.assert_allclose(action, np.tanh(marker), atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "hopper").iterdir()) == ["expert.json", "expert.pt"]


def test_export_from_run_dir_uses_latest_actor(fake_run, tmp_path):
    record = policies.export_policy(fake_run, "hopper", "expert", episodes=2, root=tmp_path)
    assert record["steps"] == RUN_STEPS and record["snapshot_evaluation"] is None
    action = policies.load_policy("hopper", "expert", root=tmp_path)(np.zeros(11))
    np.testing.assert_allclose(action, np.tanh(0.5), rtol=1e-6)


def test_stochastic_policy_samples_with_the_callers_generator(tmp_path):
    spec = advrl.DataSpec(11, 3)
    actor = advrl.make("actor", "tanh_gaussian", spec=spec, hidden_sizes=[8], log_std_offset=-1.0)
    payload = {
        "format": policies.FORMAT,
        "actor": {"name": "tanh_gaussian", "config": {"hidden_sizes": [8], "log_std_offset": -1.0}},
        "spec": {"obs_dim": 11, "action_dim": 3, "max_action": 1.0},
        "normalizer": {"mean": torch.zeros(11), "std": torch.ones(11)},
        "state_dict": actor.state_dict(),
    }
    torch.save(payload, tmp_path / "p.pt")
    obs = np.linspace(-1, 1, 22).reshape(2, 11)
    first = policies.policy_from_file(tmp_path / "p.pt", np.random.default_rng(5))
    again = policies.policy_from_file(tmp_path / "p.pt", np.random.default_rng(5))
    fixed = policies.policy_from_file(tmp_path / "p.pt")
    assert first.sampled and not fixed.sampled
    sample = first(obs)
    np.testing.assert_array_equal(sample, again(obs))
    assert not np.array_equal(sample, first(obs))  # the generator moves on
    noise = np.random.default_rng(5).standard_normal((2, 3)).astype(np.float32)
    with torch.no_grad():
        mean, raw = actor.net(torch.as_tensor(obs, dtype=torch.float32)).chunk(2, -1)
        expected = torch.tanh(mean + (raw - 1.0).exp() * torch.as_tensor(noise))
        np.testing.assert_allclose(sample, expected.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fixed(obs), torch.tanh(mean).numpy(), rtol=1e-5, atol=1e-6)


def test_deterministic_policy_ignores_the_generator(fake_run, tmp_path):
    record = policies.export_policy(fake_run, "hopper", "expert", episodes=1, root=tmp_path)
    assert record["acting"] == "deterministic" and record["return_mean"] == record["deterministic_return_mean"]
    policy = policies.load_policy("hopper", "expert", rng=np.random.default_rng(0), root=tmp_path)
    assert not policy.sampled


def test_random_policy_is_seeded_uniform():
    a = policies.load_policy("hopper", "random", rng=np.random.default_rng(1))
    b = policies.load_policy("hopper", "random", rng=np.random.default_rng(1))
    draws = np.stack([a(np.zeros(11)) for _ in range(50)])
    np.testing.assert_array_equal(draws, np.stack([b(np.zeros(11)) for _ in range(50)]))
    assert draws.min() >= -1 and draws.max() <= 1 and draws.std() > 0.3
    with pytest.raises(policies.PolicyError, match="seeded numpy Generator"):
        policies.load_policy("hopper", "random")


def test_export_errors_name_the_problem(fake_run, tmp_path):
    with pytest.raises(policies.PolicyError, match="trained on Hopper-v5, not HalfCheetah-v5"):
        policies.export_policy(fake_run, "halfcheetah", "medium", episodes=1, root=tmp_path)
    with pytest.raises(policies.PolicyError, match="'random' needs no file"):
        policies.export_policy(fake_run, "hopper", "random", root=tmp_path)
    with pytest.raises(policies.PolicyError, match="Unknown environment 'hoper'"):
        policies.export_policy(fake_run, "hoper", "medium", root=tmp_path)
    with pytest.raises(policies.PolicyError, match="neither a snapshot file nor a run directory"):
        policies.export_policy(tmp_path / "nope", "hopper", "medium", root=tmp_path)
    with pytest.raises(policies.PolicyError, match="no snapshots/ folder"):
        policies.select_snapshot(tmp_path, "medium")
    assert not (tmp_path / "hopper").exists() or not list((tmp_path / "hopper").iterdir())


def test_default_policies_root_is_the_package_folder(monkeypatch):
    monkeypatch.delenv(policies.ENV_VAR, raising=False)
    assert policies.policies_root() == Path(advrl.__file__).resolve().parent / "policies"


# ---- building ---------------------------------------------------------------------------
def test_random_dataset_contents_metadata_and_loading(store):
    import minari

    from advrl.data.dataset import dataset_info, load_offline_data, open_minari
    from advrl.recipe import DataConfig, DatasetConfig

    path = catalog.build("advrl/hopper/random-v0", size=300, seed=0)
    assert path == str(store / "advrl/hopper/random-v0")
    ds = minari.load_dataset("advrl/hopper/random-v0")
    assert ds.total_steps == 300
    metadata = ds.storage.metadata
    assert metadata["ref_min_score"] == catalog.ENVS["hopper"][1] and metadata["ref_max_score"] == catalog.ENVS["hopper"][2]
    assert json.loads(metadata["eval_env_spec"])["id"] == "Hopper-v5"
    assert "300 transitions" in metadata["description"] and "advrl.json" in metadata["description"]
    record = read_record("advrl/hopper/random-v0")
    assert record["size"] == 300 and record["seed"] == 0 and record["kind"] == "random"
    assert record["sources"][0]["policy"] == "random" and record["build_seconds"] >= 0
    assert set(record["returns"]) == {"episodes", "min", "median", "max", "mean", "std"}
    returns = [float(np.sum(ep.rewards)) for ep in ds.iterate_episodes()]
    assert record["returns"]["median"] == pytest.approx(np.median(returns))
    seeds = [m["seed"] for m in ds.storage.get_episode_metadata(range(ds.total_episodes))]
    assert len(set(seeds)) == len(seeds)  # every reset has its own recorded seed
    assert source_of(np.concatenate([ep.actions for ep in ds.iterate_episodes()])).tolist() == [0] * 300
    info = dataset_info(open_minari("advrl/hopper/random-v0"))
    assert info.n_transitions == 300 and info.normalized_score(info.ref_max_score) == pytest.approx(100.0)
    dataset_cfg = OmegaConf.structured(DatasetConfig(id="advrl/hopper/random-v0"))
    data = load_offline_data(dataset_cfg, OmegaConf.structured(DataConfig), torch.device("cpu"))
    assert data.size == 300 and data.sample(4)["action"].shape == (4, 3)


def test_default_sizes_and_size_tags():
    assert catalog.default_size("advrl/hopper/random-v0") == catalog.FULL_SIZE == 1_000_000
    assert catalog.default_size("advrl/walker2d/medium-expert-v0") == 1_000_000
    assert catalog.default_size("advrl/hopper/medium-replay-v0") is None
    assert catalog.default_size("advrl/hopper/random-100k-v0") == 100_000
    assert catalog.default_size("advrl/hopper/medium-replay-20k-v0") == 20_000
    assert catalog.parse("advrl/hopper/random-medium-expert-2m-v0") == ("hopper", "random-medium-expert")
    assert catalog.size_tag("advrl/hopper/random-medium-expert-2m-v0") == 2_000_000
    assert catalog.size_tag("advrl/hopper/medium-300-v0") == 300 and catalog.size_tag("advrl/hopper/medium-v0") is None
    for bad in ("advrl/hopper/medium-0k-v0", "advrl/hopper/medium-10g-v0", "advrl/hopper/100k-v0"):
        assert not catalog.is_buildable(bad)
        with pytest.raises(catalog.UnknownDatasetError, match="size tag"):
            catalog.parse(bad)
    assert len(catalog.buildable_ids()) == 3 * 8 and catalog.is_buildable("advrl/halfcheetah/random-medium-expert-v0")


def test_same_seed_same_bytes_other_seed_other_data(store, monkeypatch, tmp_path):
    dataset_id = "advrl/hopper/random-medium-expert-v0"
    catalog.build(dataset_id, size=300, seed=0)
    first = episodes_of(dataset_id)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "again"))
    catalog.build(dataset_id, size=300, seed=0)
    again = episodes_of(dataset_id)
    assert len(first) == len(again)
    for a, b in zip(first, again):
        for field in ("observations", "actions", "rewards", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    main_file = os.path.join("advrl/hopper/random-medium-expert-v0", "data", "main_data.hdf5")
    assert (store / main_file).read_bytes() == (tmp_path / "again" / main_file).read_bytes()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "other"))
    catalog.build(dataset_id, size=300, seed=1)
    other = np.concatenate([ep.observations for ep in episodes_of(dataset_id)])
    assert other.shape != np.concatenate([ep.observations for ep in first]).shape or not np.array_equal(
        other, np.concatenate([ep.observations for ep in first])
    )


def test_medium_expert_is_half_medium_half_expert(store):
    catalog.build("advrl/hopper/medium-expert-v0", size=300, seed=0)
    sources = source_of(actions_of("advrl/hopper/medium-expert-v0"))
    assert sources.tolist() == [1] * 150 + [-1] * 150
    record = read_record("advrl/hopper/medium-expert-v0")
    assert [(s["policy"], s["transitions"], s["proportion"]) for s in record["sources"]] == [
        ("medium", 150, 0.5),
        ("expert", 150, 0.5),
    ]
    assert record["sources"][0]["policy_record"]["steps"] == 200 and record["sources"][1]["policy_record"]["steps"] == 300
    assert record["sources"][0]["policy_sha256"] == policies.file_sha256("hopper", "medium")
    # the medium half is the start of medium-v0 with the same seed (same collection stream)
    catalog.build("advrl/hopper/medium-v0", size=150, seed=0)
    medium = np.concatenate([ep.observations[:-1] for ep in episodes_of("advrl/hopper/medium-v0")])
    mixed = episodes_of("advrl/hopper/medium-expert-v0")[: record["sources"][0]["episodes"][1]]
    np.testing.assert_array_equal(np.concatenate([ep.observations[:-1] for ep in mixed]), medium)


def test_random_mixtures_equal_shares_and_given_proportions(store):
    catalog.build("advrl/hopper/random-medium-expert-v0", size=300, seed=0)
    counts = np.bincount(source_of(actions_of("advrl/hopper/random-medium-expert-v0")) + 1, minlength=3)
    assert counts.tolist() == [100, 100, 100]  # expert, random, medium
    catalog.build("advrl/hopper/random-expert-v0", size=401, seed=2, proportions={"random": 0.75, "expert": 0.25})
    sources = source_of(actions_of("advrl/hopper/random-expert-v0"))
    assert (sources == 0).sum() == 301 and (sources == -1).sum() == 100  # largest remainder gives the odd step to random
    record = read_record("advrl/hopper/random-expert-v0")
    assert [s["transitions"] for s in record["sources"]] == [301, 100]
    eps = episodes_of("advrl/hopper/random-expert-v0")
    first, stop = record["sources"][0]["episodes"]
    assert sum(len(ep.rewards) for ep in eps[first:stop]) == 301
    last = eps[stop - 1]  # cut at its budget: truncated unless it happened to end there
    assert last.truncations[-1] or last.terminations[-1]


def test_medium_replay_is_the_replay_prefix(store, fake_run):
    catalog.build("advrl/hopper/medium-replay-v0")
    eps = episodes_of("advrl/hopper/medium-replay-v0")
    replay = torch.load(fake_run / "checkpoints" / "last.pt", weights_only=True)["replay"]["columns"]
    step = 200  # the medium snapshot's step
    np.testing.assert_array_equal(
        np.concatenate([ep.observations[:-1] for ep in eps]), replay["observation"][:step].double().numpy()
    )
    np.testing.assert_array_equal(np.concatenate([ep.actions for ep in eps]), replay["action"][:step].numpy())
    np.testing.assert_allclose(np.concatenate([ep.rewards for ep in eps]), replay["reward"][:step].numpy())
    np.testing.assert_array_equal(eps[-1].observations[-1], replay["next.observation"][step - 1].double().numpy())
    assert np.concatenate([ep.terminations for ep in eps]).sum() == replay["terminated"][:step].sum().item()
    assert eps[-1].truncations[-1] or eps[-1].terminations[-1]
    record = read_record("advrl/hopper/medium-replay-v0")
    assert record["size"] == step and record["sources"][0]["run"] == str(fake_run.resolve())
    assert record["sources"][0]["medium_step"] == step


def test_medium_replay_from_a_given_run_and_its_errors(store, fake_run, tmp_path):
    catalog.build("advrl/hopper/medium-replay-v0", run_dir=fake_run, size=150)
    record = read_record("advrl/hopper/medium-replay-v0")
    assert record["size"] == 150 and record["sources"][0]["medium_step"] == 200  # picked by D4RL's rule
    shutil.rmtree(store / "advrl/hopper/medium-replay-v0")
    wrapped = tmp_path / "wrapped"
    (wrapped / "checkpoints").mkdir(parents=True)
    (wrapped / "snapshots").mkdir()
    for item in ("recipe.yaml", "snapshots/step00000200.pt", "snapshots/step00000300.pt"):
        (wrapped / item).write_bytes((fake_run / item).read_bytes())
    state = torch.load(fake_run / "checkpoints" / "last.pt", weights_only=True)
    state["step"] = 2 * RUN_STEPS  # more steps than the replay holds: the buffer wrapped around
    torch.save(state, wrapped / "checkpoints" / "last.pt")
    with pytest.raises(DatasetError, match="wrapped around.*online.buffer_size >= online.steps"):
        catalog.build("advrl/hopper/medium-replay-v0", run_dir=wrapped)
    with pytest.raises(DatasetError, match="apply to medium-replay only"):
        catalog.build("advrl/hopper/medium-v0", size=10, run_dir=fake_run)
    with pytest.raises(DatasetError, match="takes no proportions"):
        catalog.build("advrl/hopper/medium-replay-v0", proportions={"medium": 1.0})


def test_split_replay_ends_episodes_at_flags_and_breaks():
    obs = np.arange(6, dtype=np.float32)[:, None].repeat(2, 1)
    next_obs = obs + 1
    next_obs[3] = 99  # a resumed run restarted its episode after row 3
    columns = {
        "observation": obs,
        "next.observation": next_obs,
        "action": np.zeros((6, 3), np.float32),
        "reward": np.ones(6, np.float32),
        "terminated": np.array([0, 1, 0, 0, 0, 0], np.float32),
        "truncated": np.zeros(6, np.float32),
    }
    episodes = catalog.split_replay(columns)
    assert [len(ep.rewards) for ep in episodes] == [2, 2, 2]
    assert [ep.terminations[-1] for ep in episodes] == [True, False, False]
    assert [ep.truncations[-1] for ep in episodes] == [False, True, True]
    assert episodes[1].observations[-1].tolist() == [99, 99]


def test_first_use_builds_the_default_size_and_explains_missing_policies(minari_root, tmp_path, monkeypatch):
    from advrl.data.dataset import open_minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv(policies.ENV_VAR, str(tmp_path / "no-policies"))
    assert open_minari("advrl/walker2d/random-120-v0").total_steps == 120  # the size tag sets the size
    with pytest.raises(DatasetError, match="No expert behaviour policy for walker2d.*advrl online"):
        open_minari("advrl/walker2d/expert-v0")


def test_runs_starting_together_build_a_dataset_once(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "minari"), "HF_HUB_OFFLINE": "1"}
    code = "from advrl.data.dataset import open_minari; print(open_minari('advrl/hopper/random-400-v0').total_steps)"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert [out.strip() for out, _ in outputs] == ["400", "400"]
    assert sum("building advrl/hopper/random-400-v0" in err for _, err in outputs) == 1


def test_missing_policy_and_bad_ids_are_explained(minari_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv(policies.ENV_VAR, str(tmp_path / "no-policies"))
    with pytest.raises(
        policies.PolicyError,
        match=r"No medium behaviour policy for hopper.*Train it with `advrl online .*export it with `advrl data export-policy",
    ):
        catalog.build("advrl/hopper/medium-expert-v0", size=100)
    with pytest.raises(catalog.UnknownDatasetError, match="Did you mean advrl/hopper/medium-v0"):
        catalog.build("advrl/hoper/medium-v0", size=100)
    with pytest.raises(catalog.UnknownDatasetError, match="kind in random, medium, expert"):
        catalog.build("advrl/hopper/super-v0", size=100)
    with pytest.raises(DatasetError, match="names its size .100 transitions.; --size 50 contradicts it"):
        catalog.build("advrl/hopper/random-100-v0", size=50)
    with pytest.raises(DatasetError, match="single-policy dataset"):
        catalog.build("advrl/hopper/random-v0", size=100, proportions={"random": 1.0})
    with pytest.raises(DatasetError, match="must name exactly random, medium"):
        catalog.build("advrl/hopper/random-medium-v0", size=100, proportions={"random": 0.5, "expert": 0.5})
    with pytest.raises(DatasetError, match="sum to 1"):
        catalog.build("advrl/hopper/random-medium-v0", size=100, proportions={"random": 0.5, "medium": 0.6})
    assert not (tmp_path / "minari").exists() or not os.listdir(tmp_path / "minari")


def test_existing_dataset_is_not_overwritten(store):
    catalog.build("advrl/hopper/random-v0", size=50)
    with pytest.raises(DatasetError, match="already exists"):
        catalog.build("advrl/hopper/random-v0", size=60)


def test_interrupted_build_leaves_nothing_loadable(store, monkeypatch):
    import minari

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(minari, "create_dataset_from_buffers", explode)
    with pytest.raises(KeyboardInterrupt):
        catalog.build("advrl/hopper/medium-expert-v0", size=100)
    assert "advrl/hopper/medium-expert-v0" not in minari.list_local_datasets()
    assert not (store / "advrl/hopper/medium-expert-v0").exists()
    assert not [p for p in os.listdir(store) if p.startswith(".advrl-build-")]


def test_medium_replay_without_the_run_is_explained(store, tmp_path):
    root = tmp_path / "moved"
    (root / "hopper").mkdir(parents=True)
    for name in ("medium.pt", "medium.json"):
        (root / "hopper" / name).write_bytes((Path(os.environ[policies.ENV_VAR]) / "hopper" / name).read_bytes())
    record = json.loads((root / "hopper" / "medium.json").read_text())
    record["source_run"] = str(tmp_path / "elsewhere")
    (root / "hopper" / "medium.json").write_text(json.dumps(record))
    with pytest.raises(DatasetError, match="does not exist on this machine.*--run RUN_DIR"):
        catalog.build("advrl/hopper/medium-replay-v0", policies_root=root)


# ---- mixing -----------------------------------------------------------------------------
def test_mix_takes_whole_episodes_in_proportion(store):
    from advrl.data.mix import mix

    catalog.build("advrl/hopper/random-v0", size=300, seed=0)
    catalog.build("advrl/hopper/medium-v0", size=300, seed=0)
    mix([("advrl/hopper/random-v0", 0.25), ("advrl/hopper/medium-v0", 0.75)], "advrl/hopper/mixed-v0", size=200, seed=5)
    sources = source_of(actions_of("advrl/hopper/mixed-v0"))
    assert (sources == 0).sum() == 50 and (sources == 1).sum() == 150 and sources[:50].tolist() == [0] * 50
    record = read_record("advrl/hopper/mixed-v0")
    assert [(s["dataset"], s["transitions"]) for s in record["sources"]] == [
        ("advrl/hopper/random-v0", 50),
        ("advrl/hopper/medium-v0", 150),
    ]
    assert record["sources"][0]["record"]["kind"] == "random"  # the source's own record travels along
    # whole episodes: all but the last of each source equal a source episode exactly
    random_eps = episodes_of("advrl/hopper/random-v0")
    mixed = episodes_of("advrl/hopper/mixed-v0")
    first, stop = record["sources"][0]["episodes"]
    for ep, index in zip(mixed[first : stop - 1], record["sources"][0]["source_episodes"]):
        np.testing.assert_array_equal(ep.observations, random_eps[index].observations)
    assert mixed[stop - 1].truncations[-1] or mixed[stop - 1].terminations[-1]
    metadata = json.loads(json.dumps(__import__("minari").load_dataset("advrl/hopper/mixed-v0").storage.metadata, default=str))
    assert metadata["ref_max_score"] == catalog.ENVS["hopper"][2] and "Hopper-v5" in metadata["eval_env_spec"]
    # default size: the most both sources can supply at 1/2 each
    mix([("advrl/hopper/random-v0", 0.5), ("advrl/hopper/medium-v0", 0.5)], "advrl/hopper/halves-v0")
    assert read_record("advrl/hopper/halves-v0")["size"] == 600


def test_mix_errors(store):
    from advrl.data.mix import mix

    catalog.build("advrl/hopper/random-v0", size=100, seed=0)
    catalog.build("advrl/halfcheetah/random-v0", size=100, seed=0)
    with pytest.raises(
        catalog.UnknownDatasetError, match="No local dataset 'advrl/hopper/randon-v0'.*Did you mean advrl/hopper/random-v0"
    ):
        mix([("advrl/hopper/randon-v0", 0.5), ("advrl/hopper/random-v0", 0.5)], "advrl/hopper/x-v0")
    with pytest.raises(DatasetError, match="not built yet.*advrl data make advrl/hopper/medium-v0"):
        mix([("advrl/hopper/medium-v0", 0.5), ("advrl/hopper/random-v0", 0.5)], "advrl/hopper/x-v0")
    with pytest.raises(DatasetError, match="must sum to 1.*sum to 0.9"):
        mix([("advrl/hopper/random-v0", 0.4), ("advrl/halfcheetah/random-v0", 0.5)], "advrl/hopper/x-v0")
    with pytest.raises(DatasetError, match="different environments: .*Hopper-v5.*HalfCheetah-v5"):
        mix([("advrl/hopper/random-v0", 0.5), ("advrl/halfcheetah/random-v0", 0.5)], "advrl/hopper/x-v0")
    with pytest.raises(DatasetError, match="listed twice"):
        mix([("advrl/hopper/random-v0", 0.5), ("advrl/hopper/random-v0", 0.5)], "advrl/hopper/x-v0")
    for malformed in ("no version", "x"):  # minari raises ValueError for one, TypeError for the other
        with pytest.raises(DatasetError, match="malformed"):
            mix([("advrl/hopper/random-v0", 1.0)], malformed)
    with pytest.raises(DatasetError, match="has 100 but needs 500"):
        mix([("advrl/hopper/random-v0", 1.0)], "advrl/hopper/x-v0", size=500)
    mix([("advrl/hopper/random-v0", 1.0)], "advrl/hopper/x-v0", size=1 + 99)
    # proportions within 1e-6 of 1 are accepted
    mix([("advrl/hopper/random-v0", 1 / 3), ("advrl/hopper/x-v0", 2 / 3 + 5e-7)], "advrl/hopper/y-v0", size=30)


# ---- stats ------------------------------------------------------------------------------
def test_stats_histogram_and_png(tmp_path):
    from advrl.data import stats

    returns = [1.0, 2.0, 2.5, 10.0]
    summary = stats.return_stats(returns)
    assert (summary["min"], summary["median"], summary["max"], summary["episodes"]) == (1.0, 2.25, 10.0, 4)
    assert summary["std"] == pytest.approx(np.std(returns))
    text = stats.histogram(returns, bins=3, width=10)
    lines = text.splitlines()
    assert len(lines) == 3 and lines[0].endswith("#" * 10) and lines[-1].rstrip().endswith("#" * 3)
    assert stats.histogram([5.0, 5.0]).count("#") == 40
    png = stats.save_histogram_png(returns, str(tmp_path / "h.png"), title="x")
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- CLI --------------------------------------------------------------------------------
def test_cli_make_mix_info_list(store, capsys, tmp_path):
    assert main(["data", "make", "advrl/hopper/random-v0", "--size", "120", "--seed", "4"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["size"] == 120 and made["seed"] == 4 and made["returns"]["episodes"] > 0
    assert main(["data", "make", "advrl/hopper/expert-v0", "--size", "120"]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "data",
                "mix",
                "advrl/hopper/random-v0:1/3",
                "advrl/hopper/expert-v0:2/3",
                "--id",
                "advrl/hopper/cli-mix-v0",
                "--size",
                "90",
            ]
        )
        == 0
    )
    mixed = json.loads(capsys.readouterr().out)
    assert mixed["size"] == 90 and mixed["sources"]["advrl/hopper/expert-v0"]["transitions"] == 60
    assert main(["data", "info", "advrl/hopper/cli-mix-v0", "--png", str(tmp_path / "r.png")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_transitions"] == 90 and info["eval_env_spec"] == "Hopper-v5" and info["env_spec"] == "Hopper-v5"
    assert info["returns"]["min"] <= info["returns"]["median"] <= info["returns"]["max"]
    assert info["histogram"] and info["advrl"]["kind"] == "mix" and info["metadata"]["ref_max_score"] == 3234.3
    assert (tmp_path / "r.png").is_file()
    assert main(["data", "info", "advrl/hopper/cli-mix-v0", "--text"]) == 0
    text = capsys.readouterr().out
    assert "90 transitions" in text and "#" in text and "advrl/hopper/expert-v0" in text
    assert main(["data", "list"]) == 0
    listing = capsys.readouterr().out
    assert "advrl/hopper/cli-mix-v0" in listing and "mujoco/hopper/medium-v0" in listing and "need the network" in listing
    assert "advrl/hopper/medium-expert-v0" in listing and "ready" in listing
    assert "advrl/walker2d/medium-v0                   needs the medium policy" in listing
    assert "expert (return" in listing


def test_cli_export_policy(fake_run, tmp_path, capsys):
    argv = [
        "data",
        "export-policy",
        str(fake_run),
        "--env",
        "hopper",
        "--level",
        "medium",
        "--pick-snapshot",
        "--episodes",
        "2",
        "--policies",
        str(tmp_path),
    ]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert (
        out["steps"] == 200
        and out["policy"] == str(tmp_path / "hopper" / "medium.pt")
        and "--pick-snapshot" in out["export_command"]
    )
    assert (
        main(["data", "export-policy", str(fake_run), "--env", "walker2d", "--level", "medium", "--policies", str(tmp_path)]) == 1
    )
    assert "trained on Hopper-v5, not Walker2d-v5" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "make", "advrl/hopper/medum-v0", "--size", "10"], "Did you mean advrl/hopper/medium-v0"),
        (["data", "make", "advrl/walker2d/expert-v0", "--size", "10"], "No expert behaviour policy for walker2d"),
        (["data", "make", "advrl/hopper/random-medium-v0", "--size", "10", "--proportions", "random=0.5,medium=0.3"], "sum to 1"),
        (["data", "mix", "advrl/hopper/random-v0", "--id", "advrl/hopper/m-v0"], "ID:PROPORTION"),
        (
            ["data", "mix", "advrl/hopper/random-v0:0.5", "advrl/halfcheetah/random-v0:0.5", "--id", "advrl/hopper/m-v0"],
            "different environments",
        ),
        (["data", "info", "advrl/hopper/expert-v0"], "not built yet: build it with `advrl data make advrl/hopper/expert-v0`"),
        (["data", "info", "advrl/hopper/randomm-v0"], "Did you mean advrl/hopper/random-v0"),
    ],
)
def test_cli_errors_exit_1_with_the_fix(store, capsys, argv, message):
    catalog.build("advrl/hopper/random-v0", size=60)
    catalog.build("advrl/halfcheetah/random-v0", size=60)
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("advrl: error: ") and message in err


def test_medium_replay_on_a_machine_without_the_run_is_retrained_to_the_same_bytes(minari_root, tmp_path, monkeypatch):
    """The online run behind medium-replay is not committed; its policy record keeps the
    recipe, and training it again (one thread) gives the same replay buffer and actor."""
    from advrl.learner.online import train_online

    tiny = ["online.env=Hopper-v5", "online.steps=60", "online.learning_starts=20", "online.buffer_size=1000",
            "online.snapshot_every=30", "eval.every=30", "eval.episodes=1", "eval.final_episodes=0", "train.batch_size=16",
            "train.checkpoint_every=30", "components.actor.hidden_sizes=[16]", "components.critic.hidden_sizes=[16]"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as behaviour-policy runs are trained
    try:
        train_online(REPO / "recipes" / "online" / "sac.yaml", tiny, run_dir=tmp_path / "original", progress=False)
    finally:
        torch.set_num_threads(threads)
    root = tmp_path / "policies"
    record = policies.export_policy(tmp_path / "original" / "snapshots" / "step00000030.pt", "hopper", "medium", episodes=1, root=root)
    assert record["recipe"]["online"]["steps"] == 60 and record["steps"] == 30
    # the software the run trained with, as the run wrote it at its start
    written = json.loads((tmp_path / "original" / "software.json").read_text())
    assert record["training_software"] == written
    assert {key: value for key, value in written.items() if key != "threads"} == provenance.software()  # + the run's threads
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv(policies.ENV_VAR, str(root))
    catalog.build("advrl/hopper/medium-replay-v0")
    original = episodes_of("advrl/hopper/medium-replay-v0")
    shutil.rmtree(tmp_path / "minari" / "advrl/hopper/medium-replay-v0")
    shutil.rmtree(tmp_path / "original")  # another machine

    with pytest.raises(DatasetError, match="--retrain"):
        catalog.build("advrl/hopper/medium-replay-v0")
    path = policies.record_path("hopper", "medium", root)
    old_record = json.loads(path.read_text())
    del old_record["recipe"]["log"]  # exported before recipes had a log section (Hopper's committed one)
    path.write_text(json.dumps(old_record))
    again = tmp_path / "again"
    assert policies.retrain_run("hopper", "medium", again, root)["reproduced"] is True
    assert not (again / "snapshots" / "step00000060.pt").exists()  # stopped at the policy's step
    catalog.build("advrl/hopper/medium-replay-v0", run_dir=again, retrain=True)  # the run is there: reused
    build_record = json.loads((tmp_path / "minari" / "advrl/hopper/medium-replay-v0" / "advrl.json").read_text())
    assert build_record["software"] == provenance.software()
    rebuilt = episodes_of("advrl/hopper/medium-replay-v0")
    assert len(rebuilt) == len(original)
    for new, old in zip(rebuilt, original):
        np.testing.assert_array_equal(new.observations, old.observations)
        np.testing.assert_array_equal(new.actions, old.actions)
        np.testing.assert_array_equal(new.rewards, old.rewards)


def test_a_retraining_that_differs_names_what_changed_since_the_original(fake_run, tmp_path):
    root = tmp_path / "policies"
    policies.export_policy(fake_run / "snapshots" / "step00000200.pt", "hopper", "medium", episodes=1, root=root)
    assert policies.read_record("hopper", "medium", root)["training_software"] is None  # the run wrote none
    message = policies.not_reproduced_warning("hopper", "medium", tmp_path / "again", root)
    assert "another content fingerprint" in message and "predates software records" in message

    path = policies.record_path("hopper", "medium", root)
    record = json.loads(path.read_text())
    now = provenance.software()
    record["training_software"] = {**now, "mujoco": "3.3.7", "processor": {**now["processor"], "flags_sha256": "0" * 12}}
    path.write_text(json.dumps(record))
    message = policies.not_reproduced_warning("hopper", "medium", tmp_path / "again", root)
    assert message.endswith(f"Recorded -> now: mujoco: 3.3.7 -> {now['mujoco']}; "
                            f"processor.flags_sha256: {'0' * 12} -> {now['processor']['flags_sha256']}.")
    record["training_software"] = now
    path.write_text(json.dumps(record))
    assert "are those recorded" in policies.not_reproduced_warning("hopper", "medium", tmp_path / "again", root)


def test_retraining_needs_a_record_with_its_recipe(fake_run, tmp_path):
    root = tmp_path / "policies"
    policies.export_policy(fake_run / "snapshots" / "step00000200.pt", "hopper", "medium", episodes=1, root=root)
    path = policies.record_path("hopper", "medium", root)
    record = json.loads(path.read_text())
    del record["recipe"]  # as exported before records kept it
    path.write_text(json.dumps(record))
    with pytest.raises(policies.PolicyError, match="keeps no recipe"):
        policies.retrain_run("hopper", "medium", tmp_path / "again", root)


@pytest.mark.parametrize("env", [env for env in catalog.ENVS if policies.has(env, "medium")])
def test_committed_medium_records_keep_a_retrainable_recipe(env):
    """medium-replay on a fresh machine retrains the medium policy's online run from its
    record: the committed record must carry a recipe that validates as that run's (its env,
    seed and actor), or `data make ...medium-replay-v0 --retrain` stops at once."""
    from advrl.recipe import validate

    record = policies.read_record(env, "medium")
    assert isinstance(record.get("recipe"), dict), f"advrl/policies/{env}/medium.json keeps no recipe"
    recipe = validate(OmegaConf.create(record["recipe"]))
    assert recipe.online.env == record["env_id"] and recipe.seed == record["seed"]
    assert int(recipe.online.steps) >= int(record["steps"])
    actor = OmegaConf.to_container(recipe.components[recipe.eval.policy], resolve=True)
    assert actor["name"] == record["actor"]["name"]
    assert {k: actor[k] for k in record["actor"]["config"]} == record["actor"]["config"]


# ---- seed tags: several builds of one kind side by side ---------------------------------------
def test_seed_tags_parse_and_malformed_tags_name_the_valid_form():
    assert catalog.seed_tag("advrl/hopper/expert-10k-s1-v0") == 1 and catalog.size_tag("advrl/hopper/expert-10k-s1-v0") == 10_000
    assert catalog.parse("advrl/hopper/medium-replay-s2-v0") == ("hopper", "medium-replay")
    assert catalog.seed_tag("advrl/hopper/medium-replay-s2-v0") == 2 and catalog.size_tag("advrl/hopper/medium-replay-s2-v0") is None
    assert catalog.seed_tag("advrl/hopper/random-medium-expert-s0-v0") == 0 and catalog.seed_tag("advrl/hopper/expert-v0") is None
    assert catalog.default_size("advrl/hopper/expert-s4-v0") == catalog.FULL_SIZE
    for bad in ("advrl/hopper/expert-s1-10k-v0", "advrl/hopper/expert-10k-s-v0", "advrl/hopper/expert-10k-s01-v0",
                "advrl/hopper/expert-seed1-v0", "advrl/hopper/medium-replay-10x-v0"):
        assert not catalog.is_buildable(bad)
        with pytest.raises(catalog.UnknownDatasetError) as err:
            catalog.parse(bad)
        message = str(err.value)
        assert "\n" not in message and "has malformed tags" in message and "advrl/<env>/<kind>[-<size>][-s<seed>]-v0" in message


def test_seed_tagged_builds_live_side_by_side_and_are_listed(store, capsys):
    assert main(["data", "make", "advrl/hopper/expert-300-s1-v0"]) == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 1
    catalog.build("advrl/hopper/expert-300-s2-v0")
    catalog.build("advrl/hopper/expert-300-v0", seed=1)  # the same collection under an untagged id
    assert read_record("advrl/hopper/expert-300-s2-v0")["seed"] == 2
    assert read_record("advrl/hopper/expert-300-s1-v0")["command"] == "advrl data make advrl/hopper/expert-300-s1-v0 --seed 1 --size 300"
    obs = {i: np.concatenate([ep.observations for ep in episodes_of(i)]) for i in ("advrl/hopper/expert-300-s1-v0", "advrl/hopper/expert-300-s2-v0", "advrl/hopper/expert-300-v0")}
    np.testing.assert_array_equal(obs["advrl/hopper/expert-300-s1-v0"], obs["advrl/hopper/expert-300-v0"])
    assert obs["advrl/hopper/expert-300-s1-v0"].shape != obs["advrl/hopper/expert-300-s2-v0"].shape or not np.array_equal(
        obs["advrl/hopper/expert-300-s1-v0"], obs["advrl/hopper/expert-300-s2-v0"])
    assert main(["data", "list"]) == 0
    listed = capsys.readouterr().out
    assert "advrl/hopper/expert-300-s1-v0" in listed and "advrl/hopper/expert-300-s2-v0" in listed and "seed 2]" in listed
    with pytest.raises(DatasetError, match=r"names its seed \(1\); --seed 2 contradicts it"):
        catalog.build("advrl/hopper/expert-300-s1-v0", seed=2)
    assert main(["data", "make", "advrl/hopper/expert-s1-300-v0"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "has malformed tags '-s1-300'" in err


def test_medium_replay_seed_tag_is_its_online_runs_seed(store, fake_run):
    """The replay is collected by the online run (fake_run: seed 3), so a seed tag names that run."""
    catalog.build("advrl/hopper/medium-replay-s3-v0")  # the medium policy's recorded run
    assert read_record("advrl/hopper/medium-replay-s3-v0")["seed"] == 3
    catalog.build("advrl/hopper/medium-replay-100-s3-v0", run_dir=fake_run)
    assert read_record("advrl/hopper/medium-replay-100-s3-v0")["size"] == 100
    for run_dir in (None, fake_run):
        with pytest.raises(DatasetError, match=r"online run trained with seed 2, but .* used seed 3.*--run RUN_DIR"):
            catalog.build("advrl/hopper/medium-replay-s2-v0", run_dir=run_dir)
    assert "medium-replay-s2" not in " ".join(os.listdir(store / "advrl" / "hopper") + os.listdir(store))  # no lock file either
