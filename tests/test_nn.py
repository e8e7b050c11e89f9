"""advrl/nn.py: the shared network blocks under vectorised seeds and bf16 autocast."""

import copy

import pytest
import torch

from advrl.learner.replicas import ReplicaStack
from advrl.nn import ensemble_mlp, mlp

REPLICAS = 3


def _replicas(build):
    nets = []
    for seed in range(REPLICAS):
        torch.manual_seed(seed)
        nets.append({"net": build()})
    return nets


@pytest.mark.parametrize("build, shape", [
    (lambda: mlp(5, [32, 32], 3), (7, 5)),
    (lambda: ensemble_mlp(5, [32, 32], 3, ensemble_size=2), (2, 7, 5)),
])
def test_vectorised_bf16_layers_stay_bf16_and_compute_what_each_network_computes(build, shape):
    # under vmap linear/baddbmm split into a product and an add that autocast does not cast: a
    # float32 bias would make every activation float32 (slower, and not the single run's rounding)
    nets = _replicas(build)
    stack = ReplicaStack(nets, [torch.Generator() for _ in nets], list(range(REPLICAS)))
    x = torch.randn(REPLICAS, *shape)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        stacked = stack.map(lambda inputs: stack.components["net"](inputs))(x)
        alone = [nets[k]["net"](x[k]) for k in range(REPLICAS)]
    assert stacked.dtype == torch.bfloat16 == alone[0].dtype
    for k in range(REPLICAS):  # the add rounds once more than the fused kernel: bf16 tolerance
        torch.testing.assert_close(stacked[k].float(), alone[k].float(), rtol=2e-2, atol=2e-2)
    assert not torch.allclose(stacked[0].float(), stacked[1].float(), atol=1e-2)  # each its own weights


def test_outside_vmap_the_bias_is_left_to_autocast():
    # a single run is untouched, bit for bit, gradients included: autocast casts the bias once per
    # region and sums the gradients of its uses in bf16; an explicit cast per call would not
    torch.manual_seed(0)
    net = mlp(5, [64], 64)
    twin = copy.deepcopy(net)
    x1, x2 = torch.randn(32, 5), torch.randn(32, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = net(x1).float().sum() + net(x2).float().sum()
        layers = list(twin)
        expected = sum(layers[2](torch.relu(layers[0](x))).float().sum() for x in (x1, x2))  # nn.Linear via autocast
    got.backward()
    expected.backward()
    assert torch.equal(got, expected)
    for mine, plain in zip(net.parameters(), twin.parameters()):
        assert torch.equal(mine.grad, plain.grad)
