"""advrl probe: per-source Q, V and advantage of a trained run, on hand-made critics and data."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tensordict import TensorDict

from advrl.cli import main
from advrl.probe import Part, dataset_parts, format_table, probe

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


class SumCritic:
    """Q(s, a) = sum of a: a data action of +1 is worth 2, the zero policy action 0."""

    def q(self, obs, action, reduce="q1"):
        return action.sum(-1)


def fake_run(value: float | None):
    components = {"critic": SumCritic(), "actor": SimpleNamespace(act=lambda obs: torch.zeros(len(obs), 2))}
    if value is not None:
        components["value"] = lambda obs: torch.full((len(obs),), value)
    return SimpleNamespace(run_dir="fake", components=components, actor=components["actor"])


def fake_data():
    """Episodes 0-1 act +1 (return 10), episodes 2-3 act -1 (return 1); 5 steps each."""
    episode = torch.arange(4).repeat_interleave(5)
    sign = torch.where(episode < 2, 1.0, -1.0)
    transitions = TensorDict(
        {
            "observation": torch.randn(20, 3),
            "action": sign.unsqueeze(-1).expand(20, 2).clone(),
            "episode": episode,
            "episode_return": torch.where(episode < 2, 10.0, 1.0),
        },
        batch_size=[20],
    )
    return SimpleNamespace(transitions=transitions, device=torch.device("cpu"))


def test_parts_follow_the_build_record_or_return_terciles():
    data = fake_data()
    record = {"sources": [{"policy": "expert", "episodes": [0, 2]}, {"dataset": "advrl/hopper/random-v0", "episodes": [2, 4]}]}
    parts = dataset_parts(data.transitions, record)
    assert [p.name for p in parts] == ["expert", "advrl/hopper/random-v0"]
    assert parts[0].mask.tolist() == [True] * 10 + [False] * 10 and not (parts[0].mask & parts[1].mask).any()
    thirds = dataset_parts(data.transitions, None)  # no record: episodes ranked by return
    assert thirds[0].name == "low-return third of episodes"
    assert [int(p.mask.sum()) for p in thirds] == [10, 5, 5]  # ranks 0, 1 | 2 | 3 of four episodes
    assert thirds[0].mask[10:].all() and thirds[2].mask[5:10].all()  # the tie broken by episode order


def test_probe_reports_advantage_sign_and_policy_comparison_per_part():
    data = fake_data()
    parts = dataset_parts(data.transitions, {"sources": [{"policy": "good", "episodes": [0, 2]}, {"policy": "bad", "episodes": [2, 4]}]})
    good, bad = probe(fake_run(value=0.5), data, parts=parts)
    assert good["part"] == "good" and good["transitions"] == 10
    assert good["q_data"] == pytest.approx(2.0) and bad["q_data"] == pytest.approx(-2.0)
    assert good["value"] == pytest.approx(0.5)
    assert good["advantage"] == pytest.approx(1.5) and bad["advantage"] == pytest.approx(-2.5)
    assert good["positive"] == 1.0 and bad["positive"] == 0.0
    assert good["xi"] == pytest.approx(torch.tanh(torch.tensor(1.5)).item(), abs=1e-6)
    assert good["policy_beats_data"] == 0.0 and bad["policy_beats_data"] == 1.0  # Q(s, 0) = 0
    assert good["bc_gap"] == pytest.approx(1.0)
    assert probe(fake_run(value=0.5), data, samples=3, parts=parts)[0]["transitions"] == 10  # all counted, 3 drawn


def test_without_a_value_net_the_table_has_no_advantage_columns():
    data = fake_data()
    rows = probe(fake_run(value=None), data, parts=[Part("all", torch.ones(20, dtype=torch.bool))])
    assert "advantage" not in rows[0]
    table = format_table(rows)
    assert "Q1(s, a)" in table and "A = Q - V" not in table and table.count("\n") == 2


def test_cli_probes_a_trained_run_and_names_a_missing_critic(minari_root, tiny_overrides, tmp_path, capsys):
    run_dir = tmp_path / "iql"
    assert main(["train", str(RECIPES / "iql.yaml"), *tiny_overrides, "--run-dir", str(run_dir), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["probe", str(run_dir), "--samples", "500", "--json", str(tmp_path / "probe.json")]) == 0
    out = capsys.readouterr().out
    assert "| random | 3000 |" in out and "P(A > 0)" in out  # one source, IQL has a value net
    assert (tmp_path / "probe.json").exists()
    assert main(["probe", str(run_dir), "--critic", "qf"]) == 1
    assert "no critic component 'qf'" in capsys.readouterr().err
