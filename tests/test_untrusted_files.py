"""Files advrl reads may come from elsewhere (a parked run, a shared cache, an archive): none of
them can run code or write outside the dataset store."""

from __future__ import annotations

import builtins
import io
import json
import os
import pickle
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import advrl
from advrl.cli import main
from advrl.data import catalog
from advrl.data.archive import MANIFEST, local_fingerprint, pack, unpack
from advrl.data.collect import STAGING_LOCK
from advrl.data.dataset import DatasetError
from advrl.data.policies import PolicyError, list_snapshots, policy_from_file
from advrl.learner.checkpoint import CheckpointError, UnsafeFileError, load_checkpoint, safe_load

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
ID = "advrl/hopper/random-v0"


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appearing means code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def crafted(path: Path, marker: Path, bare: bool = False, **fields) -> Path:
    """A .pt shaped like an advrl file, carrying the payload (torch's zip format, or a bare pickle)."""
    obj = {"step": 10, "components": {}, **fields, "extra": Payload(marker)}
    if bare:
        path.write_bytes(pickle.dumps(obj))
    else:
        torch.save(obj, path)
    return path


@pytest.fixture
def trained(minari_root, tiny_overrides, tmp_path) -> Path:
    run_dir = tmp_path / "run"
    advrl.train(RECIPES / "bc.yaml", tiny_overrides + ["eval.episodes=0"], run_dir=run_dir, progress=False)
    return run_dir


@pytest.mark.parametrize("bare", [False, True], ids=["torch-zip", "bare-pickle"])
def test_a_crafted_checkpoint_is_refused_and_never_runs(trained, tmp_path, capsys, bare):
    marker = tmp_path / "payload-ran"
    checkpoints = trained / "checkpoints"
    (checkpoints / "previous.pt").unlink()  # else a resume falls back to it (tested in test_run_dir)
    crafted(checkpoints / "last.pt", marker, bare=bare)
    with pytest.raises(UnsafeFileError, match=r"last.pt was not loaded: it holds Python objects \(io.open\)"):
        load_checkpoint(checkpoints / "last.pt")
    with pytest.raises(CheckpointError, match="could run code"):
        advrl.load_run(trained)
    for argv in (["eval", str(trained), "--episodes", "1"], ["train", "--resume", str(trained), "--no-progress"],
                 ["probe", str(trained), "--samples", "10"]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("advrl: error:") and "could run code" in err and len(err.splitlines()) == 1, err
    assert not marker.exists()


def test_a_checkpoint_of_an_older_advrl_still_loads(trained, tmp_path):
    """Before weights-only loading, checkpoints held numpy's random state (and MuJoCo's env
    state) as numpy arrays: those exact numeric types are allowed, and such a run resumes,
    saving the new format from then on."""
    path = trained / "checkpoints" / "last.pt"
    state = torch.load(trained / "checkpoints" / "previous.pt", weights_only=True)  # step 10 of 20
    np.random.seed(3)
    state["rng"]["numpy"] = np.random.get_state()  # the tuple with an ndarray, as saved before
    torch.save(state, path)
    assert isinstance(load_checkpoint(path)["rng"]["numpy"][1], np.ndarray)
    advrl.resume(trained, progress=False)
    assert torch.load(path, weights_only=True)["step"] == 20


def test_a_crafted_iql_cache_is_refused_and_never_runs(minari_root, tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from advrl.data.dataset import load_offline_data
    from advrl.recipe import DataConfig, DatasetConfig

    monkeypatch.setenv("ADVRL_CACHE", str(tmp_path / "cache"))
    data = load_offline_data(OmegaConf.structured(DatasetConfig(id=ID)), OmegaConf.structured(DataConfig), torch.device("cpu"))
    selector = advrl.make("selector", "iql_advantage", advrl.DataSpec(**data.info.facts()), pretrain_steps=5, batch_size=16)
    cache = selector.cache_path(data.info.id, 0)
    cache.parent.mkdir(parents=True)
    marker = tmp_path / "payload-ran"
    crafted(cache, marker, labels=torch.zeros(data.size), n_transitions=data.size, seconds=1.0)
    with pytest.raises(CheckpointError, match=r"IQL trust cache .* was not loaded: .*io.open"):
        selector.prepare(data, {"seed": 0, "device": torch.device("cpu")})
    assert not marker.exists()
    cache.write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="cannot be read .*delete it and the labels are computed again"):
        selector.prepare(data, {"seed": 0, "device": torch.device("cpu")})


def test_crafted_policies_snapshots_and_catalog_reads_are_refused(tmp_path):
    marker = tmp_path / "payload-ran"
    policy = crafted(tmp_path / "medium.pt", marker, format="advrl-policy-v1")
    with pytest.raises(PolicyError, match="Behaviour policy .*medium.pt was not loaded: .*could run code"):
        policy_from_file(policy)
    (tmp_path / "run" / "snapshots").mkdir(parents=True)
    snapshot = crafted(tmp_path / "run" / "snapshots" / "step00000030.pt", marker, evaluation={"return_mean": 1.0}, actor={})
    with pytest.raises(PolicyError, match="Snapshot .*step00000030.pt was not loaded"):
        list_snapshots(tmp_path / "run")
    with pytest.raises(DatasetError, match="was not loaded: .*could run code"):
        catalog._load_step(snapshot)
    assert not marker.exists()


def test_what_advrl_saves_loads_weights_only(tmp_path):
    """RNG states round-trip through a weights-only load and restore exactly."""
    from advrl.learner.checkpoint import restore_rng_state, rng_state

    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    np.random.normal()  # numpy keeps a cached gaussian: part of its state
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.normal(), torch.rand(1))
    restore_rng_state(safe_load(tmp_path / "rng.pt"))
    assert (random.random(), np.random.normal(), torch.rand(1)) == expected


