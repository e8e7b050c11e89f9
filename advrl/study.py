"""An ablation study from one file: variants x datasets x seeds, ``advrl study STUDY.yaml``.

    name: a2pr_vae
    out: runs/a2pr_vae                      # default: a folder named `name` beside the file
    variants:
      - {label: a2pr, recipe: advrl:a2pr.yaml}
      - {label: no_vae, recipe: advrl:a2pr/ablations/no_behavior.yaml, overrides: [eval.episodes=5]}
      - {label: tuned, recipe: {advrl/hopper/medium-v0: advrl:a2pr/hopper-medium.yaml,   # a recipe per dataset
                                advrl/hopper/random-medium-expert-v0: advrl:a2pr.yaml}}
    datasets: [advrl/hopper/random-medium-expert-v0, advrl/hopper/medium-v0]   # or {id: ID, overrides: [...]}
    seeds: [0, 1, 2, 3, 4]
    overrides: [train.steps=100000]         # every run
    evaluations: {noise: [0, 0.05], noise_space: raw, episodes: 10}   # optional, after training

A variant may also give its own ``seeds`` (instead of the study's; the study's may then be
left out when every variant has them) and ``finetune:`` overrides, which add an
offline-to-online phase after the offline one (``advrl finetune RUN_DIR OVERRIDES``, into the
run's ``finetune/`` folder; :class:`advrl.sweep.SweepRun` runs the phases):

      - {label: td3bc, recipe: advrl:td3bc.yaml, seeds: [0, 1], finetune: [online.steps=50000]}

Such a run is finished when its fine-tuning is; stopped during either phase it resumes that
phase. Its offline phase is never extended to a raised ``train.steps`` (its fine-tuning
started from the earlier policy): give the longer budget a new label.

Each run lives in ``OUT/<variant>/<dataset id, / as _>/seed<k>/`` and trains through
:func:`advrl.sweep.execute` (any executor). Every run is validated before anything starts,
and the same command resumes: finished runs are skipped, interrupted ones continue. Extending
the study is editing the file: new seeds, variants or datasets train only their runs, and a
higher ``train.steps`` resumes the finished runs to it (their records kept). Overrides apply
in the order shared, dataset, variant: the most specific wins. Each run's recipe ``name`` is its
variant's label, so ``advrl report OUT`` groups the runs by variant (and dataset).
"""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from advrl import sweep
from advrl.sweep import SweepError, SweepRun

# a TD3+BC step on one CPU core (benchmarks/RESULTS.md, about 100-130 steps/s): the cost
# estimate's speed when no run of the study has measured one yet
DEFAULT_STEPS_PER_S = 100.0
KEYS = {"name", "out", "variants", "datasets", "seeds", "overrides", "evaluations"}
VARIANT_KEYS = {"label", "recipe", "overrides", "seeds", "finetune"}


class StudyError(SweepError):
    """A study file that cannot be run; the message names the entry."""


@dataclass
class StudyRun(SweepRun):
    """A sweep run that knows its place in the study (its variant, dataset and seed)."""

    variant: str = ""
    dataset: str = ""
    seed: int = 0

    @property
    def name(self) -> str:  # shown in logs and errors: the seed folder alone would be ambiguous
        return f"{self.variant}/{self.dataset}/seed{self.seed}"


@dataclass
class Study:
    name: str
    out: Path
    variants: list[dict]
    datasets: list[dict]
    seeds: list[int]  # the study's; a variant's own "seeds" win (seeds_of)
    overrides: list[str] = field(default_factory=list)
    evaluations: dict | None = None


