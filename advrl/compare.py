"""Compare runs: read run folders, group their seeds, tabulate and plot them.

    advrl compare runs/td3bc runs/a2pr                 # group by recipe name (and dataset)
    advrl compare plain=runs/td3bc tuned=runs/tuned --plot curves.png --json summary.json
    advrl compare runs/ --profile profile.png --reps 5000

Each run is summarised by one score: its ``final_eval`` record (``eval.final_episodes`` episodes
after the last step) when it has one, else the mean of its last N evaluations (``--last``, else
the recipe's ``eval.last_n``). Per group: the interquartile mean and the mean of those scores
with stratified bootstrap 95 % confidence intervals, and the probability that a run of one
group scores above a run of another (``advrl.stats``, after Agarwal et al. 2021).

A run folder is one with ``recipe.yaml`` and ``metrics.jsonl``; its offline-to-online phase, if
any, is its ``finetune/`` subfolder, whose evaluations continue the x axis after the offline
ones. A run that died with an exception left ``error.txt`` (its one-line message): it is shown
as failed, not as still running. The noise evaluations ``advrl eval`` saved in a run
(``eval_noise.jsonl``) make a robustness table: per group and noise level, the IQM and mean of
the runs' scores with the same bootstrap CIs. The benchmark harness and ``advrl report``
report with the same functions.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from advrl import stats

# The last evaluation alone swings widely on mixed datasets (TD3+BC on random-medium-expert
# Hopper: 98 -> 17 within 20k steps), so the table also gives each seed's mean over its last
# few evaluations: a steadier summary of where a run ended.
LAST_EVALS = 3
BOOTSTRAP_SEED = 0  # one fixed seed: the same runs give the same intervals every time

# recipe keys that do not change what is learned: runs that differ only in these are seeds
# of one configuration
OPERATIONAL_KEYS = ("seed", "train.device", "train.checkpoint_every", "train.log_every", "dataset.download", "log.")
ERROR_FILE = "error.txt"  # written by the trainer when a run dies with an exception (advrl.learner.trainer)
NOISE_FILE = "eval_noise.jsonl"  # written by `advrl eval` (advrl.run.NOISE_FILE)


class CompareError(ValueError):
    """A path that holds no run, or a label given twice; the message says which."""


def read_records(path: Path, kind: str) -> list[dict]:
    """The ``kind`` records of a metrics.jsonl; a line cut short by an interruption is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("kind") == kind:
            rows.append(record)
    return rows


@dataclass
class RunRecord:
    """What a comparison needs of one run: its curve, its end, its speed, its data."""

    path: Path
    recipe: dict | None
    curve: list[tuple[int, float]]  # (step, score); an online phase continues after the offline steps
    has_scores: bool  # normalised scores (False: returns, an environment advrl has no references for)
    finished: bool
    online_phase: bool
    offline_done: bool
    offline_final: float | None  # last offline evaluation of a run with an online phase
    online_start: int | None = None  # the x at which the online phase's curve begins
    speeds: list[float] = field(default_factory=list)
    preparation_seconds: float | None = None
    dataset: dict | None = None  # the run's `kind: dataset` record (id, size, fingerprint)
    final_eval: dict | None = None  # the run's `kind: final_eval` record (of its last phase)
    error: str | None = None  # the one-line message of the exception the run died with
    noise: list[dict] = field(default_factory=list)  # `advrl eval` results saved in the run

    @property
    def status(self) -> str:
        return "failed" if self.error else "finished" if self.finished else "unfinished"

    def noise_scores(self) -> dict[tuple[str, float], float]:
        """(noise space, level) -> score of the run's latest evaluated checkpoint; of several
        evaluations of one level (other episode counts or seeds), the last one saved."""
        if not self.noise:
            return {}
        step = max(r["step"] for r in self.noise)
        budget = ((self.recipe or {}).get("train") or {}).get("steps")
        if isinstance(budget, int) and step < budget:  # evaluated before the run was grown: not its end any more
            return {}
        return {(r["noise_space"], float(r["obs_noise"])): _score(r, self.has_scores and "score_mean" in r)
                for r in self.noise if r["step"] == step}

    @property
    def name(self) -> str:
        return str(self.recipe.get("name", self.path.name)) if self.recipe else self.path.name

    @property
    def dataset_id(self) -> str:
        if self.dataset and self.dataset.get("id"):
            return str(self.dataset["id"])
        return str(self.recipe.get("dataset", {}).get("id", "?")) if self.recipe else "?"

    @property
    def seed(self):
        return self.recipe.get("seed") if self.recipe else None

    @property
    def last_n(self) -> int:
        """The recipe's ``eval.last_n`` (runs from before it: LAST_EVALS)."""
        value = ((self.recipe or {}).get("eval") or {}).get("last_n")
        return int(value) if isinstance(value, int) and value > 0 else LAST_EVALS

    def last_mean(self, last: int | None = None) -> float | None:
        last = last or self.last_n
        return float(np.mean([score for _, score in self.curve[-last:]])) if self.curve else None

    def score(self, last: int | None = None) -> tuple[float | None, str]:
        """The run's score for statistics and where it comes from: its final evaluation when it
        has one, else the mean of its last evaluations."""
        if self.final_eval is not None:
            return _score(self.final_eval, self.has_scores), f"final eval ({self.final_eval.get('episodes', '?')} ep.)"
        return self.last_mean(last), f"last {last or self.last_n} mean"


