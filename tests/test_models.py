"""Tests for robustact.models: every registered model, sizes, activation swaps, config."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
import torch
from torch import nn

from robustact.activations import DReLU, SReLU
from robustact.models import (
    Normalize,
    default_input_shape,
    describe_act_layer,
    list_models,
    model_from_config,
    model_info,
)
from robustact.models import create_model as _create_model
from robustact.surgery import find_activations, insert_capped_layer, replace_activations


def create_model(*args: Any, **kwargs: Any) -> Any:
    """``robustact.models.create_model``; typed Any because these tests reach into each
    architecture's own named layers (``m.fc1``, ``m.normalize``), which nn.Module's stubs
    type as ``Tensor | Module``."""
    return _create_model(*args, **kwargs)


# the generic WRN is exercised small here (its 28-10 default is wrn_28_10 below)
SMALL_KWARGS: dict[str, dict[str, object]] = {"wide_resnet": {"depth": 10, "widen_factor": 1}}
# full-size big models: about 1 s each for batch 2 at 32x32 on 2 cores
BIG = {
    "resnet101",
    "wrn_28_10",
    "wrn_34_10",
    "vgg16",
    "resnet50",
    "inception_v3",
    "efficientnet_b0",
    "efficientnet_v2_s",
    "resnet18_imagenet",
}  # last 4: test_models_big


def _forward_backward(name: str, **kwargs: object) -> nn.Module:
    model = create_model(name, num_classes=10, **kwargs)
    c, h, w = default_input_shape(name)
    x = torch.rand(2, c, h, w, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    out.logsumexp(dim=1).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    return model


def test_registry_lists_the_zoo() -> None:
    expected = {
        "mlp_general", "mlp_reversed", "mlp_equal", "mlp_three", "shallow_cnn", "lenet5",
        "small_cnn", "resnet18", "resnet50", "resnet101", "preact_resnet18", "wide_resnet",
        "wrn_28_10", "wrn_34_10", "vgg16", "mobilenet_v2",
    }  # fmt: skip
    assert expected <= set(list_models())
    assert list_models() == sorted(list_models())
    assert set(list_models("mlp")) == {"mlp_general", "mlp_reversed", "mlp_equal", "mlp_three"}
    assert default_input_shape("resnet18") == (3, 32, 32)
    assert default_input_shape("mlp_general") == (1, 28, 28)


@pytest.mark.parametrize("name", [n for n in list_models() if n not in BIG])
def test_forward_backward_small(name: str) -> None:
    model = _forward_backward(name, **SMALL_KWARGS.get(name, {}))
    assert isinstance(next(iter(model.children())), Normalize)


@pytest.mark.parametrize("name", sorted(BIG))
def test_forward_backward_big(name: str) -> None:
    model = _forward_backward(name)
    assert isinstance(next(iter(model.children())), Normalize)


@pytest.mark.parametrize(
    ("name", "millions"), [("resnet18", 11.17), ("wrn_28_10", 36.48), ("preact_resnet18", 11.17)]
)
def test_parameter_counts_match_published(name: str, millions: float) -> None:
    n = model_info(create_model(name, num_classes=10))["params"]
    assert abs(n / 1e6 - millions) / millions < 0.01, n


def test_mlp_widths_match_the_dissertation() -> None:
    def widths(name: str) -> list[int]:
        return [m.out_features for m in create_model(name).modules() if isinstance(m, nn.Linear)]

    assert widths("mlp_general") == [392, 196, 10]
    assert widths("mlp_reversed") == [196, 392, 10]
    assert widths("mlp_equal") == [784, 784, 10]
    assert widths("mlp_three") == [392, 196, 98, 10]
    m = create_model("mlp_general", hidden=(32, 16, 8), input_size=(3, 32, 32), in_channels=3)
    assert m.fc1.in_features == 3 * 32 * 32 and widths("mlp_general")[0] == 392
    assert create_model("mlp_equal", in_features=64, hidden=[20, 20]).fc1.in_features == 64


def test_mlp_accepts_flat_input_and_rejects_wrong_size() -> None:
    m = create_model("mlp_general").eval()
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(m(x), m(x.flatten(1)))
    with pytest.raises(ValueError, match="784 values"):
        m(torch.rand(3, 1, 32, 32))


def test_act_layers_cap_only_the_second_hidden_layer() -> None:
    m = create_model("mlp_general", act_layers=[None, functools.partial(SReLU, max_value=0.01)])
    acts = dict(find_activations(m))
    assert set(acts) == {"act1", "act2"}
    assert type(acts["act1"]) is nn.ReLU
    assert isinstance(acts["act2"], SReLU) and acts["act2"].max_value == 0.01
    # the cap really applies: hidden-2 outputs never exceed 0.01
    h = m.act2(m.fc2(m.act1(m.fc1(torch.rand(8, 784) * 10))))
    assert h.max() <= 0.01 and h.max() > 0
    with pytest.raises(ValueError, match="one per hidden layer"):
        create_model("mlp_general", act_layers=["srelu"])


@pytest.mark.parametrize("name", ["resnet18", "preact_resnet18", "mobilenet_v2", "small_cnn"])
def test_act_layer_swap_uses_only_the_requested_activation(name: str) -> None:
    relu_model = create_model(name)
    n_relu = len(find_activations(relu_model))
    model = create_model(name, act_layer="srelu")
    acts = find_activations(model)
    assert len(acts) == n_relu > 0
    assert all(type(m) is SReLU for _, m in acts)
    # one module per site: no instance is shared between two places
    assert len({id(m) for _, m in acts}) == len(acts)
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())


def test_resnet18_activation_census() -> None:
    # stem + 2 per basic block * 8 blocks
    assert len(find_activations(create_model("resnet18", act_layer="srelu"))) == 17


def test_drelu_gets_one_cap_per_channel_or_unit() -> None:
    m = create_model("shallow_cnn", act_layer="drelu")
    caps = {n: a.num_features for n, a in find_activations(m) if isinstance(a, DReLU)}
    assert caps == {"features.act1": 32, "features.act2": 64, "classifier.act3": 128}
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_normalize_is_first_and_exact() -> None:
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    m = create_model("resnet18", mean=mean, std=std).eval()
    assert isinstance(next(iter(m.children())), Normalize)
    x = torch.rand(2, 3, 32, 32)
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(m.normalize(x), expected)
    # the model is exactly "normalise, then the rest": feeding pre-normalised data to an
    # identity-normalised copy with the same weights gives the same logits
    plain = create_model("resnet18").eval()
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("norm")},
                          strict=False)  # fmt: skip
    torch.testing.assert_close(m(x), plain.forward_normalized(expected))
    assert "normalize.mean" in m.state_dict()  # checkpoints carry the statistics


def test_normalize_defaults_and_presets() -> None:
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(create_model("lenet5").normalize(x), x)
    m = create_model("lenet5", mean="mnist")
    torch.testing.assert_close(m.normalize(x), (x - 0.1307) / 0.3081)
    m = create_model("resnet18", mean="cifar10")
    assert m.normalize.std.tolist() == pytest.approx([0.2470, 0.2435, 0.2616])
    n = Normalize([0.5, 0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="2 channels"):
        n(torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match="std must be > 0"):
        create_model("lenet5", std=0.0)
    with pytest.raises(ValueError, match="unknown normalisation preset"):
        create_model("lenet5", mean="mnistt")


@pytest.mark.parametrize("name", ["shallow_cnn", "lenet5", "small_cnn", "mlp_three"])
@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
def test_small_models_handle_28_and_32_inputs(name: str, channels: int, size: int) -> None:
    m = create_model(name, num_classes=7, in_channels=channels, input_size=size)
    assert m(torch.rand(2, channels, size, size)).shape == (2, 7)


def test_small_cnn_is_the_trades_network() -> None:
    m = create_model("small_cnn")
    convs = [c.out_channels for c in m.modules() if isinstance(c, nn.Conv2d)]
    fcs = [(f.in_features, f.out_features) for f in m.modules() if isinstance(f, nn.Linear)]
    assert convs == [32, 32, 64, 64]
    assert fcs == [(1024, 200), (200, 200), (200, 10)]
    assert any(isinstance(d, nn.Dropout) for d in m.modules())


def test_vgg16_follows_the_brelu_appendix() -> None:
    m = create_model("vgg16")
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert len(convs) == 13
    assert sum(isinstance(p, nn.MaxPool2d) for p in m.modules()) == 2
    assert not any(isinstance(d, nn.Dropout) for d in m.modules())
    feats = m.features(torch.rand(1, 3, 32, 32))
    assert feats.shape == (1, 512, 8, 8)
    assert m.classifier.fc1.in_features == 512 * 7 * 7 and m.classifier.fc1.out_features == 1024
    assert m.classifier.fc_out.in_features == 1024  # Table 9: one hidden layer


def test_wide_resnet_generic_depth_and_width() -> None:
    m = create_model("wide_resnet", depth=16, widen_factor=2)
    assert model_info(m)["n_activations"] == 2 * 6 + 1
    assert m.fc.in_features == 128
    with pytest.raises(ValueError, match="6n \\+ 4"):
        create_model("wide_resnet", depth=27)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": "resnet19"}, ValueError, "Known: .*resnet18"),
        ({"name": "resnet18", "num_classes": 1}, ValueError, "num_classes must be an int >= 2"),
        ({"name": "resnet18", "num_classes": 2.5}, ValueError, "num_classes"),
        ({"name": "resnet18", "in_channels": 0}, ValueError, "in_channels must be an int >= 1"),
        ({"name": "resnet18", "hidden": (3,)}, ValueError, "unknown option.*hidden"),
        ({"name": "resnet18", "act_layer": "nope"}, ValueError, "unknown activation"),
        ({"name": "resnet18", "act_layer": nn.ReLU()}, TypeError, "module instance"),
        ({"name": "resnet18", "mean": [0.1, 0.2]}, ValueError, "2 values.*3 input channels"),
        ({"name": "lenet5", "input_size": 4}, ValueError, "at least"),
        ({"name": "mlp_general", "input_size": (3, 28, 28)}, ValueError, "in_channels=1"),
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, object], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        create_model(**kwargs)


def test_wrong_input_shape_raises() -> None:
    with pytest.raises(ValueError, match=r"expects images \(N, 3, H, W\)"):
        create_model("resnet18")(torch.rand(2, 1, 32, 32))


def test_config_is_json_and_rebuilds_the_same_model() -> None:
    act = functools.partial(SReLU, max_value=0.1)
    m = create_model("mlp_general", act_layers=[None, act], hidden=(20, 10), mean="mnist")
    cfg = json.loads(json.dumps(m.robustact_config))
    assert cfg["name"] == "mlp_general" and cfg["rebuildable"] is True
    assert cfg["kwargs"]["act_layers"] == [None, {"name": "srelu", "kwargs": {"max_value": 0.1}}]
    assert cfg["kwargs"]["hidden"] == [20, 10]
    rebuilt = model_from_config(cfg)
    rebuilt.load_state_dict(m.state_dict())
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(rebuilt(x), m(x))
    assert isinstance(rebuilt.act2, SReLU) and rebuilt.act2.max_value == 0.1


def test_describe_act_layer_forms() -> None:
    assert describe_act_layer(None) == "relu"
    assert describe_act_layer("SReLU") == "srelu"
    assert describe_act_layer(SReLU) == "srelu"
    assert describe_act_layer(nn.GELU) == "gelu"
    assert describe_act_layer(functools.partial(DReLU, init_max=5.0)) == {
        "name": "drelu",
        "kwargs": {"init_max": 5.0},
    }
    m = create_model("lenet5", act_layer=lambda: nn.Tanh())
    assert m.robustact_config["rebuildable"] is False
    with pytest.raises(ValueError, match="cannot be rebuilt"):
        model_from_config(m.robustact_config)


def test_rebuild_from_dict_act_layer_with_drelu() -> None:
    m = create_model("small_cnn", act_layer={"name": "drelu", "kwargs": {"init_max": 3.0}})
    caps = [a for _, a in find_activations(m)]
    assert all(isinstance(a, DReLU) and float(a.max_value.detach()[0]) == 3.0 for a in caps)
    assert [a.num_features for a in caps] == [32, 32, 64, 64, 200, 200]


def test_surgery_works_on_zoo_models() -> None:
    m = create_model("lenet5")
    swapped: Any
    swapped, names = replace_activations(m, "srelu", match="classifier.*")
    assert names == ["classifier.act3", "classifier.act4"]
    capped, _ = insert_capped_layer(m, "before_output", activation="drelu")
    assert capped(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert type(swapped.features.act1) is nn.ReLU


def test_device_follows_input_and_meta_device_works() -> None:
    # no .cuda() anywhere: the model runs on whatever device holds its weights and input
    m = create_model("shallow_cnn").to("meta")
    assert m(torch.empty(2, 1, 28, 28, device="meta")).device.type == "meta"


def _same_architecture(a: nn.Module, b: nn.Module) -> bool:
    types = [(n, type(m).__name__) for n, m in a.named_modules()]
    shapes = {k: tuple(v.shape) for k, v in a.state_dict().items()}
    return types == [(n, type(m).__name__) for n, m in b.named_modules()] and shapes == {
        k: tuple(v.shape) for k, v in b.state_dict().items()
    }


def test_surgery_is_recorded_and_replayed_by_the_config() -> None:
    m = create_model("lenet5", act_layer="srelu")
    swapped: Any
    capped: Any
    swapped, _ = replace_activations(m, "relu", match="classifier.act4")
    capped, _ = insert_capped_layer(swapped, "before_output", width=32, activation="drelu")
    cfg = json.loads(json.dumps(capped.robustact_config))
    assert [e["op"] for e in cfg["edits"]] == ["replace_activations", "insert_capped_layer"]
    assert cfg["edits"][0]["names"] == ["classifier.act4"] and cfg["edits"][1]["width"] == 32
    assert "edits" not in m.robustact_config  # the original's record is left alone
    rebuilt: Any = model_from_config(cfg)
    assert _same_architecture(rebuilt, capped) and rebuilt.robustact_config == cfg
    assert type(rebuilt.classifier.act4) is nn.ReLU
    # a lambda activation is recorded as not rebuildable, and rebuilding says so
    odd: Any
    odd, _ = replace_activations(m, lambda: nn.Tanh(), match=0)
    assert odd.robustact_config["rebuildable"] is False
    with pytest.raises(ValueError, match="cannot be rebuilt"):
        model_from_config(odd.robustact_config)


def test_unknown_edit_fails_with_the_known_ones() -> None:
    cfg = {**create_model("lenet5").robustact_config, "edits": [{"op": "teleport"}]}
    with pytest.raises(ValueError, match="teleport"):
        model_from_config(cfg)