# ---- archives --------------------------------------------------------------------------
def files_under(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` with its bytes, but for the store's empty lock file."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".advrl-staging.lock"}


def rewrite(archive: Path, out: Path, manifest_changes: dict | None = None, extra: list[tarfile.TarInfo] = ()) -> Path:
    """A copy of ``archive`` with its manifest changed and/or members added."""
    with tarfile.open(archive, "r:xz") as source, tarfile.open(out, "w:xz") as target:
        for member in source.getmembers():
            data = source.extractfile(member) if member.isfile() else None
            if member.name == MANIFEST and manifest_changes:
                payload = json.dumps({**json.loads(data.read()), **manifest_changes}).encode()
                member.size, data = len(payload), io.BytesIO(payload)
            target.addfile(member, data)
        for member in extra:
            target.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return out


@pytest.fixture
def packed(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """An archive of a small build, and an empty store as the current one (under tmp_path/machine)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "source"))
    catalog.build(ID, size=200, seed=1)
    archive = pack(ID, tmp_path / "build.tar.xz")
    store = tmp_path / "machine" / "store"
    store.mkdir(parents=True)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    return archive, store


@pytest.mark.parametrize("bad_id", ["../../victim-v0", "/tmp/victim-v0", "advrl/../../victim-v0", "victim", 7])
def test_an_archive_cannot_name_a_folder_outside_the_store(packed, tmp_path, capsys, bad_id):
    archive, store = packed
    victim = tmp_path / "machine" / "victim-v0"  # where ../../victim-v0 led: beside the store
    victim.mkdir()
    (victim / "precious.txt").write_text("the user's")
    evil = rewrite(archive, tmp_path / "evil.tar.xz", {"dataset_id": bad_id})
    before = files_under(tmp_path / "machine")
    for replace in (False, True):
        with pytest.raises(DatasetError, match="not a Minari id .*not unpacked"):
            unpack(evil, replace=replace)
    assert main(["data", "unpack", str(evil), "--replace"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("advrl: error:") and len(err.splitlines()) == 1
    assert files_under(tmp_path / "machine") == before and not list(store.iterdir())


def test_crafted_archive_contents_are_refused_and_change_nothing(packed, tmp_path):
    """A member escaping the staging folder, a link (which could lead anywhere once the build
    is moved into the store), data that is not what the manifest names: refused, and no file
    outside the store (nor in it) changes, even with --replace."""
    archive, store = packed
    escape = tarfile.TarInfo("dataset/../../escaped.txt")
    escape.size = 3
    link = tarfile.TarInfo("dataset/data/link")
    link.type, link.linkname = tarfile.SYMTYPE, "../../../../victim-v0"
    cases = {"not a safe dataset archive": rewrite(archive, tmp_path / "escape.tar.xz", extra=[escape]),
             "holds links": rewrite(archive, tmp_path / "link.tar.xz", extra=[link]),
             "damaged": rewrite(archive, tmp_path / "tampered.tar.xz", {"fingerprint": "0" * 16})}
    before = files_under(tmp_path / "machine")
    for message, evil in cases.items():
        with pytest.raises(DatasetError, match=message):
            unpack(evil, replace=True)
        assert files_under(tmp_path / "machine") == before and not (tmp_path / "escaped.txt").exists()
    assert local_fingerprint(ID) is None


def test_the_staging_folder_of_a_killed_build_goes_with_the_next_build(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    killed = tmp_path / ".advrl-build-killed"  # a build killed mid-write: its lock is free
    (killed / ID / "data").mkdir(parents=True)
    Path(str(killed) + STAGING_LOCK).touch()
    older = tmp_path / ".advrl-unpack-older"  # from an advrl before staging locks
    older.mkdir()
    running = tmp_path / ".advrl-build-running"  # a build still going: it holds its lock
    running.mkdir()
    import fcntl

    with open(str(running) + STAGING_LOCK, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        catalog.build(ID, size=50, seed=0)
        left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".advrl-") and not p.name.endswith(".lock"))
        assert left == [".advrl-build-running", ".advrl-build-running" + STAGING_LOCK]
    assert os.path.isdir(tmp_path / ID)


@pytest.mark.parametrize("form", ["object array in an npz", "bare pickle named .npz"])
def test_crafted_arrays_for_data_import_are_refused_and_never_run(tmp_path, monkeypatch, capsys, form):
    """`advrl data import` reads numbers only: numpy would unpickle an object array, or a pickle
    given as an .npz, and so run the payload; advrl refuses both with one line."""
    from advrl.data.importer import import_arrays

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "store"))
    marker, path = tmp_path / "ran", tmp_path / "data.npz"
    payload = np.empty(4, dtype=object)
    payload[:] = [Payload(marker)] * 4
    if form == "bare pickle named .npz":
        path.write_bytes(pickle.dumps({"observations": payload}))
    else:
        np.savez(path, observations=payload, actions=np.zeros((4, 3)), rewards=np.zeros(4), terminals=np.zeros(4, bool))
    with pytest.raises(DatasetError, match="not a numeric array|does not unpickle"):
        import_arrays(path, "test/crafted-v0")
    assert main(["data", "import", str(path), "--id", "test/crafted-v0"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "store" / "test").exists()