def _recipe(folder: Path) -> dict | None:
    path = folder / "recipe.yaml"
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def _reached_budget(folder: Path, recipe: dict | None, online: bool) -> bool:
    """Whether the run's records reach the steps its recipe asked for (online steps for online
    and fine-tuning runs); False when the folder has no recipe to say."""
    if recipe is None:
        return False
    steps = recipe.get("online" if online else "train", {}).get("steps")
    recorded = [r["step"] for kind in ("train", "eval") for r in read_records(folder / "metrics.jsonl", kind)]
    return isinstance(steps, (int, float)) and bool(recorded) and max(recorded) >= steps


def _score(record: dict, use_scores: bool) -> float:
    return float(record["score_mean"] if use_scores else record["return_mean"])


def read_error(folder: Path) -> str | None:
    """The first line of the run's error.txt: why it stopped, when it died with an exception."""
    path = folder / ERROR_FILE
    if not path.is_file():
        return None
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[0] if lines else "(no message)"


def noise_key(record: dict) -> tuple:
    """What makes two noise evaluations the same one (computed once): checkpoint step, level,
    space, episodes and evaluation seed."""
    return (int(record["step"]), float(record["obs_noise"]), str(record["noise_space"]), int(record["episodes"]),
            int(record["seed"]))


def read_noise(folder: Path) -> list[dict]:
    """The noise evaluations `advrl eval` saved in the run (advrl.run.read_noise_results, read
    here without importing torch)."""
    path = folder / NOISE_FILE
    latest: dict[tuple, dict] = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
            key = noise_key(record)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        latest[key] = record  # a record evaluated again (--force) replaces the earlier one
    return list(latest.values())


def read_run(path: str | Path, *, online_phase: bool | None = None, offline_done: bool | None = None,
             finished: bool | None = None) -> RunRecord:
    """One run's records. Whether it finished (each phase) is read from its steps against its
    recipe's budget, or from the harness's DONE markers; a caller that knows better (the harness,
    for runs it archived without recipes) passes it."""
    path = Path(path)
    metrics = path / "metrics.jsonl"
    if not metrics.exists() and finished is None and not (path / ERROR_FILE).exists():
        raise CompareError(f"{path} is not a run folder (no metrics.jsonl); pass a folder `advrl train` wrote, or one above such folders.")
    recipe = _recipe(path)
    online_dir = path / "finetune"
    online_metrics = online_dir / "metrics.jsonl"
    if online_phase is None:
        online_phase = online_metrics.exists()
    evals = read_records(metrics, "eval")
    online_evals = read_records(online_metrics, "eval") if online_phase else []
    # the run ends with its last phase: an offline final evaluation does not stand for a fine-tuned run
    final_evals = read_records(online_metrics if online_phase else metrics, "final_eval")
    has_scores = all("score_mean" in r for r in evals + online_evals + final_evals)
    if offline_done is None:
        online_run = (path / "offline_run").exists() or str((recipe or {}).get("dataset", {}).get("id", "")).startswith("online:")
        offline_done = (path / "OFFLINE_DONE").exists() or _reached_budget(path, recipe, online_run)
    error = read_error(online_dir if online_phase and (online_dir / ERROR_FILE).exists() else path)
    if error is not None:
        finished = False
    if finished is None:
        if (path / "DONE").exists():
            finished = True
        elif online_phase:
            finished = offline_done and _reached_budget(online_dir, _recipe(online_dir), online=True)
        else:
            finished = offline_done
    curve = [(int(r["step"]), _score(r, has_scores)) for r in evals]
    offline_final = curve[-1][1] if online_phase and offline_done and curve else None
    online_start = None
    if online_evals and curve:  # the online phase's x axis continues after the offline steps
        online_start = curve[-1][0]
        curve += [(online_start + int(r["step"]), _score(r, has_scores)) for r in online_evals]
    preparation = read_records(metrics, "preparation")  # e.g. the IQL pre-training of SSAR's selector
    dataset = read_records(metrics, "dataset")
    return RunRecord(
        path=path,
        recipe=recipe,
        curve=curve,
        has_scores=has_scores,
        finished=bool(finished),
        online_phase=bool(online_phase),
        offline_done=bool(offline_done),
        offline_final=offline_final,
        online_start=online_start,
        speeds=[r["steps_per_s"] for r in read_records(metrics, "train") if "steps_per_s" in r],
        preparation_seconds=sum(r.get("pretrain_seconds", r["seconds"]) for r in preparation) if preparation else None,
        dataset=dataset[0] if dataset else None,
        final_eval=final_evals[-1] if final_evals else None,
        error=error,
        noise=read_noise(path),
    )


