"""``advrl report DIR``: a study's runs written up in one Markdown file with its figures.

    advrl report runs/ablation                       # -> runs/ablation/report.md and PNGs beside it
    advrl report base=runs/a2pr no_adv=runs/no_adv --out reports/a2pr --json reports/a2pr/runs.json

Everything is computed by :mod:`advrl.compare` (groups, scores, IQM and mean with stratified
bootstrap CIs, P(X > Y), the noise-robustness table) and :mod:`advrl.stats`; this module only
lays it out: the tables, learning curves with 95 % CI bands across seeds, the final scores per
run beside each group's IQM, the score under observation noise when ``advrl eval`` saved any,
and one line per run (failed runs with their error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from advrl import compare, stats

REPORT_FILE = "report.md"
CURVES_PNG = "learning_curves.png"
SCORES_PNG = "final_scores.png"
PROFILE_PNG = "performance_profile.png"
NOISE_PNG = "noise_robustness.png"


@dataclass
class Report:
    path: Path  # report.md
    figures: list[Path] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # what --json writes: groups, their statistics, per-run values


def default_out(arguments: list[str]) -> Path:
    """The folder of the first PATH (``LABEL=PATH`` or ``PATH``): a study reports into itself."""
    first = arguments[0]
    label, sep, where = first.partition("=")
    return Path(first if not sep or Path(first).exists() else where)


def run_values(summary: compare.Summary) -> list[dict]:
    """Per-seed values of a group: each run's status (and error), score and its source, and
    its scores under noise (space -> level -> score)."""
    rows = []
    for run in summary.runs:
        score, source = run.score(summary.n_last) if run.finished else (None, None)
        noise: dict[str, dict[str, float]] = {}
        for (space, level), value in run.noise_scores().items():
            noise.setdefault(space, {})[f"{level:g}"] = value
        rows.append({"run_dir": str(run.path), "seed": run.seed, "dataset": run.dataset_id, "status": run.status,
                     "error": run.error, "score": score, "score_source": source,
                     "last_step": run.curve[-1][0] if run.curve else None, "noise": noise})
    return rows


def runs_table(summaries: list[compare.Summary]) -> str:
    """One row per run: its group, folder, seed, dataset, status and score."""
    lines = ["| group | run | seed | dataset | status | score |", "| --- | --- | --- | --- | --- | --- |"]
    for summary in summaries:
        for row in run_values(summary):
            status = f"failed: {row['error']}" if row["error"] else row["status"]
            score = "—" if row["score"] is None else f"{row['score']:.1f} ({row['score_source']})"
            lines.append(f"| {summary.label} | {row['run_dir']} | {row['seed']} | {row['dataset']} | {status} | {score} |")
    return "\n".join(lines)


def _figures(summaries: list[compare.Summary], out: Path, title: str) -> list[tuple[str, Path]]:
    """The plots there is something to draw for: (caption, file)."""
    figures = []
    if any(r.curve for s in summaries for r in s.runs):
        compare.plot_curves(summaries, out / CURVES_PNG, title, band="ci")
        figures.append(("Learning curves: mean over seeds with its 95 % bootstrap CI (seeds resampled as whole curves).",
                        out / CURVES_PNG))
    if any(s.estimates for s in summaries):
        compare.plot_scores(summaries, out / SCORES_PNG, title)
        figures.append(("Final scores: each finished run (grey) and the group's IQM with its 95 % CI.", out / SCORES_PNG))
        compare.plot_profile(summaries, out / PROFILE_PNG, title)
        figures.append(("Performance profiles: fraction of runs scoring above each threshold, with 95 % CI bands.",
                        out / PROFILE_PNG))
    if compare.noise_levels(summaries):
        compare.plot_noise(summaries, out / NOISE_PNG, title)
        figures.append(("Score under observation noise (`advrl eval --obs-noise`): IQM of the run scores with its 95 % CI.",
                        out / NOISE_PNG))
    return figures


def write_report(arguments: list[str], out: str | Path | None = None, last: int | None = None,
                 reps: int = stats.DEFAULT_REPS, title: str = "advrl report") -> Report:
    """Group the runs at or below ``arguments`` (``[LABEL=]PATH`` as ``advrl compare``) and write
    ``report.md`` and its PNGs into ``out`` (default: the first PATH)."""
    summaries, text = compare.compare(arguments, last=last, reps=reps)
    out = Path(out) if out is not None else default_out(arguments)
    out.mkdir(parents=True, exist_ok=True)
    figures = _figures(summaries, out, title)
    runs = sum(len(s.runs) for s in summaries)
    parts = [f"# {title}", f"{runs} run(s) in {len(summaries)} group(s), from {', '.join(arguments)}.",
             "## Scores", text]
    for caption, path in figures:
        parts.append(f"![{path.stem}]({path.name})\n\n{caption}")
    parts += ["## Runs", runs_table(summaries)]
    report = out / REPORT_FILE
    report.write_text("\n\n".join(parts) + "\n")
    data = {"groups": {s.label: {**s.as_dict(), "run_values": run_values(s)} for s in summaries},
            "report": str(report), "figures": [str(path) for _, path in figures]}
    return Report(report, [path for _, path in figures], data)
