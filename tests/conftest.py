"""Shared fixtures: a tiny Minari dataset built through advrl's real collection and loading
code, in a temporary MINARI_DATASETS_PATH (no network is ever touched)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a remote lookup fails at once instead of retrying

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
TINY_ID = "advrl/hopper/random-v0"
TINY_SIZE = 3000


@pytest.fixture(scope="session")
def minari_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("minari")
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    from advrl.data import catalog

    catalog.build(TINY_ID, size=TINY_SIZE, seed=0)
    yield root
    if previous is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = previous


@pytest.fixture
def tiny_overrides() -> list[str]:
    """Overrides that make any recipe a seconds-long run on the tiny dataset."""
    return [
        f"dataset.id={TINY_ID}",
        "train.steps=20",
        "train.batch_size=32",
        "train.log_every=10",
        "train.checkpoint_every=10",
        "train.device=cpu",
        "eval.every=20",
        "eval.episodes=1",
        "eval.final_episodes=2",  # the end-of-training evaluation, kept to two short episodes
    ]


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