def find_runs(path: str | Path) -> list[Path]:
    """Run folders at or below ``path``, sorted; fine-tuning phases belong to their offline run."""
    path = Path(path)
    if not path.exists():
        raise CompareError(f"{path} does not exist.")
    # a run that failed before its first record has error.txt but no metrics.jsonl: still a run
    marks = ("metrics.jsonl", ERROR_FILE)
    candidates = [path] if any((path / mark).exists() for mark in marks) else []
    candidates += sorted({p.parent for mark in marks for p in path.rglob(mark) if p.parent != path})
    runs = []
    for folder in candidates:
        is_phase = folder.name == "finetune" and (folder.parent / "metrics.jsonl").exists()
        if (folder / "recipe.yaml").exists() and not (is_phase and folder != path):
            runs.append(folder)
    if not runs:
        raise CompareError(f"no runs under {path} (a run folder holds recipe.yaml and metrics.jsonl).")
    return runs


def group_runs(arguments: list[str]) -> dict[str, list[RunRecord]]:
    """``[LABEL=]PATH`` arguments -> runs by label. Unlabelled runs are grouped by recipe name,
    and by dataset too when they span several."""
    labelled: dict[str, list[RunRecord]] = {}
    unlabelled: list[RunRecord] = []
    for argument in arguments:
        label, sep, where = argument.partition("=")
        if not sep or Path(argument).exists():
            label, where = "", argument
        records = [read_run(folder) for folder in find_runs(where)]
        if label:
            labelled.setdefault(label, []).extend(records)
        else:
            unlabelled.extend(records)
    several_datasets = len({r.dataset_id for r in unlabelled}) > 1
    by_recipe: dict[str, list[RunRecord]] = {}
    for record in unlabelled:
        label = f"{record.name} on {record.dataset_id}" if several_datasets else record.name
        by_recipe.setdefault(label, []).append(record)
    groups: dict[str, list[RunRecord]] = {}
    for label, records in by_recipe.items():
        groups.update(_split_by_configuration(label, records))
    for label, records in labelled.items():
        if label in groups:
            raise CompareError(f"label {label!r} names both labelled and recipe-grouped runs; choose another label.")
        groups[label] = records
    return groups


def _split_by_configuration(label: str, runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """Runs of one recipe that differ in more than the seed (a sweep, an ablation by override)
    are separate groups, labelled by the differing keys as overrides: ``td3bc (alpha=5)``."""
    differing = recipe_differences(runs)
    if not differing:
        return {label: runs}
    groups: dict[str, list[RunRecord]] = {}
    spellings: dict[tuple[str, str], str] = {}  # one text per value: 1e12 and 1.0e12 stay one group
    for run in runs:
        flat = _flatten(run.recipe) if run.recipe is not None else {}
        spelled = _folder_overrides(run.path)
        texts = [spellings.setdefault((key, repr(flat.get(key))), _spelling(spelled.get(key), flat.get(key))) for key in differing]
        values = ", ".join(f"{key}={text}" for key, text in zip(differing, texts, strict=True))
        groups.setdefault(f"{label} ({values})", []).append(run)
    return groups


def _folder_overrides(folder: Path) -> dict[str, str]:
    """``lr=1e12,seed=0`` -> {lr: '1e12', seed: '0'}: a sweep names each run's folder by its
    overrides as they were typed, which the saved recipe no longer holds (1e12 is saved as
    1000000000000.0)."""
    from advrl.sweep import split_values

    parts = [part.partition("=") for part in split_values(folder.name)]
    return {key: text for key, sep, text in parts if sep and key}


def _spelling(text: str | None, value) -> str:
    """The override's text when it means the recipe's value (a folder renamed by hand does not
    get to relabel a run), else the value."""
    if text is None:
        return str(value)
    import yaml

    try:
        if yaml.safe_load(text) == value or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                             and float(text) == float(value)):
            return text
    except (ValueError, yaml.YAMLError):
        pass
    return str(value)


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    return (float(np.mean(values)), float(np.std(values))) if values else (None, None)


