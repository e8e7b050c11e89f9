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
import re
import tarfile
import tempfile
from pathlib import Path

from advrl.data.collect import staging_folder
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


# Minari's ``namespace/name-vN`` (minari.dataset.minari_dataset.DATASET_ID_RE), narrowed to
# segments of letters, digits, ``_`` and ``-``: an archive's id becomes a path in the store
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_-]*"
_ARCHIVE_ID = re.compile(rf"(?:{_SEGMENT}/)*{_SEGMENT}-v[0-9]+")
_FINGERPRINT = re.compile(r"[0-9a-f]{16}")


def check_manifest(path, manifest: dict, root: str) -> tuple[str, str]:
    """The manifest's dataset id and fingerprint, once the id is a Minari id naming a folder
    inside the store ``root``: an archive must not choose where on the disk it lands."""
    dataset_id, fingerprint = manifest.get("dataset_id"), manifest.get("fingerprint")
    if not isinstance(dataset_id, str) or not _ARCHIVE_ID.fullmatch(dataset_id):
        raise DatasetError(
            f"{path} names the dataset id {dataset_id!r}, which is not a Minari id (namespace/name-vN, e.g. "
            "advrl/hopper/medium-v0): not unpacked. Pack the build again with `advrl data pack ID`."
        )
    store = os.path.realpath(root)
    if os.path.commonpath([store, os.path.realpath(os.path.join(root, dataset_id))]) != store:
        raise DatasetError(f"{path}: the id {dataset_id} leads outside the dataset store {root} (a link in it): not unpacked.")
    if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
        raise DatasetError(f"{path} names no valid content fingerprint ({fingerprint!r}): not unpacked; pack it again.")
    return dataset_id, fingerprint


def unpack(path: str | os.PathLike, replace: bool = False) -> dict:
    """Install the archived build into the local store; its manifest. A store already holding
    this build is left as it is; one holding another build of the id is replaced only with
    ``replace``. The content is checked against the manifest's fingerprint before it lands."""
    manifest = read_manifest(path)
    root = datasets_root()
    dataset_id, fingerprint = check_manifest(path, manifest, root)
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
    with staging_folder(root, ".advrl-unpack-") as staging:
        _extract(path, staging)
        if not os.path.isdir(os.path.join(staging, FOLDER)):
            raise DatasetError(f"{path} holds no {FOLDER}/ folder: not an archive `advrl data pack` wrote; pack the build again.")
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
    return manifest


def _extract(path, staging: str) -> None:
    """The build's folder of the archive into ``staging``, through tarfile's ``data`` filter:
    members with absolute paths, ``..``, links leading out or special files are refused."""
    try:
        with tarfile.open(path, "r:xz") as tar:
            members = [m for m in tar.getmembers() if m.name.split("/")[0] == FOLDER]
            links = [m.name for m in members if m.issym() or m.islnk()]
            if links:  # pack writes none; after the move into the store a link could point anywhere
                raise tarfile.FilterError(f"it holds links ({', '.join(links[:2])})")
            tar.extractall(staging, members=members, filter="data")
    except tarfile.FilterError as err:
        raise DatasetError(f"{path} is not a safe dataset archive ({err}): not unpacked. Pack the build again with `advrl data pack ID`.") from None
    except (OSError, tarfile.TarError, EOFError) as err:
        raise DatasetError(f"{path} is damaged ({err}): not unpacked. Pack the build again with `advrl data pack ID`.") from None
