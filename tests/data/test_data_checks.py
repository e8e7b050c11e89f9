"""Data checked at load: non-finite values, the build record's environment and content
fingerprint. Every dataset here is a small one of its own in the session's temporary store,
removed afterwards; each test changes its dataset the way a user or a damaged file would."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from advrl.cli import main
from advrl.data import catalog, collect
from advrl.data.dataset import DatasetError, content_fingerprint, dataset_info, load_offline_data, open_minari, read_episodes
from advrl.data.stats import return_stats
from advrl.evaluation import make_env_factory
from advrl.recipe import DataConfig, DatasetConfig
from tests.conftest import RECIPES


def load(dataset_id: str):
    dataset = OmegaConf.structured(DatasetConfig(id=dataset_id))
    return load_offline_data(dataset, OmegaConf.structured(DataConfig), torch.device("cpu"))


@pytest.fixture
def built(minari_root):
    """``built(id)`` builds a small advrl dataset (a size-tagged random id) and removes it after the test."""
    made = []

    def build(dataset_id: str) -> str:
        made.append(catalog.build(dataset_id, seed=0))
        return dataset_id

    yield build
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def written(minari_root):
    """``written(id, change, record)``: a dataset of random Hopper episodes, ``change(episodes)``
    applied before writing (e.g. a NaN reward, as a diverged simulator would leave it)."""
    made = []

    def write(dataset_id: str, change, record: bool = True):
        episodes = collect.collect_episodes("Hopper-v5", None, 60, seed=3)
        change(episodes)
        facts = {"format": "advrl-dataset-v1", "dataset_id": dataset_id, "env_id": "Hopper-v5",
                 "command": f"advrl data make {dataset_id}"} if record else None
        made.append(collect.write_minari_dataset(dataset_id, episodes, "Hopper-v5", -20.272305, 3234.3, "test", record=facts))
        return episodes

    yield write
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def nan_reward(episodes):
    episodes[1].rewards[2] = float("nan")


# ---- non-finite data ------------------------------------------------------------------------
def test_nan_reward_is_refused_at_load_naming_field_transition_and_fix(written):
    episodes = written("advrl/hopper/nan-reward-v0", nan_reward)
    index = len(episodes[0].rewards) + 2
    with pytest.raises(DatasetError, match=rf"reward is not finite \(nan\) at transition {index} \(episode 1; 1 of 60 transitions.*"
                                           r"delete .* build it again with `advrl data make advrl/hopper/nan-reward-v0`, or write a copy of it without those episodes"):
        load("advrl/hopper/nan-reward-v0")


@pytest.mark.parametrize(("row", "field", "transition"), [(5, "observation", 5), (-1, "next.observation", None)])
def test_nan_observation_is_refused_in_a_dataset_advrl_did_not_build(written, row, field, transition):
    def poison(episodes):
        episodes[0].observations[row, 4] = np.nan

    episodes = written("other/hopper/nan-obs-v0", poison, record=False)
    transition = len(episodes[0].rewards) - 1 if transition is None else transition  # the last obs is only a next obs
    with pytest.raises(DatasetError, match=rf"'other/hopper/nan-obs-v0': {field} is not finite \(nan\) at transition "
                                           rf"{transition} \(episode 0; .*rebuild it, or write a copy of it without those episodes"):
        load("other/hopper/nan-obs-v0")


def test_train_cli_refuses_nan_data_in_one_line_before_training(written, tiny_overrides, tmp_path, capsys):
    written("advrl/hopper/nan-reward-v0", nan_reward)
    overrides = [o for o in tiny_overrides if not o.startswith("dataset.id=")] + ["dataset.id=advrl/hopper/nan-reward-v0"]
    code = main(["train", str(RECIPES / "td3bc.yaml"), *overrides, "--run-dir", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("advrl: error:")]
    assert len(lines) == 1 and "reward is not finite (nan) at transition" in lines[0]
    assert "Traceback" not in err and "learning rate" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("text", [False, True])
def test_data_info_on_nan_data_shows_the_info_and_warns(written, capsys, text):
    written("advrl/hopper/nan-reward-v0", nan_reward)
    code = main(["data", "info", "advrl/hopper/nan-reward-v0", *(["--text"] if text else [])])
    out, err = capsys.readouterr()
    assert code == 0
    assert "advrl: warning: Dataset 'advrl/hopper/nan-reward-v0': reward is not finite (nan) at transition" in err
    if text:
        assert "1 episode returns are not finite" in out and "content fingerprint" in out
    else:
        summary = json.loads(out)
        assert summary["returns"]["non_finite"] == 1 and summary["returns"]["min"] is not None
        assert len(summary["warnings"]) == 1 and "reward" in summary["warnings"][0]


def test_return_stats_leave_non_finite_returns_out():
    stats = return_stats([1.0, float("nan"), 3.0, float("inf")])
    assert stats == {"episodes": 2, "min": 1.0, "median": 2.0, "max": 3.0, "mean": 2.0, "std": 1.0, "non_finite": 2}


# ---- environment: advrl.json is the authority ---------------------------------------------------
def rename_env(dataset_id: str, env_id: str) -> None:
    """Edit minari's metadata to name another environment (of the same shapes)."""
    path = os.path.join(collect.dataset_path(dataset_id), "data", "metadata.json")
    with open(path) as handle:
        metadata = json.load(handle)
    metadata["env_spec"] = metadata["eval_env_spec"] = gym.spec(env_id).to_json()
    with open(path, "w") as handle:
        json.dump(metadata, handle)


