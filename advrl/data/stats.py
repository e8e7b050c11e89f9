"""Episode-return statistics of a dataset, a plain-text histogram, and an optional PNG."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def episode_returns(ds) -> np.ndarray:
    """Undiscounted return of every episode of a Minari dataset (or a dataset id)."""
    if isinstance(ds, str):
        import minari

        ds = minari.load_dataset(ds, download=False)
    returns = [
        float(np.sum(np.asarray(ep["rewards"], dtype=np.float64))) for ep in ds.storage.get_episodes(range(ds.total_episodes))
    ]
    return np.asarray(returns, dtype=np.float64)


def finite(returns: Iterable[float]) -> np.ndarray:
    """The finite values: one NaN return (NaN in the data) must not blank every statistic."""
    values = np.asarray(list(returns), dtype=np.float64)
    return values[np.isfinite(values)]


def return_stats(returns: Iterable[float]) -> dict:
    """min / median / max / mean / std (population) of the finite episode returns, and their
    count; ``non_finite`` counts the others when there are any."""
    everything = np.asarray(list(returns), dtype=np.float64)
    values = finite(everything)
    left_out = {"non_finite": int(everything.size - values.size)} if values.size < everything.size else {}
    if values.size == 0:
        return {"episodes": 0, "min": None, "median": None, "max": None, "mean": None, "std": None, **left_out}
    return {
        "episodes": int(values.size),
        "min": float(values.min()),
        "median": float(np.median(values)),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "std": float(values.std()),
        **left_out,
    }


def histogram(returns: Iterable[float], bins: int = 10, width: int = 40) -> str:
    """Finite episode returns as text bars, one line per bin: ``[lo, hi)  count  ####``."""
    values = finite(returns)
    if values.size == 0:
        return "(no episodes)"
    low, high = float(values.min()), float(values.max())
    if high == low:
        return f"[{low:10.1f}, {high:10.1f}] {values.size:7d} " + "#" * width
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    peak = max(int(counts.max()), 1)
    lines = []
    for i, count in enumerate(counts):
        close = "]" if i == len(counts) - 1 else ")"
        bar = "#" * int(round(width * count / peak))
        if count and not bar:
            bar = "."  # non-empty but below one character
        lines.append(f"[{edges[i]:10.1f}, {edges[i + 1]:10.1f}{close} {int(count):7d} {bar}")
    return "\n".join(lines)


def save_histogram_png(returns: Iterable[float], path: str, title: str | None = None, bins: int = 30) -> str:
    """Write a histogram of episode returns to ``path`` (matplotlib's Agg canvas)."""
    # an Agg canvas on a bare Figure: no pyplot, so the caller's backend stays untouched
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = finite(returns)
    fig = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.hist(values, bins=bins, color="#4C72B0", edgecolor="white")
    ax.set_xlabel("episode return")
    ax.set_ylabel("episodes")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path
