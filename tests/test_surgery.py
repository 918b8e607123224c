"""Model surgery: replacement, inserted capped layers, BPDA switch, cap statistics."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch
from torch import nn

from robustact.activations import BReLU, DReLU, SReLU
from robustact.surgery import (
    cap_summary,
    find_activations,
    find_caps,
    find_stochastic,
    insert_capped_layer,
    is_stochastic,
    replace_activations,
    straight_through,
)


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class UserNet(nn.Module):
    """A user's own model with nested activations."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.blocks = nn.Sequential(Block(4), Block(4))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 16), nn.GELU())
        self.out = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.head(self.blocks(self.stem(x))))


def mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10)
    )


def test_replace_all_by_default_returns_names_and_leaves_original() -> None:
    net = UserNet()
    new, names = replace_activations(net, "srelu")
    assert names == ["stem.1", "blocks.0.act", "blocks.1.act", "head.2"]
    assert all(isinstance(m, SReLU) for _, m in find_activations(new))
    assert all(not isinstance(m, SReLU) for _, m in find_activations(net))  # copy by default


def test_replace_by_type_pattern_index_and_callable() -> None:
    net = UserNet()
    _, by_type = replace_activations(net, "srelu", match=nn.GELU)
    assert by_type == ["head.2"]
    _, by_glob = replace_activations(net, "srelu", match="blocks.*")
    assert by_glob == ["blocks.0.act", "blocks.1.act"]
    _, by_regex = replace_activations(net, "srelu", match=r"re:^stem")
    assert by_regex == ["stem.1"]
    _, by_index = replace_activations(net, "srelu", match=[1, -1])
    assert by_index == ["blocks.0.act", "head.2"]
    _, by_fn = replace_activations(net, "srelu", match=lambda n, m: n.endswith("act"))
    assert by_fn == ["blocks.0.act", "blocks.1.act"]


def test_replace_gives_fresh_instances_and_sizes_drelu() -> None:
    net = mlp()
    x = torch.rand(2, 1, 8, 8)
    new, _ = replace_activations(net, "drelu", example_input=x)
    caps = [m for _, m in find_caps(new)]
    assert [c.num_features for c in caps] == [32, 16]
    assert caps[0] is not caps[1]
    lazy, _ = replace_activations(net, DReLU)
    assert all(m.num_features is None for _, m in find_caps(lazy))
    lazy(x)
    assert [m.num_features for _, m in find_caps(lazy)] == [32, 16]


def test_replace_leaves_untouched_layers_unchanged() -> None:
    torch.manual_seed(0)
    net = mlp()
    x = torch.rand(5, 1, 8, 8)
    new: Any
    new, _ = replace_activations(net, functools.partial(SReLU, max_value=1e9), match=[1])
    for (n1, p1), (n2, p2) in zip(net.named_parameters(), new.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)
    # a cap far above every pre-activation changes nothing
    assert torch.equal(net(x), new(x))
    first_hidden = nn.Sequential(*list(new)[:3])
    assert torch.equal(first_hidden(x), nn.Sequential(*list(net)[:3])(x))


def test_replace_inplace_and_errors() -> None:
    net = mlp()
    same, names = replace_activations(net, "srelu", match=0, inplace=True)
    assert same is net and isinstance(net[2], SReLU) and names == ["2"]
    with pytest.raises(ValueError, match="selects no activation; the model has"):
        replace_activations(net, "srelu", match=nn.GELU)
    with pytest.raises(IndexError, match="out of range"):
        replace_activations(net, "srelu", match=[7])
    with pytest.raises(ValueError, match="unknown activation"):
        replace_activations(net, "nope")


