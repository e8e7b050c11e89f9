"""Software records: the versions and processor that a build, a policy or a run came from."""

from __future__ import annotations

import re
from importlib import metadata

import numpy as np

from advrl import provenance


def test_software_names_the_installed_versions_and_the_processor():
    software = provenance.software()
    assert set(provenance.PACKAGES) <= set(software)
    assert software["numpy"] == np.__version__ and software["torch"] == metadata.version("torch")
    assert software["advrl"] == metadata.version("advrl")
    cpu = software["processor"]
    assert cpu["model"] and cpu["machine"]
    assert cpu["flags_sha256"] is None or re.fullmatch(r"[0-9a-f]{12}", cpu["flags_sha256"])
    assert provenance.software() == software  # nothing in it changes between calls


def test_differences_list_what_changed_including_the_processor():
    now = {"numpy": "2.4.6", "mujoco": "4.0.1", "processor": {"model": "X", "flags_sha256": "abc"}}
    assert provenance.differences(now, now) == []
    assert provenance.differences(None, now) == []  # nothing recorded: nothing to compare
    before = {"numpy": "2.4.6", "mujoco": "4.0.0", "processor": {"model": "X", "flags_sha256": "def"}}
    assert provenance.differences(before, now) == ["mujoco: 4.0.0 -> 4.0.1", "processor.flags_sha256: def -> abc"]
    # a package installed then and missing now, and a processor not recorded now
    assert provenance.differences({"wandb": "0.31", "processor": {"model": "X"}}, {}) == [
        "wandb: 0.31 -> None", "processor.model: X -> None"]
