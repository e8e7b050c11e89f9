"""How a trained run's critic ranks the parts of its dataset.

Advantage-guided methods (A2PR, A2PO, SSAR's IQL selector) rest on one assumption: that the
learned advantage A(s, a) = Q(s, a) - V(s) is high on the good part of a mixed dataset and low
on the rest. ``advrl probe RUN`` checks it after the fact: for each source of the dataset (the
behaviour policies of an advrl build or mix, from its record; otherwise terciles of episode
return ranking) it reports Q of the data and of the policy, V, the advantage, the share of transitions
with A > 0, A2PO's condition xi = tanh(A), and how close the policy stays to the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl.data.collect import read_record
from advrl.data.dataset import OfflineData, load_offline_data
from advrl.run import Run


class ProbeError(RuntimeError):
    """A run that cannot be probed (no critic under the given name)."""


@dataclass
class Part:
    name: str
    mask: torch.Tensor  # over the dataset's transitions


def dataset_parts(transitions, record: dict | None) -> list[Part]:
    """The dataset's sources from its build record (episode ranges), or return terciles."""
    episode = transitions["episode"]
    if record and record.get("sources"):
        parts = []
        for source in record["sources"]:
            low, high = source["episodes"]
            name = source.get("policy") or source.get("dataset") or f"episodes {low}-{high}"
            parts.append(Part(str(name), (episode >= low) & (episode < high)))
        return parts
    # thirds of the episodes ranked by return (ties broken by episode order)
    episodes, first = torch.unique(episode, return_inverse=True)
    returns = torch.zeros(len(episodes), dtype=transitions["episode_return"].dtype)
    returns[first] = transitions["episode_return"]
    rank = torch.empty(len(episodes), dtype=torch.long)
    rank[torch.sort(returns, stable=True).indices] = torch.arange(len(episodes))
    third = (rank * 3 // len(episodes))[first]
    names = ("low-return third", "middle-return third", "high-return third")
    return [Part(f"{name} of episodes", third == k) for k, name in enumerate(names)]


def probe(run: Run, data: OfflineData | None = None, samples: int = 20000, seed: int = 0,
          critic: str = "critic", value: str | None = "value", parts: list[Part] | None = None) -> list[dict]:
    """One row per dataset part (default: ``dataset_parts`` of the dataset's record): means over
    up to ``samples`` of its transitions, a fixed draw per ``seed``."""
    if critic not in run.components or not hasattr(run.components[critic], "q"):
        have = ", ".join(sorted(run.components))
        raise ProbeError(f"{run.run_dir}: no critic component {critic!r} with Q values (components: {have}); pass --critic NAME.")
    data = data or load_offline_data(run.recipe.dataset, run.recipe.data, run.device)
    q_net = run.components[critic]
    v_net = run.components.get(value) if value else None
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for part in parts or dataset_parts(data.transitions, read_record(data.info.id)):
        index = torch.nonzero(part.mask).squeeze(-1)
        index = index[torch.randperm(len(index), generator=generator)[:samples]].to(data.device)
        obs = data.transitions["observation"][index]
        action = data.transitions["action"][index]
        with torch.no_grad():
            q_data = q_net.q(obs, action, reduce="q1")
            policy_action = run.actor.act(obs)
            q_policy = q_net.q(obs, policy_action, reduce="q1")
            row = {
                "part": part.name,
                "transitions": int(part.mask.sum()),
                "q_data": q_data.mean().item(),
                "q_policy": q_policy.mean().item(),
                "policy_beats_data": (q_policy > q_data).float().mean().item(),
                "bc_gap": (policy_action - action).pow(2).mean().item(),
            }
            if v_net is not None:
                v = v_net(obs)
                advantage = q_data - v
                row.update(
                    value=v.mean().item(),
                    advantage=advantage.mean().item(),
                    positive=(advantage > 0).float().mean().item(),
                    xi=torch.tanh(advantage).mean().item(),
                )
        rows.append(row)
    return rows


COLUMNS = (
    ("part", "part", "{}"),
    ("transitions", "transitions", "{}"),
    ("q_data", "Q1(s, a)", "{:.1f}"),
    ("q_policy", "Q1(s, pi(s))", "{:.1f}"),
    ("policy_beats_data", "P(Q(s, pi) > Q(s, a))", "{:.2f}"),
    ("value", "V(s)", "{:.1f}"),
    ("advantage", "A = Q - V", "{:.2f}"),
    ("positive", "P(A > 0)", "{:.2f}"),
    ("xi", "tanh(A)", "{:.2f}"),
    ("bc_gap", "mean (pi(s) - a)^2", "{:.3f}"),
)


def format_table(rows: list[dict]) -> str:
    """Markdown; the value columns only when the run has a value net."""
    columns = [c for c in COLUMNS if any(c[0] in row for row in rows)]
    lines = ["| " + " | ".join(title for _, title, _ in columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(fmt.format(row[key]) if key in row else "—" for key, _, fmt in columns) + " |")
    return "\n".join(lines)
