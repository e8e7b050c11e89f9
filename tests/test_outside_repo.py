"""advrl used the way a user outside this repository uses it: installed from a wheel (so only
what the package really ships is there), commands run in a temporary folder, with neither
the repository nor sys.path edits in reach. Covers CONTRIBUTING's worked example (a recipe
that extends a built-in recipe by its ``advrl:`` prefix and imports modules beside it, one
adding a constraint, one a new kind) and an entry-point plug-in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

NEW_KIND = textwrap.dedent(
    """
    from dataclasses import dataclass

    from advrl import Component, option, register, register_kind

    register_kind("penalty", "extra terms on the policy's actions")


    @register("penalty", "action_l2")
    class ActionL2(Component):
        \"\"\"loss = weight * mean |pi(s)|^2: keeps actions away from the bounds.\"\"\"

        @dataclass
        class Config:
            weight: float = option(0.1, "weight; larger -> smaller actions")

        reads = ("policy_action",)
        losses = ("loss_action_l2",)

        def compute(self, td, step):
            return {"loss_action_l2": self.config.weight * td["policy_action"].pow(2).mean()}
    """
)

RECIPE = textwrap.dedent(
    """
    extends: advrl:td3bc.yaml
    imports: [l1_constraint, penalty_kind]
    name: td3bc_l1_outside
    components:
      constraint: {name: bc_l1, weight: 1.0}
      shrink: {kind: penalty, name: action_l2}
    updates:
      actor: {terms: [actor, actor_loss, constraint, shrink]}
    """
)

PLUGIN = textwrap.dedent(
    """
    from dataclasses import dataclass

    from advrl import Component, register, register_kind

    register_kind("plugin_kind", "a kind added by an installed plug-in")


    @register("plugin_kind", "plugin_component")
    class PluginComponent(Component):
        @dataclass
        class Config:
            pass
    """
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """advrl built into a wheel from a copy of its sources and installed into a bare folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO / "advrl", src / "advrl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", str(src), "-w", str(tmp / "dist")], check=True, cwd=tmp)
    wheel = next((tmp / "dist").glob("advrl-*.whl"))
    subprocess.run(pip + ["install", "--no-deps", "--target", str(tmp / "site"), str(wheel)], check=True, cwd=tmp)
    return tmp / "site"


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A user's folder: CONTRIBUTING's example module, a module adding a kind, a recipe using both."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "examples" / "l1_constraint.py", work / "l1_constraint.py")
    (work / "penalty_kind.py").write_text(NEW_KIND)
    (work / "my_recipe.yaml").write_text(RECIPE)
    return work


def advrl_cli(site: Path, cwd: Path, *args: str, extra_path: Path | None = None, env: dict | None = None) -> str:
    """Run the installed `advrl` console script in ``cwd``; PYTHONPATH holds only the wheel's folder."""
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | (env or {})
    environ["PYTHONPATH"] = os.pathsep.join(str(p) for p in (site, extra_path) if p)
    environ["OMP_NUM_THREADS"] = "1"
    done = subprocess.run([str(site / "bin" / "advrl"), *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_installed_package_is_the_one_tested(site, workdir):
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    code = "import advrl, sys; print(advrl.__file__); print(sys.argv[1] in sys.path)"
    out = subprocess.run([sys.executable, "-c", code, str(REPO)], cwd=workdir, env=environ, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [str(site / "advrl" / "__init__.py"), "False"]
    assert (site / "advrl" / "recipes" / "a2pr" / "ablations").is_dir()  # package data, subfolders too


def test_components_describes_the_example_and_lists_the_new_kind(site, workdir):
    card = advrl_cli(site, workdir, "components", "constraint", "bc_l1", "--recipe", "my_recipe.yaml")
    assert card.splitlines()[0] == "constraint 'bc_l1'  (l1_constraint.BCL1)"
    assert "  weight: float = 1.0  (>= 0)" in card.splitlines()  # the option's allowed values follow its default
    listing = advrl_cli(site, workdir, "components", "--recipe", "my_recipe.yaml")
    assert any(line.startswith("penalty") and "action_l2" in line and "extra terms" in line for line in listing.splitlines())


def test_recipe_show_resolves_the_builtin_parent_and_the_modules_beside_it(site, workdir):
    shown = advrl_cli(site, workdir, "recipe", "show", "my_recipe.yaml")
    assert "name: td3bc_l1_outside" in shown
    assert f"- {workdir / 'l1_constraint.py'}" in shown.splitlines()
    assert "    name: td3_actor" in shown.splitlines()  # from the packaged td3bc.yaml
    assert "    kind: penalty" in shown.splitlines()


def test_tiny_train_runs_the_recipe(site, workdir, minari_root, tiny_overrides):
    env = {"MINARI_DATASETS_PATH": str(minari_root)}
    advrl_cli(site, workdir, "train", "my_recipe.yaml", *tiny_overrides, "log.tensorboard=false", "--run-dir", "run", env=env)
    header = (workdir / "run" / "train.csv").read_text().splitlines()[0].split(",")
    assert {"loss_bc_l1", "loss_action_l2"} <= set(header)


def test_entry_point_plugin_is_listed(site, tmp_path):
    """A plug-in installed as a distribution: its dist-info's entry point is all advrl needs."""
    plugins = tmp_path / "plugins"
    dist_info = plugins / "my_advrl_plugin-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-advrl-plugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[advrl.components]\nmy_terms = my_plugin_terms\n")
    (plugins / "my_plugin_terms.py").write_text(PLUGIN)
    listing = advrl_cli(site, tmp_path, "components", extra_path=plugins)
    assert any(line.startswith("plugin_kind") and "plugin_component" in line for line in listing.splitlines())
    assert "Plug-ins (entry points advrl.components): my_terms = my_plugin_terms" in listing
