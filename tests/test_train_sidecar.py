"""Tampered checkpoint sidecars: every bad field is one CheckpointError line naming it, never
a raw KeyError/ValueError/RecursionError; a fuzz test over sidecar JSON holds it to that."""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustact.models import create_model
from robustact.surgery import replace_activations
from robustact.train import CheckpointError, load_checkpoint, save_checkpoint

LEGACY = Path(__file__).parent / "data" / "legacy_v1"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A small rebuildable, surgery-edited checkpoint with cell-style extra fields."""
    torch.manual_seed(0)
    act = {"name": "srelu", "kwargs": {"max_value": 0.5}}
    model = create_model("mlp_general", in_channels=1, hidden=[8], input_size=(8, 8),
                         act_layer=act)  # fmt: skip
    model, _ = replace_activations(model, "relu", 0)
    extra = {"cell": {"model": {"name": "mlp_general"}, "activation": {"name": "srelu"}},
             "cell_id": "abc", "input_shape": [1, 8, 8], "num_classes": 10}  # fmt: skip
    path = save_checkpoint(tmp_path_factory.mktemp("ck") / "model", model, extra=extra)
    return path, json.loads(path.with_suffix(".json").read_text())


def _write(path: Path, meta: Any) -> None:
    path.with_suffix(".json").write_text(json.dumps(meta) if not isinstance(meta, str) else meta)


def _set(meta: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    meta = copy.deepcopy(meta)
    *parents, last = dotted.split(".")
    d = meta
    for k in parents:
        d = d[k]
    if value is _DELETE:
        del d[last]
    else:
        d[last] = value
    return meta


_DELETE = object()


def _one_line_error(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert type(info.value) is CheckpointError and "\n" not in msg and len(msg) < 400, msg
    return msg


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("weights.file", _DELETE, "field weights.file must be"),
        ("weights.file", "../../etc/passwd.safetensors", "field weights.file must be"),
        ("weights.bytes", -1, "field weights.bytes must be an int >= 0"),
        ("weights.sha256", "xyz", "field weights.sha256"),
        ("weights", "abc", "field weights must be a JSON object"),
        ("extra.input_shape", "abc", "field extra.input_shape must be [C, H, W]"),
        ("extra.num_classes", 1.5, "field extra.num_classes"),
        ("extra.cell", "notadict", "field extra.cell must be a cell config object"),
        ("extra", [1], "field extra must be a JSON object"),
        ("format_version", "2", "field format_version must be an int"),
        ("format_version", 99, "format version 99"),
        ("kind", "weird", "field kind must be one of"),
        ("history", "abc", "field history must be a list"),
        ("model.activations", "x", "field model.activations must be a list"),
        ("model.config.kwargs", [1], "field model.config.kwargs must be a JSON object"),
        ("model.config.edits", [{"op": 3}], "field model.config.edits[0].op"),
        ("model.config.edits", [{"op": "teleport"}], "field model.config does not rebuild"),
        ("model.config.kwargs.act_layer.kwargs.max_value", "abc",
         "field model.config does not rebuild a model (ValueError: could not convert"),
        ("model.config.kwargs.hidden", [10**9], "the sidecar does not describe these weights"),
        ("model.config.name", "no_such_model", "field model.config does not rebuild"),
    ],
)  # fmt: skip
def test_each_tampered_field_is_named(
    saved: tuple[Path, dict[str, Any]], tmp_path: Path, field: str, value: Any, named: str
) -> None:
    src, meta = saved
    path = tmp_path / src.name
    for f in src.parent.iterdir():
        shutil.copy(f, tmp_path / f.name)
    _write(path, _set(meta, field, value))
    assert named in _one_line_error(path)


def test_deep_nesting_and_junk_documents(
    saved: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    src, meta = saved
    path = tmp_path / src.name
    for f in src.parent.iterdir():
        shutil.copy(f, tmp_path / f.name)
    deep = '{"format": "robustact-checkpoint", "extra": ' + "[" * 200_000 + "]" * 200_000 + "}"
    _write(path, deep)
    assert "nested deeper than" in _one_line_error(path)
    _write(
        path, _set(meta, "history", [[[[[[[[[[]]]]]]]]]] * 2 + [json.loads("[" * 70 + "]" * 70)])
    )
    assert "nested deeper than" in _one_line_error(path)
    path.with_suffix(".json").write_bytes(b"\xff\xfe\x00junk")
    assert "not JSON" in _one_line_error(path)


def test_tampered_legacy_cell_sidecar(tmp_path: Path) -> None:
    for f in LEGACY.iterdir():
        shutil.copy(f, tmp_path / f.name)
    path = tmp_path / "model.safetensors"
    meta = json.loads(path.with_suffix(".json").read_text())
    _write(path, _set(meta, "extra.cell.activation.max_value", "abc"))
    assert "field extra.cell does not rebuild a model" in _one_line_error(path)
    _write(path, _set(meta, "extra.num_classes", _DELETE))
    assert "needs extra.input_shape and extra.num_classes" in _one_line_error(path)


def test_training_state_sidecar_fields(tmp_path: Path) -> None:
    from robustact.train import Natural, TrainConfig, fit
    from robustact.train.checkpoint import latest_training_state, load_training_state

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.rand(8, 1, 2, 2), torch.randint(0, 2, (8,))
    fit(model, Natural(), (x, y), TrainConfig(epochs=1, progress=False), checkpoint_dir=tmp_path)
    side = latest_training_state(tmp_path)
    assert side is not None
    meta = json.loads(side.read_text())
    opt = torch.optim.Adam(model.parameters())
    for field, value, named in [
        ("optimizer_scalars", _DELETE, "field optimizer_scalars must be"),
        ("optimizer_scalars.state", {"x": 1}, "optimizer_scalars.state.x"),
        ("epoch", -3, "field epoch must be an int >= 0"),
        ("optimizer.file", 7, "field optimizer.file"),
    ]:
        side.write_text(json.dumps(_set(meta, field, value)))
        with pytest.raises(CheckpointError, match=named.replace(".", r"\.")):
            load_training_state(side, model, opt)


# ------------------------------------------------------------------ fuzz
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            out += _paths(v, (*prefix, i))
    return out


def _mutated(meta: dict[str, Any], where: tuple[Any, ...], value: Any, delete: bool) -> Any:
    meta = copy.deepcopy(meta)
    d: Any = meta
    for k in where[:-1]:
        d = d[k]
    if delete and isinstance(d, dict):
        del d[where[-1]]
    else:
        d[where[-1]] = value
    return meta


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_sidecars_load_or_fail_in_one_line(
    saved: tuple[Path, dict[str, Any]], data: st.DataObject
) -> None:
    src, meta = saved
    paths = _paths(meta)
    doc = data.draw(
        st.one_of(
            st.tuples(st.sampled_from(paths), _JSON, st.booleans()).map(
                lambda t: _mutated(meta, *t)
            ),
            _JSON.map(lambda v: {"format": "robustact-checkpoint", **(v if isinstance(v, dict)
                                                                      else {"x": v})}),
        )
    )  # fmt: skip
    work = src.parent / "fuzz"
    work.mkdir(exist_ok=True)
    for f in src.parent.iterdir():
        if f.is_file():
            shutil.copy(f, work / f.name)
    path = work / src.name
    _write(path, doc)
    t0 = time.perf_counter()
    try:
        model, _ = load_checkpoint(path)
    except CheckpointError as e:
        assert type(e) is CheckpointError and "\n" not in str(e)
    else:
        assert isinstance(model, torch.nn.Module)
    assert time.perf_counter() - t0 < 5.0