def _strings(value, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise StudyError(f"{where} must be a list of key=value strings.")
    return [str(v) for v in value]


def _variant(entry, base: Path, index: int) -> dict:
    if not isinstance(entry, dict) or not entry.get("label") or not (entry.get("recipe") or entry.get("overrides")):
        raise StudyError(f"variants[{index}] needs a label and a recipe and/or overrides (e.g. {{label: a2pr, recipe: advrl:a2pr.yaml}}).")
    label = str(entry["label"])
    if "/" in label or label.startswith("."):
        raise StudyError(f"variant label {label!r} names a folder: use no '/' and no leading '.'.")
    recipe = entry.get("recipe") or "advrl:base.yaml"
    # a mapping names a recipe per dataset id (a tuned recipe each, as advrl:a2pr/hopper-medium.yaml)
    recipes = {str(k): _recipe_file(str(v), base, label) for k, v in recipe.items()} if isinstance(recipe, dict) \
        else _recipe_file(str(recipe), base, label)
    unknown = set(entry) - VARIANT_KEYS
    if unknown:
        raise StudyError(f"variant {label}: unknown key(s) {', '.join(sorted(unknown))}; a variant has {', '.join(sorted(VARIANT_KEYS))}.")
    finetune = entry.get("finetune")
    if finetune is not None and (not isinstance(finetune, list) or not finetune):
        raise StudyError(f"variant {label}'s finetune must be a non-empty list of key=value strings, e.g. [online.steps=50000].")
    seeds = entry.get("seeds")
    return {"label": label, "recipe": recipes, "overrides": _strings(entry.get("overrides"), f"variant {label}'s overrides"),
            "seeds": None if seeds is None else _seeds(seeds, f"variant {label}'s seeds"),
            "finetune": None if finetune is None else _strings(finetune, f"variant {label}'s finetune")}


def _seeds(value, where: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value) \
            or len(set(value)) < len(value):
        raise StudyError(f"{where} must be a list of distinct integers, e.g. [0, 1, 2].")
    return list(value)


def seeds_of(study: Study, variant: dict) -> list[int]:
    return study.seeds if variant["seeds"] is None else variant["seeds"]


def _recipe_file(recipe: str, base: Path, label: str) -> Path:
    """A recipe reference (``advrl:...``, or a path relative to the study file) as a file."""
    from advrl.recipe import PACKAGED_PREFIX, recipe_path

    path = recipe_path(recipe) if recipe.startswith(PACKAGED_PREFIX) else recipe_path(recipe, base)
    if not path.is_file():
        raise StudyError(f"variant {label}: recipe {recipe} not found ({path}).")
    return path.resolve()


def recipe_for(variant: dict, dataset_id: str) -> Path:
    recipes = variant["recipe"]
    if isinstance(recipes, Path):
        return recipes
    if dataset_id not in recipes:
        raise StudyError(f"variant {variant['label']} names no recipe for dataset {dataset_id} (it has {', '.join(recipes)}).")
    return recipes[dataset_id]


def _dataset(entry, index: int) -> dict:
    if isinstance(entry, str):
        entry = {"id": entry}
    if not isinstance(entry, dict) or not entry.get("id"):
        raise StudyError(f"datasets[{index}] must be a dataset id or {{id: ID, overrides: [...]}}.")
    return {"id": str(entry["id"]), "overrides": _strings(entry.get("overrides"), f"dataset {entry['id']}'s overrides")}


def load(path: str | Path, out: str | Path | None = None) -> Study:
    """Read and check a study file; ``out`` (``--out``) wins over the file's."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study file {path} not found.")
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as err:  # YAML syntax: its first line says where
        raise StudyError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(raw, dict):
        raise StudyError(f"{path} is not a study (a mapping with name, variants, datasets, seeds).")
    unknown = set(raw) - KEYS
    if unknown:
        raise StudyError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; a study has {', '.join(sorted(KEYS))}.")
    for key in ("name", "variants", "datasets"):
        if not raw.get(key):
            raise StudyError(f"{path} needs {key}.")
    if not isinstance(raw["variants"], list):
        raise StudyError(f"{path}: variants must be a list of {{label: ..., recipe: ...}}.")
    variants = [_variant(v, path.parent, i) for i, v in enumerate(raw["variants"])]
    labels = [v["label"] for v in variants]
    if len(set(labels)) < len(labels):
        raise StudyError(f"{path}: two variants share a label; each needs its own (they name folders).")
    if raw.get("seeds") is None and any(v["seeds"] is None for v in variants):
        raise StudyError(f"{path} needs seeds (or seeds in every variant).")
    seeds = [] if raw.get("seeds") is None else _seeds(raw["seeds"], f"{path}: seeds")
    folder = Path(out) if out else (path.parent / str(raw["out"]) if raw.get("out") else path.parent / str(raw["name"]))
    return Study(str(raw["name"]), folder, variants, [_dataset(d, i) for i, d in enumerate(raw["datasets"])], seeds,
                 _strings(raw.get("overrides"), "overrides"), _evaluations(raw.get("evaluations")))


def _evaluations(entry) -> dict | None:
    if entry is None:
        return None
    from advrl.evaluation import NOISE_SPACES

    if not isinstance(entry, dict) or not isinstance(entry.get("noise"), list) or not entry["noise"]:
        raise StudyError("evaluations needs noise: a list of levels, e.g. {noise: [0, 0.05], episodes: 10}.")
    space = entry.get("noise_space", "raw")
    if space not in NOISE_SPACES:
        raise StudyError(f"evaluations.noise_space must be one of {', '.join(NOISE_SPACES)}, not {space!r}.")
    return {"noise": [float(x) for x in entry["noise"]], "noise_space": space, "episodes": entry.get("episodes")}


def runs_of(study: Study) -> list[StudyRun]:
    """Every run, seed-major: each variant's first seed, then each one's second, ... (a study
    stopped part-way holds every cell's first seeds, also where variants have seeds of their own)."""
    runs = []
    for rank in range(max(len(seeds_of(study, v)) for v in study.variants)):
        for variant in study.variants:
            if rank >= len(seeds_of(study, variant)):
                continue
            seed = seeds_of(study, variant)[rank]
            for dataset in study.datasets:
                folder = dataset["id"].replace("/", "_")
                # name=LABEL: `advrl report OUT` and `advrl compare OUT` group the runs by variant
                overrides = [f"name={variant['label']}", *study.overrides, f"dataset.id={dataset['id']}", *dataset["overrides"],
                             *variant["overrides"], f"seed={seed}"]
                runs.append(StudyRun(recipe_for(variant, dataset["id"]), overrides, study.out / variant["label"] / folder / f"seed{seed}",
                                     variant["finetune"], variant=variant["label"], dataset=folder, seed=seed))
    return runs


def planned_steps(run: StudyRun) -> int:
    return _steps(Path(run.recipe), tuple(run.overrides))


@functools.cache  # the plan, the estimate and the progress each ask, per run
def _steps(recipe: Path, overrides: tuple[str, ...]) -> int:
    from advrl.recipe import load_recipe

    return int(load_recipe(recipe, list(overrides), check_flow=False).train.steps)


def saved_steps(run: StudyRun) -> int | None:
    """The train.steps the run's folder was (last) trained to, None before it saved a recipe."""
    saved = run.run_dir / "recipe.yaml"
    return int(OmegaConf.load(saved).train.steps) if saved.is_file() else None


def to_extend(run: StudyRun) -> bool:
    """A finished run whose study now asks for more steps: it resumes to them. Not one that was
    fine-tuned: its fine-tuning started from the shorter offline phase's policy."""
    saved = saved_steps(run)
    return run.finetune is None and run.finished() and saved is not None and saved < planned_steps(run)


def plan(path: str | Path | Study, out: str | Path | None = None) -> tuple[Study, list[StudyRun]]:
    """The study and its runs, each validated (recipe, ranges, data flow) before anything starts."""
    study = path if isinstance(path, Study) else load(path, out)
    runs = runs_of(study)
    sweep.check_runs(runs)
    for run in runs:
        check_settings(run)
    return study, runs


def check_settings(run: StudyRun) -> None:
    """Refuse a run folder trained with other settings than the study's now (an edited variant):
    skipping or resuming it would mix two configurations under one label. Only what a resume
    may change (train.steps, train.checkpoint_every, train.log_every, eval.*) may differ; in a
    fine-tuning folder, none of the keys its overrides name (``advrl finetune --resume`` takes none)."""
    from advrl.learner.finetune import online_recipe
    from advrl.learner.trainer import RESUME_KEYS
    from advrl.recipe import load_recipe, recipe_diff

    saved = run.run_dir / "recipe.yaml"
    if not saved.is_file() or not saved.stat().st_size:
        return
    offline = load_recipe(saved, check_flow=False)
    _refuse(run.run_dir, [d for d in recipe_diff(offline, load_recipe(run.recipe, run.overrides, check_flow=False))
                          if d[0] not in RESUME_KEYS[:-1] and not d[0].startswith(RESUME_KEYS[-1])])
    tuned = run.run_dir / "finetune" / "recipe.yaml"
    if run.finetune is not None and tuned.is_file() and tuned.stat().st_size:
        # only the keys the fine-tuning overrides name: the saved recipe holds what fine-tuning
        # fills in as it starts (online.env & co.)
        keys = tuple(o.partition("=")[0].strip() for o in run.finetune)
        _refuse(tuned.parent, [d for d in recipe_diff(load_recipe(tuned, check_flow=False), online_recipe(offline, run.finetune))
                               if d[0] in keys or d[0].startswith(tuple(f"{k}." for k in keys))])


def _refuse(folder: Path, differences: list) -> None:
    from advrl.recipe import ABSENT, format_value

    if differences:
        key = differences[0][0]
        before, now = ("(absent)" if v is ABSENT else format_value(v) for v in differences[0][1:])
        raise StudyError(f"{folder} was trained with {key}={before}, the study now gives {now}"
                         f"{f' (and {len(differences) - 1} more)' if len(differences) > 1 else ''}: give the changed variant "
                         "a new label, or delete its runs to train them again.")


def step_reached(run: StudyRun) -> int:
    """The last step the run logged (0 before any record)."""
    from advrl.compare import read_records

    metrics = run.run_dir / "metrics.jsonl"
    steps = [r.get("step", 0) for r in read_records(metrics, "train")] if metrics.exists() else []
    return int(max(steps, default=0))


def measured_speed(runs: list[StudyRun]) -> float | None:
    """The median steps/s the study's runs logged, None when none did yet."""
    from advrl.compare import read_records

    speeds = [r["steps_per_s"] for run in runs if (run.run_dir / "metrics.jsonl").exists()
              for r in read_records(run.run_dir / "metrics.jsonl", "train") if r.get("steps_per_s")]
    return statistics.median(speeds) if speeds else None


def estimate(runs: list[StudyRun], workers: int | None = None) -> str:
    """The cost of what is left: remaining steps / steps per second, each variant at its own
    measured speed (variants differ several-fold: a CQL step is ~30 TD3+BC steps), else the
    study's, else a stated default; the text says which."""
    study_speed = measured_speed(runs)
    seconds, sources = 0.0, set()
    for variant in dict.fromkeys(r.variant for r in runs):
        cell = [r for r in runs if r.variant == variant]
        own = measured_speed(cell)
        speed = own or study_speed or DEFAULT_STEPS_PER_S
        sources.add("own" if own else "study" if study_speed else "default")
        seconds += sum(max(planned_steps(r) - step_reached(r), 0) for r in cell if not r.finished() or to_extend(r)) / speed
    remaining = sum(max(planned_steps(r) - step_reached(r), 0) for r in runs if not r.finished() or to_extend(r))
    said = {"own": "measured: the median steps_per_s of each variant's runs",
            "study": "measured: the median steps_per_s of the study's runs, for variants with none of their own",
            "default": f"a stated default of {DEFAULT_STEPS_PER_S:g} steps/s (about a TD3+BC step on one core) where no run has measured one"}
    per_run = "/".join(str(s) for s in sorted({planned_steps(r) for r in runs}))
    hours = seconds / 3600
    text = (f"cost: {per_run} steps per run x {len(runs)} runs; {remaining} steps left = {hours:.2f} core-hours "
            f"({'; '.join(said[k] for k in ('own', 'study', 'default') if k in sources)})")
    if workers and workers > 1:
        text += f"; about {hours / workers:.2f} h with {workers} runs at a time"
    return text


def status(run: StudyRun) -> str:
    if run.finished():
        return "extend" if to_extend(run) else "finished"
    if (run.run_dir / "error.txt").exists():
        return "failed"
    return "remaining"


def progress(study: Study, runs: list[StudyRun], failed: list | None = None) -> str:
    """Per variant x dataset: runs finished, failed, remaining (to extend counts as remaining)."""
    failed_dirs = {Path(r.run_dir) for r in failed or []}
    lines = ["| variant | dataset | finished | failed | remaining |", "| --- | --- | --- | --- | --- |"]
    for variant in study.variants:
        for dataset in study.datasets:
            cell = [r for r in runs if r.variant == variant["label"] and r.dataset == dataset["id"].replace("/", "_")]
            states = ["failed" if r.run_dir in failed_dirs else status(r) for r in cell]
            lines.append(f"| {variant['label']} | {dataset['id']} | {states.count('finished')} | {states.count('failed')} | "
                         f"{len(cell) - states.count('finished') - states.count('failed')} |")
    return "\n".join(lines)


def describe(study: Study, runs: list[StudyRun], workers: int | None = None) -> str:
    """The plan as ``--dry-run`` prints it."""
    done = sum(status(r) == "finished" for r in runs)
    extend = sum(status(r) == "extend" for r in runs)
    own_seeds = any(v["seeds"] is not None for v in study.variants)
    seeds = "seeds per variant" if own_seeds else f"{len(study.seeds)} seeds"
    lines = [f"study {study.name}: {len(study.variants)} variants x {len(study.datasets)} datasets x {seeds} "
             f"= {len(runs)} runs in {study.out}; {done} done, {extend} to extend to more steps, {len(runs) - done - extend} to train",
             "variants: " + ", ".join(f"{v['label']} ({_variant_text(study, v)})" for v in study.variants),
             "datasets: " + ", ".join(d["id"] for d in study.datasets)]
    if not own_seeds:
        lines.append("seeds: " + ", ".join(str(s) for s in study.seeds))
    lines.append(estimate(runs, workers) + ("; fine-tuning phases not counted" if any(r.finetune for r in runs) else ""))
    if study.evaluations:
        ev = study.evaluations
        lines.append(f"then evaluated at observation noise {', '.join(f'{x:g}' for x in ev['noise'])} ({ev['noise_space']}) "
                     "into each run's eval_noise.jsonl")
    return "\n".join(lines)


def _variant_text(study: Study, variant: dict) -> str:
    """A variant as the plan shows it: recipe, overrides, own seeds, fine-tuning."""
    parts = [" ".join([_recipe_names(variant), *variant["overrides"]])]
    if variant["seeds"] is not None:
        parts.append(f"seeds {', '.join(str(s) for s in variant['seeds'])}")
    if variant["finetune"] is not None:
        parts.append(f"then fine-tuned: {' '.join(variant['finetune'])}")
    return "; ".join(parts)


def _recipe_names(variant: dict) -> str:
    recipes = variant["recipe"]
    return recipes.name if isinstance(recipes, Path) else ", ".join(f"{k}: {v.name}" for k, v in recipes.items())


def evaluate(study: Study, run: StudyRun) -> None:
    """The study's evaluations of a finished run, saved in its eval_noise.jsonl (levels saved
    already are not repeated)."""
    from advrl.run import evaluate_runs

    ev = study.evaluations
    if not ev:
        return
    try:
        evaluate_runs([run.run_dir], ev["noise"], ev["episodes"], noise_space=ev["noise_space"])
    except Exception as err:  # called while other runs train: one run's evaluation must not stop them
        print(f"evaluation of {run.name} failed ({type(err).__name__}: {err}); the next `advrl study` evaluates it again", flush=True)


def run(path: str | Path, out: str | Path | None = None, dry_run: bool = False, executor: str = "local",
        vectorize: bool = False, **options) -> list[StudyRun]:
    """Train every unfinished run of the study (``options`` as :func:`advrl.sweep.execute`'s;
    ``vectorize``: each variant's seeds on a dataset as one job), evaluate the finished ones,
    and print the progress; returns the failed runs."""
    study, runs = plan(path, out)
    if dry_run:
        print(describe(study, runs, options.get("workers")) + "\n\n" + progress(study, runs), flush=True)
        return []
    sweep.check_executor(executor, **options)  # bad executor input leaves no trace either
    for r in runs:
        if to_extend(r):  # the train phase resumes with the study's train.steps (SweepRun.phase_args)
            print(f"{r.name}: trained to {saved_steps(r)} steps; resuming it to {planned_steps(r)}", flush=True)
            (r.run_dir / "DONE").unlink()
    for r in runs:  # finished earlier (e.g. stopped before its evaluation)
        if r.finished():
            evaluate(study, r)
    failed = sweep.execute(runs, executor, on_done=lambda r: evaluate(study, r), vectorize=vectorize, **options)
    print("\n" + progress(study, runs, failed) + f"\n\nreport: advrl report {study.out}", flush=True)
    return failed
