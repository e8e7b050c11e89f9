"""Dataset builds packed into one file and installed on another machine's store."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from advrl.cli import main
from advrl.data import catalog
from advrl.data.archive import MANIFEST, local_fingerprint, pack, read_manifest, unpack
from advrl.data.dataset import DatasetError

ID = "advrl/hopper/random-v0"


@pytest.fixture
def machines(tmp_path, monkeypatch):
    """Two Minari stores holding different builds of ID (seeds 1 and 2); returns a function
    that makes one of them the current store."""
    def use(name: str):
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / name))
        return tmp_path / name

    for name, seed in (("first", 1), ("second", 2)):
        use(name)
        catalog.build(ID, size=200, seed=seed)
    return use


def test_a_packed_build_lands_whole_on_another_store_and_replaces_only_when_asked(machines, tmp_path):
    machines("first")
    first = local_fingerprint(ID)
    archive = pack(ID, tmp_path / "first.tar.xz")
    manifest = read_manifest(archive)
    assert manifest["dataset_id"] == ID and manifest["fingerprint"] == first and manifest["packed_with"]["torch"]
    with pytest.raises(DatasetError, match=f"fingerprint {first}, not {'0' * 16}: not packed"):
        pack(ID, tmp_path / "other.tar.xz", expect="0" * 16)
    assert not (tmp_path / "other.tar.xz").exists()

    store = machines("second")
    second = local_fingerprint(ID)
    assert second != first  # another build of the same id
    with pytest.raises(DatasetError, match=f"another build of {ID} .*{second}.*{first}.*--replace"):
        unpack(archive)
    assert local_fingerprint(ID) == second  # untouched
    unpack(archive, replace=True)
    assert local_fingerprint(ID) == first
    assert (store / ID / "advrl.json").is_file()  # the build record comes along
    assert unpack(archive)["fingerprint"] == first  # the same build again: nothing to do
    assert not [p for p in store.iterdir() if p.name.startswith(".advrl-unpack-")]  # no staging left

    (store / ID / "data" / "main_data.hdf5").write_bytes(b"damaged")  # a broken local build
    with pytest.raises(DatasetError):
        unpack(archive)
    unpack(archive, replace=True)
    assert local_fingerprint(ID) == first

    machines("empty")
    assert local_fingerprint(ID) is None
    unpack(archive)
    assert local_fingerprint(ID) == first


def test_damaged_or_foreign_archives_and_missing_builds_are_explained(machines, tmp_path):
    machines("first")
    archive = pack(ID, tmp_path / "first.tar.xz")
    # same data, manifest claiming another fingerprint: the content check stops it
    tampered = tmp_path / "tampered.tar.xz"
    with tarfile.open(archive, "r:xz") as source, tarfile.open(tampered, "w:xz") as target:
        for member in source.getmembers():
            data = source.extractfile(member) if member.isfile() else None
            if member.name == MANIFEST:
                manifest = json.loads(data.read())
                manifest["fingerprint"] = "0" * 16
                payload = json.dumps(manifest).encode()
                member.size = len(payload)
                data = io.BytesIO(payload)
            target.addfile(member, data)
    store = machines("empty")
    with pytest.raises(DatasetError, match="damaged"):
        unpack(tampered)
    assert local_fingerprint(ID) is None and not list(store.glob(".advrl-unpack-*"))
    (tmp_path / "junk.tar.xz").write_bytes(b"not an archive")
    with pytest.raises(DatasetError, match="not a readable advrl dataset archive"):
        unpack(tmp_path / "junk.tar.xz")
    with pytest.raises(DatasetError, match=r"not in the local Minari store.*advrl data make"):
        pack(ID, tmp_path / "none.tar.xz")


def test_cli_pack_and_unpack(machines, tmp_path, capsys, monkeypatch):
    machines("first")
    monkeypatch.chdir(tmp_path)
    assert main(["data", "pack", ID]) == 0
    packed = json.loads(capsys.readouterr().out)
    assert packed["archive"] == f"advrl__hopper__random-v0-{packed['fingerprint']}.tar.xz" and packed["bytes"] > 0
    machines("second")
    assert main(["data", "unpack", packed["archive"]]) == 1  # another build here
    assert "--replace" in capsys.readouterr().err
    assert main(["data", "unpack", packed["archive"], "--replace"]) == 0
    assert json.loads(capsys.readouterr().out)["fingerprint"] == packed["fingerprint"] == local_fingerprint(ID)
