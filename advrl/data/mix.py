"""Mix existing local datasets into a new one, in given proportions of transitions.

Each source contributes whole episodes, picked in a seeded random order, until its budget
``round(proportion * size)`` is reached; its last episode is cut at the budget and marked
truncated. Sources are laid out one after another in the order given, and ``advrl.json``
records which episode range came from which source (and the sources' own records).
"""

from __future__ import annotations

import math
import shlex
import time
from fractions import Fraction

import numpy as np

from advrl.data.dataset import DatasetError, checked_columns

TOLERANCE = 1e-6


def check_proportions(sources: list[tuple[str, float]]) -> list[float]:
    """The shares as floats; each must be in (0, 1] and all must sum to 1 (within 1e-6)."""
    if not sources:
        raise DatasetError("Give at least one source with its proportion, e.g. advrl/hopper/random-v0:0.5.")
    shares = []
    for name, share in sources:
        try:
            value = float(share)
        except (TypeError, ValueError):
            raise DatasetError(f"Proportion of {name} must be a number, got {share!r}.") from None
        if not math.isfinite(value) or value <= 0 or value > 1:
            raise DatasetError(f"Proportion of {name} must be in (0, 1], got {share!r}.")
        shares.append(value)
    total = math.fsum(shares)
    if abs(total - 1.0) > TOLERANCE:
        listed = ", ".join(f"{name}:{share:g}" for (name, _), share in zip(sources, shares))
        raise DatasetError(f"Proportions must sum to 1 (within {TOLERANCE:g}); {listed} sum to {total:.6g}. Rescale them.")
    return shares


def split_counts(total: int, shares: list[float], names: list[str] | None = None) -> list[int]:
    """``total`` split by ``shares`` (largest remainder: the counts sum to ``total``)."""
    exact = [total * share for share in shares]
    counts = [int(math.floor(x)) for x in exact]
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    names = names or [f"source {i}" for i in range(len(shares))]
    empty = [name for name, count in zip(names, counts) if count == 0]
    if empty:
        raise DatasetError(f"A size of {total} transitions leaves no transitions for {', '.join(empty)}; use a larger size.")
    return counts


def parse_source(text: str) -> tuple[str, float]:
    """``ID:P`` (P a decimal or a fraction such as 1/3) -> (id, float)."""
    dataset_id, sep, share = text.rpartition(":")
    if not sep or not dataset_id:
        raise DatasetError(f"Mix sources are ID:PROPORTION (e.g. advrl/hopper/random-v0:0.5), got {text!r}.")
    try:
        return dataset_id, float(Fraction(share.strip()))
    except (ValueError, ZeroDivisionError):
        raise DatasetError(f"Proportion in {text!r} must be a number or a fraction like 1/3, got {share!r}.") from None


def _space_signature(space) -> tuple:
    return (
        type(space).__name__,
        tuple(getattr(space, "shape", ()) or ()),
        str(getattr(space, "dtype", "")),
        np.asarray(getattr(space, "low", 0.0)).tolist(),
        np.asarray(getattr(space, "high", 0.0)).tolist(),
    )


def _env_id(ds) -> str | None:
    spec = ds.spec.env_spec
    return getattr(spec, "id", None) if spec is not None else None


def mix(
    sources: list[tuple[str, float]],
    new_id: str,
    size: int | None = None,
    seed: int = 0,
) -> str:
    """Build ``new_id`` from whole episodes of local datasets; returns its path.

    ``size`` defaults to the largest total every source can supply at its proportion.
    """
    from advrl.data import catalog
    from advrl.data.collect import write_minari_dataset

    started = time.perf_counter()
    names, shares = _checked_request(sources, new_id, size, seed)
    datasets = _open_sources(names)
    size, counts = _budgets(names, datasets, shares, size)
    episodes, records = _take_episodes(names, datasets, shares, counts, seed)

    first = datasets[0]
    metadata = first.storage.metadata
    env_spec = first.spec.env_spec
    eval_spec = getattr(first, "_eval_env_spec", None) or env_spec  # minari keeps it only privately
    command = ["advrl", "data", "mix", *(f"{n}:{s!r}" for n, s in zip(names, shares)),
               "--id", new_id, "--size", str(size), "--seed", str(seed)]
    record = catalog.dataset_record(
        new_id, getattr(env_spec, "id", None), episodes, records, seed, size, kind="mix", command=shlex.join(command)
    )
    what = " + ".join(f"{n} {s:.0%}" for n, s in zip(names, shares))
    description = catalog.summary_line(new_id, getattr(env_spec, "id", "?"), size, len(episodes), what, seed, record["returns"])
    return write_minari_dataset(
        new_id,
        episodes,
        env_spec,
        metadata.get("ref_min_score"),
        metadata.get("ref_max_score"),
        description,
        algorithm_name=f"advrl mix of {', '.join(names)}",
        record=record,
        started=started,
        eval_env=eval_spec,
    )


