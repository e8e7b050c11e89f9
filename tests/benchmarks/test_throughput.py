"""benchmarks/throughput.py: rows for vectorised seeds and for SSAR, and the SSAR reference
update (a few steps: the structure of the result, not a speed)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import reference_ssar_td3bc  # noqa: E402
import throughput  # noqa: E402

ROW = {"steps_per_s", "reference_steps_per_s", "ratio", "ratio_min", "ratio_max"}


def test_measure_adds_vectorised_seed_rows_and_times_ssar():
    cpu = torch.device("cpu")
    td3bc = throughput.measure("td3bc", steps=3, repeats=2, device=cpu, replicas=2)
    assert list(td3bc) == ["fp32", "fp32 K=2"]
    ssar = throughput.measure("ssar_td3bc", steps=3, repeats=1, device=cpu)
    assert set(ssar) == ROW  # one precision, no replicas: the flat row earlier results were written in
    for row in (*td3bc.values(), ssar):
        assert set(row) == ROW
        assert min(row.values()) > 0 and row["ratio_min"] <= row["ratio"] <= row["ratio_max"]


def test_vectorised_runner_builds_seed_k_as_a_single_run_with_seed_k():
    stacked = throughput.AdvrlRunner("ssar_td3bc", torch.device("cpu"), replicas=2)
    torch.manual_seed(1)
    single = throughput.AdvrlRunner("ssar_td3bc", torch.device("cpu"))
    assert stacked.seeds == 2 and single.seeds == 1
    for name, param in single.components["coefficient"].named_parameters():
        torch.testing.assert_close(dict(stacked.components["coefficient"].named_parameters())[name][1], param)
    assert stacked.components["selector"].labels.shape == (2, throughput.SIZE)  # each seed its own IQL labels


def test_ssar_reference_update_moves_every_network():
    torch.manual_seed(0)
    agent = reference_ssar_td3bc.SSARTD3BC(5, 2, update_period=2)
    networks = {name: getattr(agent, name) for name in
                ("actor", "actor_target", "critic_1", "critic_2", "critic_1_target", "critic_2_target", "beta")}
    before = {name: [p.detach().clone() for p in net.parameters()] for name, net in networks.items()}
    gen = torch.Generator().manual_seed(0)
    batch = (torch.randn(32, 5, generator=gen), torch.rand(32, 2, generator=gen) * 2 - 1, torch.randn(32, 1, generator=gen),
             torch.randn(32, 5, generator=gen), torch.zeros(32, 1), (torch.rand(32, 1, generator=gen) < 0.5).float())
    logs = [agent.train(batch) for _ in range(2)]  # the second step also updates actor, beta and targets
    assert set(logs[1]) == {"critic_loss", "actor_loss", "beta_loss"}
    for name, net in networks.items():
        assert any(not torch.equal(p, q) for p, q in zip(net.parameters(), before[name])), name
    assert agent.n == 1.2 or not agent.update_threshold  # the threshold check ran at step 2