@dataclass
class Summary:
    """One group's runs and their statistics. ``last`` overrides the runs' ``eval.last_n``;
    ``improvement`` (P(this group > other), with CI, by other label) is filled by
    :func:`compare_groups`, which needs every group."""

    label: str
    runs: list[RunRecord]
    last: int | None = None
    reps: int = stats.DEFAULT_REPS
    seed: int = BOOTSTRAP_SEED
    improvement: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    @property
    def n_last(self) -> int:
        if self.last:
            return self.last
        values = {r.last_n for r in self.runs}
        return values.pop() if len(values) == 1 else LAST_EVALS

    @property
    def finished(self) -> list[RunRecord]:
        return [r for r in self.runs if r.finished and (r.curve or r.final_eval)]

    @property
    def failed(self) -> list[RunRecord]:
        return [r for r in self.runs if r.error]

    def noise_strata(self) -> dict[tuple[str, float], dict[str, list[float]]]:
        """(noise space, level) -> the finished runs' scores under that noise, by dataset (the
        bootstrap's strata, as :meth:`strata`)."""
        table: dict[tuple[str, float], dict[str, list[float]]] = {}
        for run in self.finished:
            for level, score in run.noise_scores().items():
                table.setdefault(level, {}).setdefault(run.dataset_id, []).append(score)
        return dict(sorted(table.items()))

    @cached_property
    def noise_estimates(self) -> dict[tuple[str, float], dict[str, tuple[float, float, float]]]:
        """(noise space, level) -> IQM and mean of the run scores under that noise, with CIs."""
        return {level: {name: stats.interval_estimate(list(strata.values()), statistic, self.reps, self.seed)
                        for name, statistic in (("iqm", stats.iqm), ("mean", stats.mean))}
                for level, strata in self.noise_strata().items()}

    def noise_dict(self) -> dict[str, dict[str, dict]]:
        """noise space -> level -> runs, per-dataset scores, IQM and mean with CIs (for --json)."""
        out: dict[str, dict[str, dict]] = {}
        strata = self.noise_strata()
        for (space, level), estimates in self.noise_estimates.items():
            out.setdefault(space, {})[f"{level:g}"] = {
                "runs": sum(len(v) for v in strata[(space, level)].values()), "scores": strata[(space, level)],
                **{name: estimates[name][0] for name in estimates},
                **{f"{name}_ci": list(estimates[name][1:]) for name in estimates}}
        return out

    def strata(self) -> dict[str, list[float]]:
        """The finished runs' scores (:meth:`RunRecord.score`) by dataset: the bootstrap's strata."""
        by_dataset: dict[str, list[float]] = {}
        for run in self.finished:
            score, _ = run.score(self.n_last)
            if score is not None:
                by_dataset.setdefault(run.dataset_id, []).append(score)
        return by_dataset

    def score_source(self) -> str:
        """Which score the statistics use: 'final eval (100 ep.)', or how many runs use which."""
        sources = Counter(run.score(self.n_last)[1] for run in self.finished)
        if len(sources) == 1:
            return next(iter(sources))
        return ", ".join(f"{source}: {count}" for source, count in sources.items()) or "—"

    @cached_property
    def estimates(self) -> dict[str, tuple[float, float, float]]:
        """IQM and mean of the run scores with their bootstrap CIs; {} without finished runs."""
        strata = list(self.strata().values())
        if not strata:
            return {}
        return {name: stats.interval_estimate(strata, statistic, self.reps, self.seed)
                for name, statistic in (("iqm", stats.iqm), ("mean", stats.mean))}

    def as_dict(self) -> dict:
        finals = [r.curve[-1][1] for r in self.finished if r.curve]
        settled = [r.last_mean(self.n_last) for r in self.finished if r.curve]
        offline = [r.offline_final for r in self.runs if r.offline_final is not None]
        speeds = [s for r in self.runs for s in r.speeds]
        prepared = [r.preparation_seconds for r in self.runs if r.preparation_seconds is not None]
        final_mean, final_std = _mean_std(finals)
        settled_mean, settled_std = _mean_std(settled)
        offline_mean, offline_std = _mean_std(offline)
        estimates = self.estimates
        return {
            "runs": len(self.runs),
            "finished_seeds": len(self.finished),
            "failed": {str(r.path): r.error for r in self.failed},
            "score_source": self.score_source(),
            "scores": self.strata(),
            **{f"score_{name}": estimates[name][0] if estimates else None for name in ("iqm", "mean")},
            **{f"score_{name}_ci": list(estimates[name][1:]) if estimates else None for name in ("iqm", "mean")},
            "probability_of_improvement": {other: {"p": p, "ci": [low, high]} for other, (p, low, high) in self.improvement.items()},
            "bootstrap": {"reps": self.reps, "seed": self.seed, "confidence": stats.CONFIDENCE},
            "final_score_mean": final_mean,
            "final_score_std": final_std,
            f"last{self.n_last}_score_mean": settled_mean,
            f"last{self.n_last}_score_std": settled_std,
            "offline_seeds": len(offline),
            "offline_score_mean": offline_mean,
            "offline_score_std": offline_std,
            "steps_per_s_median": float(np.median(speeds)) if speeds else None,
            "preparation_seconds_mean": float(np.mean(prepared)) if prepared else None,
            "noise": self.noise_dict(),
        }


