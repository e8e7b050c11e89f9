"""advrl data import: transitions kept as arrays (D4RL's layout, .npz or .hdf5) become a local
Minari dataset that trains like any other."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from advrl.cli import main
from advrl.data.dataset import DatasetError
from advrl.data.importer import import_arrays

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
ROWS = 600
TERMINAL, TIMEOUT = 99, 299  # rows: episodes 0..99 (terminal), 100..299 (cut), 300..599 (the array's end)


def arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    terminals, timeouts = np.zeros(ROWS, bool), np.zeros(ROWS, bool)
    terminals[TERMINAL], timeouts[TIMEOUT] = True, True
    return {
        "observations": rng.standard_normal((ROWS, 11)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (ROWS, 3)).astype(np.float32),
        "rewards": rng.standard_normal(ROWS).astype(np.float32),
        "terminals": terminals,
        "timeouts": timeouts,
    }


def episodes_of(dataset_id: str) -> list:
    import minari

    return list(minari.load_dataset(dataset_id).iterate_episodes())


def test_raw_d4rl_arrays_split_into_episodes_as_d4rl_reads_them(minari_root, tmp_path):
    """Without next_observations a cut episode's last row has no known successor and is
    dropped; a terminal row is kept (its successor is masked); every other row is unchanged."""
    data = arrays()
    np.savez(tmp_path / "raw.npz", **data)
    import_arrays(tmp_path / "raw.npz", "test/import-raw-v0")
    episodes = episodes_of("test/import-raw-v0")
    assert [len(e.rewards) for e in episodes] == [100, 199, 299]
    assert [bool(e.terminations[-1]) for e in episodes] == [True, False, False]
    assert [bool(e.truncations[-1]) for e in episodes] == [False, True, True]
    cut = episodes[1]
    np.testing.assert_array_equal(cut.observations, data["observations"][100:300])  # row 299: the last successor
    np.testing.assert_array_equal(cut.actions, data["actions"][100:299])
    np.testing.assert_allclose(cut.rewards, data["rewards"][100:299])
    record = json.loads((minari_root / "test" / "import-raw-v0" / "advrl.json").read_text())
    assert record["kind"] == "import" and record["size"] == 598 and record["sources"][0]["dropped_transitions"] == 2
    assert len(record["sources"][0]["sha256"]) == 64 and len(record["fingerprint"]) == 16


def test_next_observations_keep_every_row_and_hdf5_reads_as_npz(minari_root, tmp_path):
    import h5py

    data = arrays(1)
    following = np.roll(data["observations"], -1, axis=0) + 0.5  # distinguishable from the next row
    np.savez(tmp_path / "q.npz", **data, next_observations=following)
    import_arrays(tmp_path / "q.npz", "test/import-next-v0")
    episodes = episodes_of("test/import-next-v0")
    assert [len(e.rewards) for e in episodes] == [100, 200, 300]
    np.testing.assert_array_equal(episodes[1].observations[-1], following[TIMEOUT])
    with h5py.File(tmp_path / "q.hdf5", "w") as handle:
        for key, value in {**data, "next_observations": following}.items():
            handle[key] = value
    import_arrays(tmp_path / "q.hdf5", "test/import-next-h5-v0")
    read = [json.loads((minari_root / "test" / name / "advrl.json").read_text())["fingerprint"]
            for name in ("import-next-v0", "import-next-h5-v0")]
    assert read[0] == read[1]  # the same transitions, whichever file held them


def test_an_imported_dataset_trains_without_an_environment_and_evaluates_with_one(minari_root, tmp_path, tiny_overrides, capsys):
    np.savez(tmp_path / "raw.npz", **arrays(2))
    assert main(["data", "import", str(tmp_path / "raw.npz"), "--id", "test/import-train-v0"]) == 0
    assert json.loads(capsys.readouterr().out)["size"] == 598
    assert main(["data", "list"]) == 0
    assert re.search(r"test/import-train-v0 +598 steps +3 episodes  \[import of raw.npz\]", capsys.readouterr().out)
    assert main(["data", "info", "test/import-train-v0", "--text"]) == 0
    assert re.search(r"raw.npz \(sha256 [0-9a-f]{12}\): 600 rows, 598 transitions, 2 dropped", capsys.readouterr().out)
    overrides = [o for o in tiny_overrides if not o.startswith(("dataset.id", "eval."))]
    run = tmp_path / "run"
    assert main(["train", str(RECIPES / "td3bc.yaml"), "dataset.id=test/import-train-v0", *overrides, "eval.episodes=0",
                 "--run-dir", str(run), "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 20
    # evaluating needs an environment: one line says how to name one (nothing trained, no folder)
    assert main(["train", str(RECIPES / "td3bc.yaml"), "dataset.id=test/import-train-v0", *overrides,
                 "--run-dir", str(tmp_path / "run2"), "--no-progress"]) == 1
    assert "set eval.env to a Gymnasium id, or eval.episodes=0" in capsys.readouterr().err
    assert not (tmp_path / "run2").exists()
    # with --env the data's environment is its evaluation env, and D4RL's reference returns apply
    assert main(["data", "import", str(tmp_path / "raw.npz"), "--id", "test/import-hopper-v0", "--env", "Hopper-v5"]) == 0
    capsys.readouterr()
    assert main(["train", str(RECIPES / "td3bc.yaml"), "dataset.id=test/import-hopper-v0", *overrides, "eval.every=20",
                 "eval.episodes=1", "eval.final_episodes=1", "--run-dir", str(tmp_path / "run3"), "--no-progress"]) == 0
    assert "final_normalized_score" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("terminals"), "lacks terminals: the arrays are D4RL's"),
        (lambda d: d.update(rewards=d["rewards"][:-1]), "rewards has 599 rows, observations 600"),
        (lambda d: d["observations"].__setitem__((5, 2), np.nan), "observations holds NaN or infinite values"),
        (lambda d: d["actions"].__setitem__((7, 0), 1.5), "actions reach 1.5, beyond max_action 1"),
        (lambda d: d.update(rewards=np.zeros((ROWS, 2))), r"rewards has shape \(600, 2\); expected \[N\]"),
        (lambda d: d.update(timeouts=np.array(0.0)), "timeouts is a single number"),
    ],
    ids=["missing key", "row counts", "nan", "action bound", "shape", "scalar"],
)
def test_bad_arrays_are_one_line_naming_the_key(minari_root, tmp_path, change, message, capsys):
    data = arrays(3)
    change(data)
    np.savez(tmp_path / "bad.npz", **data)
    assert main(["data", "import", str(tmp_path / "bad.npz"), "--id", "test/import-bad-v0"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("advrl: error:"), err
    assert re.search(message, err), err
    assert not (minari_root / "test" / "import-bad-v0").exists()


def test_files_that_could_run_code_or_do_not_fit_are_refused(minari_root, tmp_path):
    data = arrays(4)
    np.savez(tmp_path / "objects.npz", **{**data, "observations": np.array([{"x": 1}] * ROWS, dtype=object)})
    with pytest.raises(DatasetError, match="observations is not a numeric array"):
        import_arrays(tmp_path / "objects.npz", "test/import-objects-v0")
    (tmp_path / "pickle.npz").write_bytes(b"\x80\x04K\x01.")  # a pickle, not a zip archive
    with pytest.raises(DatasetError, match="advrl does not unpickle files"):
        import_arrays(tmp_path / "pickle.npz", "test/import-pickle-v0")
    np.savez(tmp_path / "raw.npz", **data)
    with pytest.raises(DatasetError, match=r"--env Walker2d-v5 observes \(17,\) and acts \(6,\); the arrays have 11"):
        import_arrays(tmp_path / "raw.npz", "test/import-walker-v0", env="Walker2d-v5")
    with pytest.raises(DatasetError, match="is malformed"):
        import_arrays(tmp_path / "raw.npz", "x")
    import_arrays(tmp_path / "raw.npz", "test/import-once-v0")
    with pytest.raises(DatasetError, match="already exists"):
        import_arrays(tmp_path / "raw.npz", "test/import-once-v0")
