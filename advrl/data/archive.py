"""A dataset build as one file, to carry it to another machine.

``advrl data make`` is byte-reproducible on one machine, but another processor (or library
version) can roll the same policies out into other episodes, so a run trained on one
machine's build resumes or compares seed for seed elsewhere only with that build itself.
:func:`pack` writes the build's folder (Minari data, ``advrl.json``) with a manifest naming
its content fingerprint into an xz-compressed tar; :func:`unpack` installs it into the local
Minari store after checking the fingerprint, and never replaces another build unasked.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from advrl.data.dataset import DatasetError, content_fingerprint, datasets_root, minari_store, open_minari, read_episodes

FORMAT = "advrl-dataset-archive-v1"
MANIFEST = "advrl-archive.json"
FOLDER = "dataset"  # the build's folder inside the archive


def local_fingerprint(dataset_id: str) -> str | None:
    """Content fingerprint of the local build of ``dataset_id``; None when there is none."""
    if not os.path.isdir(os.path.join(datasets_root(), dataset_id)):
        return None
    return content_fingerprint(read_episodes(open_minari(dataset_id)))


def default_name(dataset_id: str, fingerprint: str) -> str:
    return f"{dataset_id.replace('/', '__')}-{fingerprint}.tar.xz"


def pack(dataset_id: str, out: str | os.PathLike | None = None, expect: str | None = None) -> Path:
    """Write the local build of ``dataset_id`` to ``out`` (default: ``<id>-<fingerprint>.tar.xz``
    here); the file appears whole or not at all. With ``expect``, a local build of another
    fingerprint is an error instead."""
    from advrl import provenance

    fingerprint = local_fingerprint(dataset_id)
    if fingerprint is None:
        raise DatasetError(
            f"Dataset {dataset_id!r} is not in the local Minari store ({datasets_root()}): "
            f"build it (`advrl data make {dataset_id}`) or unpack an archive of it first."
        )
    if expect is not None and fingerprint != expect:
        raise DatasetError(f"The local build of {dataset_id} has content fingerprint {fingerprint}, not {expect}: not packed.")
    out = Path(out) if out is not None else Path(default_name(dataset_id, fingerprint))
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest = json.dumps({"format": FORMAT, "dataset_id": dataset_id, "fingerprint": fingerprint,
                           "packed_with": provenance.software()}, indent=2).encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:xz") as tar:
            entry = tarfile.TarInfo(MANIFEST)
            entry.size = len(manifest)
            tar.addfile(entry, io.BytesIO(manifest))
            tar.add(os.path.join(datasets_root(), dataset_id), arcname=FOLDER)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def read_manifest(path: str | os.PathLike) -> dict:
    """The archive's manifest: dataset id, content fingerprint, the software that packed it."""
    try:
        with tarfile.open(path, "r:xz") as tar:
            first = tar.next()  # pack writes the manifest first: no need to scan the whole archive
            handle = tar.extractfile(first) if first is not None and first.name == MANIFEST else None
            manifest = json.loads(handle.read()) if handle is not None else None
    except (OSError, tarfile.TarError, KeyError, json.JSONDecodeError, EOFError) as err:
        raise DatasetError(f"{path} is not a readable advrl dataset archive ({err}); pack it again with `advrl data pack ID`.") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DatasetError(f"{path} is not an advrl dataset archive (no {FORMAT} manifest); pack it with `advrl data pack ID`.")
    return manifest


def unpack(path: str | os.PathLike, replace: bool = False) -> dict:
    """Install the archived build into the local store; its manifest. A store already holding
    this build is left as it is; one holding another build of the id is replaced only with
    ``replace``. The content is checked against the manifest's fingerprint before it lands."""
    manifest = read_manifest(path)
    dataset_id, fingerprint = manifest["dataset_id"], manifest["fingerprint"]
    root = datasets_root()
    try:
        here = local_fingerprint(dataset_id)
    except DatasetError:  # a damaged local build: --replace is the way out
        if not replace:
            raise
        here = "unreadable"
    if here == fingerprint:
        return manifest
    if here is not None and not replace:
        raise DatasetError(
            f"The local store already holds another build of {dataset_id} (content fingerprint {here}; "
            f"the archive's is {fingerprint}). To train on the archive's build: `advrl data unpack {path} --replace` "
            f"(the local one can be made again with `advrl data make {dataset_id}`)."
        )
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".advrl-unpack-", dir=root)
    try:
        with tarfile.open(path, "r:xz") as tar:
            tar.extractall(staging, members=[m for m in tar.getmembers() if m.name.split("/")[0] == FOLDER], filter="data")
        staged = os.path.join(staging, dataset_id)
        os.makedirs(os.path.dirname(staged), exist_ok=True)
        os.rename(os.path.join(staging, FOLDER), staged)
        with minari_store(staging):
            found = local_fingerprint(dataset_id)
        if found != fingerprint:
            raise DatasetError(f"{path} holds data with fingerprint {found}, not the {fingerprint} its manifest names: the archive is damaged.")
        final = os.path.join(root, dataset_id)
        if os.path.isdir(final):  # another build, replace asked for: set it aside, then swap
            os.rename(final, os.path.join(staging, "replaced"))
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.rename(staged, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