def test_insert_capped_layer_before_output_fig_5_4() -> None:
    torch.manual_seed(0)
    net = mlp()
    new: Any
    new, names = insert_capped_layer(net, "before_output", width=24)
    assert names == ["5"]
    seq: Any = new[5]
    assert isinstance(seq.capped_dense, nn.Linear) and seq.capped_dense.out_features == 24
    assert isinstance(seq.capped_act, DReLU) and seq.capped_act.num_features == 24
    assert seq.output.in_features == 24 and seq.output.out_features == 10
    assert new(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    kept: Any
    kept, _ = insert_capped_layer(net, "before_output", activation="srelu")
    assert kept[5].output is not net[5]  # deep copy, but same weights
    assert torch.equal(kept[5].output.weight, net.get_submodule("5").get_parameter("weight"))


def test_insert_capped_layer_after_input_conv_and_dense() -> None:
    net = UserNet()
    new: Any
    new, names = insert_capped_layer(net, "after_input", width=8)
    assert names == ["stem.0"]
    assert new.stem[0].capped_in.out_channels == 8 and new.stem[0].layer.in_channels == 8
    assert new(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    m: Any
    m, names = insert_capped_layer(mlp(), "after_input")
    assert names == ["1"] and m[1].capped_act.num_features == 64
    with pytest.raises(ValueError, match="where must be"):
        insert_capped_layer(net, "middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="width"):
        insert_capped_layer(net, width=0)


def test_straight_through_keeps_forward_gives_relu_gradient_and_restores() -> None:
    net: Any = nn.Sequential(nn.Linear(3, 3), SReLU(0.01), DReLU(3, init_max=0.01), BReLU())
    torch.manual_seed(0)
    x = torch.randn(8, 3) * 5
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3))
        net[0].bias.zero_()

    def grad(inp: torch.Tensor) -> torch.Tensor:
        inp = inp.clone().requires_grad_(True)
        net[:3](inp).sum().backward()
        assert inp.grad is not None
        return inp.grad

    plain = grad(x)
    assert torch.all(plain[x > 0.01] == 0)  # cap active -> zero gradient
    head = net[:3]  # shares the layers
    with straight_through(net) as m:
        assert m is net
        y_st = head(x)
        st = grad(x)
    assert torch.equal(y_st, head(x))  # forward unchanged
    assert torch.equal(st, (x > 0).float())  # back-propagates as a ReLU
    assert torch.equal(grad(x), plain)  # restored
    with pytest.raises(RuntimeError), straight_through(net):
        raise RuntimeError("boom")
    assert not any(getattr(m, "straight_through", False) for m in net.modules())


def test_straight_through_brelu_backpropagates_through_expectation() -> None:
    b = BReLU()
    x = torch.linspace(-2, 2, 5, requires_grad=True)
    with straight_through(b):
        y = b(x)
        y.sum().backward()
    assert torch.all((y == 0) | (y == x))
    s = torch.sigmoid(x.detach())
    assert x.grad is not None and torch.allclose(x.grad, s + x.detach() * s * (1 - s))


def test_cap_summary_and_stochastic_detection() -> None:
    net: Any = nn.Sequential(
        nn.Flatten(), nn.Linear(4, 4), SReLU(0.5), nn.Linear(4, 4), DReLU(4, 100)
    )
    with torch.no_grad():
        net[1].weight.copy_(torch.eye(4))
        net[1].bias.zero_()
    x = torch.tensor([[-1.0, 0.2, 0.7, 3.0]]).view(1, 1, 2, 2)
    net.train()
    rows = cap_summary(net, x)
    assert net.training  # mode restored
    assert [r.name for r in rows] == ["2", "4"]
    s = rows[0]
    assert s.kind == "SReLU" and s.units == 4 and s.cap_max == 0.5
    assert s.saturated == pytest.approx(0.5) and s.inactive == pytest.approx(0.25)
    assert s.zero_grad == pytest.approx(0.75)
    assert rows[1].cap_mean == 100.0 and rows[1].saturated == 0.0
    assert not is_stochastic(net)
    assert [n for n, _ in find_stochastic(nn.Sequential(nn.ReLU(), BReLU()))] == ["1"]
    assert not is_stochastic(nn.Sequential(BReLU(mode="expected")))