def test_metadata_naming_another_env_than_the_build_record_is_refused(built):
    dataset_id = built("advrl/hopper/random-70-v0")
    rename_env(dataset_id, "Hopper-v4")
    with pytest.raises(DatasetError, match=r"metadata's env_spec \(the env the data was collected in\) disagrees with its build record "
                                           r"advrl.json \(id .Hopper-v4. there, .Hopper-v5. in advrl.json\).*advrl data make"):
        load(dataset_id)


def test_metadata_with_other_reference_returns_is_refused(built):
    dataset_id = built("advrl/hopper/random-74-v0")
    path = os.path.join(collect.dataset_path(dataset_id), "data", "metadata.json")
    with open(path) as handle:
        metadata = json.load(handle)
    metadata["ref_max_score"] = 300.0  # every normalised score x10
    with open(path, "w") as handle:
        json.dump(metadata, handle)
    with pytest.raises(DatasetError, match=r"reference returns \(what scores are normalised by\) disagrees .*ref_max_score 300.0 there, 3234.3 in advrl.json"):
        load(dataset_id)


def test_eval_env_comes_from_the_build_record(built):
    dataset_id = built("advrl/hopper/random-71-v0")
    rename_env(dataset_id, "Hopper-v4")
    info = dataset_info(open_minari(dataset_id))
    env = make_env_factory(info)()
    assert env.spec.id == "Hopper-v5"
    env.close()
    assert info.eval_env_from == "advrl.json"
    # a run saved before the record decided carries the metadata's spec: the record still wins
    saved = dataclasses.replace(info, eval_env_spec=gym.spec("Hopper-v4").to_json(), eval_env_from=None)
    env = make_env_factory(saved)()
    assert env.spec.id == "Hopper-v5"
    env.close()


# ---- content fingerprint --------------------------------------------------------------------
def test_build_records_the_fingerprint_that_loading_computes(built):
    dataset_id = built("advrl/hopper/random-72-v0")
    record = collect.read_record(dataset_id)
    assert record["fingerprint"] == load(dataset_id).info.fingerprint
    assert json.loads(record["eval_env_spec"])["id"] == "Hopper-v5"


def test_values_changed_in_place_are_refused_naming_both_fingerprints(built):
    import h5py

    dataset_id = built("advrl/hopper/random-73-v0")
    recorded = collect.read_record(dataset_id)["fingerprint"]
    with h5py.File(os.path.join(collect.dataset_path(dataset_id), "data", "main_data.hdf5"), "r+") as handle:
        handle["episode_0/rewards"][3] += 1.0
    actual = content_fingerprint(read_episodes(open_minari(dataset_id)))
    assert actual != recorded
    with pytest.raises(DatasetError, match=rf"content fingerprint is {actual}, but its build record advrl.json names "
                                           rf"{recorded}.*`advrl data make {dataset_id} --seed 0 --size 73`"):
        load(dataset_id)


def test_data_info_on_a_build_changed_in_place_warns_with_both_fingerprints(built, capsys):
    import h5py

    dataset_id = built("advrl/hopper/random-75-v0")
    recorded = collect.read_record(dataset_id)["fingerprint"]
    assert main(["data", "info", dataset_id, "--text"]) == 0
    assert f"content fingerprint {recorded} (as advrl.json records)" in capsys.readouterr().out
    with h5py.File(os.path.join(collect.dataset_path(dataset_id), "data", "main_data.hdf5"), "r+") as handle:
        handle["episode_0/observations"][2, 0] *= 2
    assert main(["data", "info", dataset_id, "--text"]) == 0
    out, err = capsys.readouterr()
    assert f"(advrl.json records {recorded})" in out
    assert f"advrl: warning: Dataset {dataset_id!r} does not hold the data it was built with" in err


def test_mix_refuses_a_source_changed_in_place(built):
    import h5py

    from advrl.data.mix import mix

    source = built("advrl/hopper/random-76-v0")
    with h5py.File(os.path.join(collect.dataset_path(source), "data", "main_data.hdf5"), "r+") as handle:
        handle["episode_1/actions"][0, 1] = 0.5
    with pytest.raises(DatasetError, match=rf"Dataset {source!r} does not hold the data it was built with"):
        mix([(source, 1.0)], "advrl/hopper/laundered-v0")
    assert not os.path.exists(collect.dataset_path("advrl/hopper/laundered-v0"))