def _checked_request(sources, new_id: str, size, seed) -> tuple[list[str], list[float]]:
    """Source names and shares, once the id, seed, size and sources are known to be usable."""
    import minari

    from advrl.data import catalog
    from advrl.data.collect import check_new_id, refuse_existing

    check_new_id(new_id, "advrl/hopper/my-mix-v0")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"The seed must be a non-negative integer, got {seed!r}.")
    if size is not None and (not isinstance(size, (int, np.integer)) or size < 1):
        raise DatasetError(f"The size must be a positive number of transitions, got {size!r}.")
    names = [name for name, _ in sources]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise DatasetError(f"Mix source(s) {', '.join(twice)} listed twice: give each dataset once with its total proportion.")
    shares = check_proportions(sources)
    if new_id in names:
        raise DatasetError(f"The new id {new_id!r} is also a source: choose a new id.")
    local = set(minari.list_local_datasets())
    for name in names:
        if name in local:
            continue
        if catalog.is_buildable(name):
            raise DatasetError(f"Mix source {name!r} is not built yet: build it first with `advrl data make {name}`.")
        raise catalog.unknown_id_error(name, sorted(local), what="No local dataset")
    refuse_existing(new_id)
    return names, shares


def _open_sources(names: list[str]) -> list:
    """The source datasets, checked to be finite, unchanged and of one environment."""
    import minari

    datasets = [minari.load_dataset(name, download=False) for name in names]
    for ds in datasets:  # a changed or non-finite source would pass into the mix under a new, consistent fingerprint
        checked_columns(ds)
    first = datasets[0]
    for name, ds in zip(names[1:], datasets[1:]):
        env_a, env_b = _env_id(first), _env_id(ds)
        if env_a and env_b and env_a != env_b:
            raise DatasetError(
                f"Cannot mix datasets of different environments: {names[0]} is {env_a}, {name} is {env_b}. Mix datasets of one environment."
            )
        for what in ("observation_space", "action_space"):
            if _space_signature(getattr(first.spec, what)) != _space_signature(getattr(ds.spec, what)):
                raise DatasetError(
                    f"Cannot mix {names[0]} and {name}: their {what.replace('_', ' ')}s differ "
                    f"({getattr(first.spec, what)} vs {getattr(ds.spec, what)}). Mix datasets of one environment."
                )
    if first.spec.env_spec is None:
        raise DatasetError(f"{names[0]} records no environment spec; advrl mixes datasets of Gymnasium environments only.")
    return datasets


def _budgets(names, datasets, shares, size) -> tuple[int, list[int]]:
    """The mix's size and each source's number of transitions (all of them available)."""
    totals = [int(ds.total_steps) for ds in datasets]
    if size is None:
        size = min(int(math.floor(total / share + 1e-9)) for total, share in zip(totals, shares))
    counts = split_counts(int(size), shares, names)
    short = [f"{name} has {total} but needs {count}" for name, total, count in zip(names, totals, counts) if count > total]
    if short:
        raise DatasetError(
            f"Not enough transitions for size {size}: {'; '.join(short)}. Lower --size (or omit it for the largest possible)."
        )
    return int(size), counts


def _take_episodes(names, datasets, shares, counts, seed) -> tuple[list, list[dict]]:
    """Whole episodes of each source in a seeded order up to its budget (the last one cut), and
    the record of what came from where."""
    from advrl.data.collect import read_record, renumber, stream_rng

    episodes, records = [], []
    for index, (name, ds, share, count) in enumerate(zip(names, datasets, shares, counts)):
        order = stream_rng(seed, index).permutation(int(ds.total_episodes))
        taken, picked, got = [], [], 0
        reader = ds.storage.get_episodes(int(i) for i in order)  # one open file, read lazily
        for episode_index, episode in zip(order, reader):
            length = len(episode["rewards"])
            if length == 0:
                continue
            keep = min(length, count - got)
            taken.append(_episode_buffer(episode, keep, cut=keep < length))
            picked.append(int(episode_index))
            got += keep
            if got >= count:
                break
        reader.close()
        records.append(
            {
                "dataset": name,
                "proportion": share,
                "transitions": got,
                "episodes": [len(episodes), len(episodes) + len(taken)],
                "source_episodes": picked,
                "record": read_record(name),
            }
        )
        episodes.extend(taken)
    return renumber(episodes), records


def _episode_buffer(episode: dict, keep: int, cut: bool):
    from minari.data_collector import EpisodeBuffer

    terms = np.asarray(episode["terminations"][:keep], dtype=bool)
    truncs = np.asarray(episode["truncations"][:keep], dtype=bool)
    if cut:
        truncs[-1] = not terms[-1]
    return EpisodeBuffer(
        observations=np.asarray(episode["observations"][: keep + 1]),
        actions=np.asarray(episode["actions"][:keep]),
        rewards=[float(r) for r in episode["rewards"][:keep]],
        terminations=terms.tolist(),
        truncations=truncs.tolist(),
    )