def compare_groups(summaries: list[Summary]) -> None:
    """P(X > Y) for every pair of groups, on the datasets both have runs on (a pair without one
    gets none); P(Y > X) = 1 - P(X > Y), since ties count one half, and so is its interval."""
    for i, first in enumerate(summaries):
        for second in summaries[i + 1:]:
            a, b = first.strata(), second.strata()
            common = [d for d in a if d in b]
            if not common:
                continue
            p, low, high = stats.probability_of_improvement([a[d] for d in common], [b[d] for d in common], first.reps, first.seed)
            first.improvement[second.label] = (p, low, high)
            second.improvement[first.label] = (1 - p, 1 - high, 1 - low)


def format_mean_std(mean, std) -> str:
    return "—" if mean is None else f"{mean:.1f} ± {std:.1f}"


def format_interval(estimate, digits: int = 1) -> str:
    """'64.0 [45.1, 81.6]' from (point, low, high); '—' for none."""
    if not estimate:
        return "—"
    point, low, high = estimate
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def markdown_table(summaries: list[Summary], online: bool | None = None) -> str:
    """One row per group: seeds finished, which score per run the statistics use, its IQM and
    mean with 95 % CIs, the last evaluation and the mean of the last evaluations (mean ± std over
    seeds), the offline phase's final score (when any run has an online phase, or ``online``),
    steps/s and pre-training cost."""
    last = summaries[0].n_last if summaries else LAST_EVALS
    runs = [r for s in summaries for r in s.runs]
    metric = "normalised score" if all(r.has_scores for r in runs) else "return"
    online = any(r.online_phase for r in runs) if online is None else online
    offline_head = "| offline phase: seeds, final score " if online else ""
    lines = [
        f"| run | seeds done | {metric} per run | IQM [95 % CI] | mean [95 % CI] | last evaluation "
        f"| mean of the last {last} evaluations {offline_head}| gradient steps/s (median) | pre-training s (mean) |",
        "| --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if online else "") + " --- | --- |",
    ]
    for summary in summaries:
        s = summary.as_dict()
        done = str(s["finished_seeds"]) if s["finished_seeds"] == s["runs"] else f"{s['finished_seeds']} of {s['runs']}"
        if summary.failed:  # a failed run is not one still going: say so in its row
            done += f", {len(summary.failed)} failed"
        cells = [summary.label, done, s["score_source"], format_interval(summary.estimates.get("iqm")),
                 format_interval(summary.estimates.get("mean")), format_mean_std(s["final_score_mean"], s["final_score_std"]),
                 format_mean_std(s[f"last{summary.n_last}_score_mean"], s[f"last{summary.n_last}_score_std"])]
        if online:
            cells.append(_offline_phase(summary, s))
        cells.append(f"{s['steps_per_s_median']:.1f}" if s["steps_per_s_median"] else "—")
        cells.append(f"{s['preparation_seconds_mean']:.0f}" if s["preparation_seconds_mean"] is not None else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def improvement_table(summaries: list[Summary]) -> str:
    """P(row > column) with its 95 % CI; '' when fewer than two groups have scores."""
    scored = [s for s in summaries if s.estimates]
    if len(scored) < 2:
        return ""
    lines = ["| P(row > column) | " + " | ".join(s.label for s in scored) + " |", "| --- |" + " --- |" * len(scored)]
    for row in scored:
        cells = ["—" if column is row else format_interval(row.improvement.get(column.label), 2) for column in scored]
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def failed_runs(summaries: list[Summary]) -> str:
    """One line per run that died with an exception: ``failed: <message>`` under its group."""
    return "\n".join(f"- {s.label}: {run.path}: failed: {run.error}" for s in summaries for run in s.failed)


def noise_levels(summaries: list[Summary]) -> dict[str, list[float]]:
    """noise space -> the levels any group has results for, ascending."""
    levels: dict[str, set[float]] = {}
    for summary in summaries:
        for space, level in summary.noise_strata():
            levels.setdefault(space, set()).add(level)
    return {space: sorted(values) for space, values in sorted(levels.items())}


def robustness_table(summaries: list[Summary], space: str) -> str:
    """Rows: groups; columns: noise levels of ``space``; cells: IQM [95 % CI] of the run scores
    under that noise (n runs). '' when no group has noise results in that space."""
    levels = noise_levels(summaries).get(space)
    if not levels:
        return ""
    lines = ["| run | " + " | ".join(f"σ={level:g}" for level in levels) + " |", "| --- |" + " --- |" * len(levels)]
    for summary in summaries:
        strata, estimates = summary.noise_strata(), summary.noise_estimates
        if not any((space, level) in strata for level in levels):
            continue
        cells = [f"{format_interval(estimates[(space, level)]['iqm'])} ({sum(map(len, strata[(space, level)].values()))})"
                 if (space, level) in strata else "—" for level in levels]
        lines.append(f"| {summary.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def robustness_text(summaries: list[Summary]) -> str:
    """The robustness tables of every noise space the runs were evaluated in, with a heading
    each; '' when no run has noise results."""
    runs = [r for s in summaries for r in s.runs]
    metric = "normalised score" if all(r.has_scores for r in runs) else "return"
    parts = []
    for space in noise_levels(summaries):
        where = ("added to raw observations, before standardisation" if space == "raw"
                 else "in units of each dimension's dataset std (standardised observations)")
        parts.append(f"Robustness to observation noise (`advrl eval`, σ {where}): {metric} per run under noise, "
                     f"IQM [95 % CI] (runs), finished runs at their last checkpoint:\n\n" + robustness_table(summaries, space))
    return "\n\n".join(parts)


def statistics_note(summaries: list[Summary]) -> str:
    reps, seed = (summaries[0].reps, summaries[0].seed) if summaries else (stats.DEFAULT_REPS, BOOTSTRAP_SEED)
    return (f"Score per run: its final evaluation when it has one, else the mean of its last evaluations. "
            f"IQM: mean of the middle 50 % of the run scores (all of them below 4 runs). 95 % CIs: "
            f"percentile bootstrap over runs, stratified by dataset, {reps} resamples, seed {seed}; "
            f"P(X > Y): chance that a run of X scores above a run of Y on the same dataset "
            f"(Agarwal et al. 2021, Deep RL at the Edge of the Statistical Precipice).")


def report_text(summaries: list[Summary], online: bool | None = None) -> str:
    """The score table, the pairwise P(X > Y) table, and how they were computed."""
    compare_groups(summaries)
    parts = [markdown_table(summaries, online)]
    improvement = improvement_table(summaries)
    if improvement:
        parts.append("Probability of improvement, P(row > column) [95 % CI]:\n\n" + improvement)
    robustness = robustness_text(summaries)
    if robustness:
        parts.append(robustness)
    failed = failed_runs(summaries)
    if failed:
        parts.append("Runs that stopped with an error (resume them with `advrl train --resume RUN` once fixed):\n\n" + failed)
    parts.append(statistics_note(summaries))
    return "\n\n".join(parts)


def _offline_phase(summary: Summary, s: dict) -> str:
    """The offline-phase cell; a group without an online phase says so rather than '0: —' (its
    final score is the offline one)."""
    if not any(r.online_phase for r in summary.runs):
        return "no online phase"
    return f"{s['offline_seeds']}: {format_mean_std(s['offline_score_mean'], s['offline_score_std'])}"


def dataset_builds(named_runs: list[tuple[str, RunRecord]]) -> str:
    """A warning when runs of one dataset id did not all train on one build of it (an id rebuilt
    elsewhere, e.g. with ``--retrain``, can hold other data); '' when they did."""
    builds: dict[str, dict[str, list[str]]] = {}  # dataset id -> build -> run names
    for name, run in named_runs:
        if run.dataset or run.finished:  # a finished run without the record predates it
            data = run.dataset
            build = f"{data['fingerprint']} ({data['n_episodes']} episodes)" if data else "not recorded"
            builds.setdefault(run.dataset_id, {}).setdefault(build, []).append(name)
    if all(len(by_build) <= 1 for by_build in builds.values()):
        return ""
    prefix = len(builds) > 1
    parts = [f"- {f'{dataset_id} ' if prefix else ''}{build}: {', '.join(names)}"
             for dataset_id, by_build in builds.items() if len(by_build) > 1 for build, names in by_build.items()]
    return "The runs did not all train on the same build of the dataset (content fingerprint):\n\n" + "\n".join(parts)


def _flatten(tree, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        flat = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: tree}


def recipe_differences(runs: list[RunRecord]) -> list[str]:
    """Recipe keys (other than the seed and run management) whose values differ across the
    runs of one group: a group that mixes configurations averages things that are not seeds."""
    flats = [_flatten(r.recipe) for r in runs if r.recipe is not None]
    if len(flats) < 2:
        return []
    keys = sorted(set().union(*flats))
    ignored = tuple(OPERATIONAL_KEYS)
    return [k for k in keys if not k.startswith(ignored) and len({repr(f.get(k)) for f in flats}) > 1]


def plot_curves(summaries: list[Summary], path: str | Path, title: str, band: str = "std") -> None:
    """Each group's mean over its seeds, on the evaluation steps all its seeds reached, with a
    band of +- std over seeds (``band="std"``) or the 95 % bootstrap CI of the mean (``"ci"``,
    seeds resampled as whole curves: :func:`advrl.stats.curve_band`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(figure)
    axis = figure.add_subplot(1, 1, 1)
    runs = [r for s in summaries for r in s.runs]
    for summary in summaries:
        curves = [r.curve for r in summary.runs if r.curve and not r.error]  # a failed run's curve would cut the others short
        if not curves:
            continue
        length = min(len(c) for c in curves)
        steps = np.array([step for step, _ in curves[0][:length]])
        scores = np.array([[score for _, score in c[:length]] for c in curves])
        if band == "ci":
            mean, low, high = stats.curve_band(scores, stats.mean, summary.reps, summary.seed)
        else:
            mean, std = scores.mean(0), scores.std(0)
            low, high = mean - std, mean + std
        axis.plot(steps, mean, label=f"{summary.label} ({len(curves)} seeds)")
        axis.fill_between(steps, low, high, alpha=0.2)
    online = any(r.online_phase for r in runs)
    for start in sorted({r.online_start for r in runs if r.online_start is not None}):
        axis.axvline(start, color="grey", linestyle="--", linewidth=0.8)
    axis.set_xlabel("gradient steps (offline; online environment steps after the dashed line)" if online
                    else "gradient steps")
    metric = "normalised score" if all(r.has_scores for r in runs) else "return"
    axis.set_ylabel(f"{metric} (mean over seeds, 95 % CI)" if band == "ci" else metric)
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_scores(summaries: list[Summary], path: str | Path, title: str) -> None:
    """Final-score comparison: each finished run's score (dots) and the group's IQM with its
    95 % bootstrap CI (bar), one column per group."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scored = [s for s in summaries if s.estimates]
    if not scored:
        raise CompareError("no finished run has a score: nothing to plot.")
    figure = Figure(figsize=(max(5.0, 1.6 * len(scored) + 2), 4.5))
    FigureCanvasAgg(figure)
    axis = figure.add_subplot(1, 1, 1)
    for x, summary in enumerate(scored):
        values = [v for stratum in summary.strata().values() for v in stratum]
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
        axis.scatter(x + np.asarray(jitter), values, s=18, alpha=0.6, color="grey", zorder=2)
        point, low, high = summary.estimates["iqm"]
        axis.errorbar([x], [point], yerr=[[point - low], [high - point]], fmt="o", capsize=6, markersize=8, zorder=3)
    axis.set_xticks(range(len(scored)), [s.label for s in scored], rotation=20, ha="right")
    axis.set_xlim(-0.6, len(scored) - 0.4)
    runs = [r for s in scored for r in s.runs]
    axis.set_ylabel(f"{'normalised score' if all(r.has_scores for r in runs) else 'return'} per run; IQM [95 % CI]")
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_noise(summaries: list[Summary], path: str | Path, title: str) -> None:
    """Score under observation noise: each group's IQM per noise level with its 95 % CI band,
    one panel per noise space."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    spaces = noise_levels(summaries)
    if not spaces:
        raise CompareError("no finished run has noise evaluations (advrl eval --obs-noise ...): nothing to plot.")
    figure = Figure(figsize=(6 * len(spaces), 4.5))
    FigureCanvasAgg(figure)
    for index, space in enumerate(spaces, start=1):
        axis = figure.add_subplot(1, len(spaces), index)
        for summary in summaries:
            points = sorted((level, e["iqm"]) for (s, level), e in summary.noise_estimates.items() if s == space)
            if not points:
                continue
            levels = [level for level, _ in points]
            line, = axis.plot(levels, [e[0] for _, e in points], marker="o", label=summary.label)
            axis.fill_between(levels, [e[1] for _, e in points], [e[2] for _, e in points], alpha=0.2, color=line.get_color())
        axis.set_xlabel(f"observation noise σ ({'raw observations' if space == 'raw' else 'in dataset stds'})")
        axis.set_ylabel("IQM of run scores [95 % CI]")
        axis.set_title(f"{title}: {space} noise")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_profile(summaries: list[Summary], path: str | Path, title: str) -> None:
    """Performance profiles: the fraction of each group's runs whose score is above tau, for tau
    across the range of all scores, with stratified bootstrap 95 % bands (Agarwal et al. 2021)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scored = [(s, list(s.strata().values())) for s in summaries]
    scored = [(s, strata) for s, strata in scored if strata]
    if not scored:
        raise CompareError("no finished run has a score: nothing to profile.")
    everything = np.concatenate([np.concatenate(strata) for _, strata in scored])
    taus = np.linspace(min(0.0, everything.min()), everything.max() * 1.02 + 1e-9, 201)
    figure = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(figure)
    axis = figure.add_subplot(1, 1, 1)
    for summary, strata in scored:
        fraction, low, high = stats.performance_profile(strata, taus, summary.reps, summary.seed)
        line, = axis.step(taus, fraction, where="post", label=f"{summary.label} ({sum(len(x) for x in strata)} runs)")
        axis.fill_between(taus, low, high, step="post", alpha=0.2, color=line.get_color())
    runs = [r for s, _ in scored for r in s.runs]
    axis.set_xlabel(f"{'normalised score' if all(r.has_scores for r in runs) else 'return'} threshold tau")
    axis.set_ylabel("fraction of runs with score > tau")
    axis.set_ylim(-0.02, 1.02)
    axis.set_title(title)
    axis.legend(loc="lower left")  # profiles fall from 1 at low thresholds: that corner stays empty
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def compare(arguments: list[str], last: int | None = None, reps: int = stats.DEFAULT_REPS) -> tuple[list[Summary], str]:
    """Summaries of the grouped runs and the report text: the tables, then any warnings.
    ``last`` (default: each run's ``eval.last_n``) and ``reps`` (bootstrap resamples) must be
    positive."""
    if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 1):
        raise CompareError(f"--last must be a positive number of evaluations, not {last!r}.")
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise CompareError(f"--reps must be a positive number of bootstrap resamples, not {reps!r}.")
    groups = group_runs(arguments)
    summaries = [Summary(label, runs, last, reps) for label, runs in groups.items()]
    text = report_text(summaries)
    datasets = sorted({r.dataset_id for runs in groups.values() for r in runs})
    notes = [f"dataset: {datasets[0]}"] if len(datasets) == 1 else []
    for label, runs in groups.items():
        differing = recipe_differences(runs)
        if differing:
            shown = ", ".join(differing[:6]) + (f" and {len(differing) - 6} more" if len(differing) > 6 else "")
            notes.append(f"warning: the runs of {label!r} differ in {shown}: they are not seeds of one "
                         f"configuration; give each its own label (LABEL=PATH).")
    builds = dataset_builds([(str(r.path), r) for runs in groups.values() for r in runs])
    if builds:
        notes.append(builds)
    return summaries, "\n\n".join([text, *notes])
