"""`advrl study`: variants x datasets x seeds from one file, resumable and extendable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from advrl import compare, study
from advrl.cli import main

REPO = Path(__file__).resolve().parent.parent
TINY_ID = "advrl/hopper/random-v0"


def write_study(path: Path, tiny_overrides: list[str], seeds=(0, 1), steps: int = 20, variants=None, evaluations=None) -> Path:
    overrides = [o for o in tiny_overrides if not o.startswith(("dataset.id=", "train.steps="))] + [f"train.steps={steps}"]
    spec = {"name": "tiny", "out": "runs",
            "variants": variants or [{"label": "bc", "recipe": str(REPO / "recipes" / "bc.yaml")},
                                     {"label": "td3bc_a5", "recipe": "advrl:td3bc.yaml", "overrides": ["components.actor_loss.alpha=5"]}],
            "datasets": [TINY_ID], "seeds": list(seeds), "overrides": overrides}
    if evaluations:
        spec["evaluations"] = evaluations
    OmegaConf.save(OmegaConf.create(spec), path)
    return path


def run_dirs(out: Path) -> list[str]:
    return sorted(str(p.parent.relative_to(out)) for p in out.rglob("DONE"))


def train_records(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if r.get("kind") == "train"]


def test_a_study_trains_every_run_into_its_folder_and_a_rerun_skips_them(tmp_path, minari_root, tiny_overrides, capsys):
    spec = write_study(tmp_path / "study.yaml", tiny_overrides)
    assert main(["study", str(spec), "--workers", "2"]) == 0
    out = tmp_path / "runs"
    assert run_dirs(out) == [f"{v}/advrl_hopper_random-v0/seed{s}" for v in ("bc", "td3bc_a5") for s in (0, 1)]
    recipe = OmegaConf.load(out / "td3bc_a5" / "advrl_hopper_random-v0" / "seed1" / "recipe.yaml")
    assert recipe.seed == 1 and recipe.components.actor_loss.alpha == 5 and recipe.dataset.id == TINY_ID
    printed = capsys.readouterr().out
    assert "| bc | advrl/hopper/random-v0 | 2 | 0 | 0 |" in printed
    assert sorted(compare.group_runs([str(out)])) == ["bc", "td3bc_a5"]  # `advrl report OUT` groups by variant
    assert main(["study", str(spec), "--workers", "2"]) == 0
    assert "4 of 4 runs finished; 0 to go" in capsys.readouterr().out


def test_a_dry_run_prints_the_plan_and_its_cost_and_creates_nothing(tmp_path, minari_root, tiny_overrides, capsys):
    spec = write_study(tmp_path / "study.yaml", tiny_overrides)
    assert main(["study", str(spec), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "2 variants x 1 datasets x 2 seeds = 4 runs" in printed and "0 done" in printed
    assert "80 steps left" in printed and "stated default" in printed
    assert "| td3bc_a5 | advrl/hopper/random-v0 | 0 | 0 | 2 |" in printed
    assert not (tmp_path / "runs").exists()


def test_extending_a_study_trains_only_new_runs_and_resumes_finished_ones_to_more_steps(tmp_path, minari_root, tiny_overrides, capsys):
    variants = [{"label": "bc", "recipe": str(REPO / "recipes" / "bc.yaml")}]
    spec = write_study(tmp_path / "study.yaml", tiny_overrides, seeds=[0], variants=variants)
    assert main(["study", str(spec), "--workers", "1"]) == 0
    first = tmp_path / "runs" / "bc" / "advrl_hopper_random-v0" / "seed0"
    before = train_records(first)
    write_study(spec, tiny_overrides, seeds=[0, 1], variants=variants)  # a seed more
    capsys.readouterr()
    assert main(["study", str(spec), "--workers", "1"]) == 0
    assert "1 of 2 runs finished; 1 to go" in capsys.readouterr().out
    assert train_records(first) == before  # untouched
    assert main(["study", str(spec), "--dry-run"]) == 0
    assert "measured: the median steps_per_s of each variant's runs" in capsys.readouterr().out  # the speed now comes from the runs
    write_study(spec, tiny_overrides, seeds=[0, 1], steps=40, variants=variants)  # a longer budget
    assert main(["study", str(spec), "--dry-run"]) == 0
    assert "2 to extend to more steps" in capsys.readouterr().out
    assert main(["study", str(spec), "--workers", "2"]) == 0
    for seed in (0, 1):
        run = tmp_path / "runs" / "bc" / "advrl_hopper_random-v0" / f"seed{seed}"
        assert OmegaConf.load(run / "recipe.yaml").train.steps == 40 and (run / "DONE").exists()
        assert max(train_records(run)) == 40
    assert train_records(first)[: len(before)] == before  # the earlier records kept
    edited = [{**variants[0], "overrides": ["train.batch_size=16"]}]  # a variant changed under the same label
    write_study(spec, tiny_overrides, seeds=[0, 1], steps=40, variants=edited)
    capsys.readouterr()
    assert main(["study", str(spec), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.batch_size=32, the study now gives 16" in err


def test_an_invalid_variant_is_refused_in_one_line_before_any_run_folder(tmp_path, minari_root, tiny_overrides, capsys):
    variants = [{"label": "bc", "recipe": str(REPO / "recipes" / "bc.yaml")},
                {"label": "broken", "recipe": "advrl:td3bc.yaml", "overrides": ["train.stepz=3"]}]
    spec = write_study(tmp_path / "study.yaml", tiny_overrides, variants=variants)
    assert main(["study", str(spec)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken/advrl_hopper_random-v0/seed0" in err and "stepz" in err
    assert not (tmp_path / "runs").exists()
    write_study(spec, tiny_overrides)
    assert main(["study", str(spec), "--executor", "kubernetes"]) == 1  # bad executor input: as advrl sweep's
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, message", [
    ("name: x\nvariants: [{label: a}]\ndatasets: [d]\nseeds: [0]\n", "needs a label and a recipe"),
    ("name: x\nvariants: [{label: a, recipe: nowhere.yaml}]\ndatasets: [d]\nseeds: [0]\n", "not found"),
    ("name: x\nvariants: [{label: a, recipe: advrl:bc.yaml}]\ndatasets: [d]\nseeds: [0, 0]\n", "distinct integers"),
    ("name: x\nvariant: []\n", "unknown key"),
    ("name: x\nvariants: [{label: a\n", "not valid YAML"),
    ("name: x\nvariants: [{label: a, recipe: advrl:bc.yaml}]\ndatasets: [d]\n", "needs seeds (or seeds in every variant)"),
    ("name: x\nvariants: [{label: a, recipe: advrl:bc.yaml, seeds: [1, 1]}]\ndatasets: [d]\n", "variant a's seeds must be"),
    ("name: x\nvariants: [{label: a, recipe: advrl:bc.yaml, finetune: online.steps=5}]\ndatasets: [d]\nseeds: [0]\n",
     "finetune must be a non-empty list"),
    ("name: x\nvariants: [{label: a, recipe: advrl:bc.yaml, seed: [0]}]\ndatasets: [d]\nseeds: [0]\n", "variant a: unknown key(s) seed"),
])
def test_a_malformed_study_file_is_one_line(tmp_path, text, message, capsys):
    (tmp_path / "s.yaml").write_text(text)
    assert main(["study", str(tmp_path / "s.yaml"), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_the_study_evaluations_are_saved_in_each_run(tmp_path, minari_root, tiny_overrides):
    variants = [{"label": "bc", "recipe": str(REPO / "recipes" / "bc.yaml")}]
    spec = write_study(tmp_path / "study.yaml", tiny_overrides, seeds=[0, 1], variants=variants,
                       evaluations={"noise": [0.0, 0.1], "episodes": 1})
    assert study.run(spec, workers=2) == []
    for seed in (0, 1):
        lines = (tmp_path / "runs" / "bc" / "advrl_hopper_random-v0" / f"seed{seed}" / "eval_noise.jsonl").read_text().splitlines()
        assert sorted(json.loads(line)["obs_noise"] for line in lines) == [0.0, 0.1]


def test_the_example_study_plans_without_training(tmp_path, capsys):
    spec, runs = study.plan(REPO / "examples" / "study_a2pr_vae.yaml", out=tmp_path / "out")
    assert len(runs) == 20 and {r.variant for r in runs} == {"a2pr", "a2pr_no_vae", "a2pr_expectile", "td3bc"}
    assert main(["study", str(REPO / "examples" / "study_a2pr_vae.yaml"), "--dry-run", "--out", str(tmp_path / "out")]) == 0
    assert "= 20 runs" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_a_variant_may_name_a_recipe_per_dataset(tmp_path, tiny_overrides):
    other = "advrl/hopper/random-s1-v0"
    per_dataset = {TINY_ID: str(REPO / "recipes" / "bc.yaml"), other: "advrl:td3bc.yaml"}
    spec = write_study(tmp_path / "study.yaml", tiny_overrides, seeds=[0], variants=[{"label": "tuned", "recipe": per_dataset}])
    OmegaConf.save(OmegaConf.merge(OmegaConf.load(spec), {"datasets": [TINY_ID, other]}), spec)
    _, runs = study.plan(spec)
    assert [(r.dataset, r.recipe.name) for r in runs] == [("advrl_hopper_random-v0", "bc.yaml"), ("advrl_hopper_random-s1-v0", "td3bc.yaml")]
    OmegaConf.save(OmegaConf.merge(OmegaConf.load(spec), {"datasets": [TINY_ID, other, "advrl/hopper/expert-v0"]}), spec)
    with pytest.raises(study.StudyError, match="names no recipe for dataset advrl/hopper/expert-v0"):
        study.plan(spec)


SUITES = REPO / "benchmarks" / "suites"


@pytest.mark.parametrize("suite, expected", [
    ("hopper_rme_advantage", {(v, s): (100000, False) for v in ("td3bc", "a2pr", "a2po") for s in (0, 1, 2)}),
    ("ssar_hopper_mr", {**{(v, s): (100000, True) for v in ("td3bc", "ssar_td3bc") for s in (0, 1, 2)},
                        **{(v, s): (50000, False) for v in ("cql", "ssar_cql") for s in (0, 1)}}),
    ("ssar_cql_ablation", {(v, s): (50000, False) for v in ("cql", "ssar_cql", "ssar_cql_select_all", "cql_layer_norm") for s in (0, 1)}),
    ("smoke", {("bc", 0): (40, False), ("bc", 1): (40, False), ("td3bc", 0): (40, True)}),
])
def test_each_benchmark_suite_is_a_study_that_plans_its_runs(tmp_path, suite, expected):
    """The suites are study files: `advrl study SUITE --dry-run` plans the harness's runs."""
    spec, runs = study.plan(SUITES / f"{suite}.yaml", out=tmp_path)
    assert spec.name == suite and len(spec.datasets) == 1
    assert {(r.variant, r.seed): (study.planned_steps(r), r.finetune is not None) for r in runs} == expected
    assert len(runs) == len(expected)
    seeds_in_order = [r.seed for r in runs]
    assert seeds_in_order == sorted(seeds_in_order)  # seed-major
    if suite == "ssar_hopper_mr":
        td3bc = next(r for r in runs if r.variant == "td3bc")
        assert "online.random_warmup=false" in td3bc.finetune and "online.steps=50000" in td3bc.finetune


def test_a_variant_with_finetune_trains_offline_then_online_and_a_rerun_skips_it(tmp_path, minari_root, tiny_overrides, capsys):
    tuning = ["online.steps=20", "online.learning_starts=10", "eval.every=10", "eval.episodes=1",
              "train.log_every=10", "train.checkpoint_every=10", "train.batch_size=32"]
    variants = [{"label": "bc", "recipe": str(REPO / "recipes" / "bc.yaml")},
                {"label": "tuned", "recipe": "advrl:td3bc.yaml", "seeds": [3], "finetune": tuning}]
    spec = write_study(tmp_path / "study.yaml", tiny_overrides, seeds=[0], variants=variants)
    assert main(["study", str(spec), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "seeds per variant = 2 runs" in printed and "then fine-tuned: online.steps=20" in printed
    assert main(["study", str(spec), "--workers", "2"]) == 0
    out = tmp_path / "runs"
    assert run_dirs(out) == ["bc/advrl_hopper_random-v0/seed0", "tuned/advrl_hopper_random-v0/seed3"]
    tuned = out / "tuned" / "advrl_hopper_random-v0" / "seed3"
    assert (tuned / "OFFLINE_DONE").exists() and not (out / "bc" / "advrl_hopper_random-v0" / "seed0" / "OFFLINE_DONE").exists()
    online = [json.loads(line) for line in (tuned / "finetune" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("kind") == "eval" for r in online) and OmegaConf.load(tuned / "finetune" / "recipe.yaml").online.steps == 20
    assert main(["study", str(spec), "--workers", "2"]) == 0
    assert "2 of 2 runs finished; 0 to go" in capsys.readouterr().out
    write_study(spec, tiny_overrides, seeds=[0], steps=40, variants=variants)  # more offline steps: not for a fine-tuned run
    assert main(["study", str(spec), "--dry-run"]) == 0
    assert "1 to extend to more steps" in capsys.readouterr().out
    edited = [variants[0], {**variants[1], "finetune": [*tuning, "online.learning_starts=5"]}]  # other fine-tuning, same label
    write_study(spec, tiny_overrides, seeds=[0], variants=edited)
    assert main(["study", str(spec), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seed3/finetune was trained with online.learning_starts=10, the study now gives 5" in err


def test_a_fine_tuning_phase_stopped_part_way_resumes(tmp_path, tiny_overrides):
    variants = [{"label": "tuned", "recipe": "advrl:td3bc.yaml", "finetune": ["online.steps=20"]}]
    spec = write_study(tmp_path / "study.yaml", tiny_overrides, seeds=[0], variants=variants)
    _, (run,) = study.plan(spec)
    assert run.phase_args()[0] == "train"
    run.run_dir.mkdir(parents=True)
    assert not run.mark_phase_done() and not run.finished()  # the offline phase ends; fine-tuning is next
    assert run.phase_args()[:2] == ["finetune", str(run.run_dir)] and "online.steps=20" in run.phase_args()
    for name in (".advrl-run", "recipe.yaml"):  # a fine-tuning run killed part-way
        (run.run_dir / "finetune").mkdir(exist_ok=True)
        (run.run_dir / "finetune" / name).write_text("")
    assert run.phase_args()[:2] == ["finetune", "--resume"]
    assert run.mark_phase_done() and run.finished()


def test_a_typo_in_the_fine_tuning_overrides_is_one_line_before_any_run(tmp_path, tiny_overrides, capsys):
    variants = [{"label": "tuned", "recipe": "advrl:td3bc.yaml", "finetune": ["online.stepz=20"]}]
    spec = write_study(tmp_path / "study.yaml", tiny_overrides, seeds=[0], variants=variants)
    assert main(["study", str(spec)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tuned/advrl_hopper_random-v0/seed0, fine-tuning: Unknown recipe key 'online.stepz'" in err
    assert not (tmp_path / "runs").exists()
