"""Fuzzing spec documents: whatever the input (a mutated valid spec, YAML-like text or raw
bytes), the result is a valid Spec or a SpecError whose lines are single, bounded lines,
never another exception, in bounded time and memory."""

from __future__ import annotations

import copy
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustact.experiments.spec import Spec, SpecError, load_spec, parse_spec


def base() -> dict[str, Any]:
    return {
        "name": "fuzz",
        "grid": {
            "datasets": ["digits"],
            "models": [{"name": "mlp_general", "hidden": [8]}],
            "activations": ["relu", {"name": "srelu", "max_value": 0.5, "where": "act1"}],
            "objectives": ["natural", {"name": "trades", "beta": 1, "eps": 0.1, "steps": 1}],
            "preprocess": ["none", {"name": "jpeg", "quality": 50}],
            "seeds": [0],
            "exclude": [{"activation": "relu", "objective": "trades"}],
        },
        "training": {"epochs": 1, "lr": 0.01},
        "evaluation": {"protocols": ["seed", {"name": "mine", "attacks": [{"attack": "fgsm"}]}],
                       "eps": [0.1], "diagnostics": ["zero_gradient"]},
        "quick": {"grid": {"seeds": [1]}, "training": {"epochs": 1}},
    }  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def _warm() -> None:
    """One validation first: the first meta-device model imports torch._dynamo (seconds),
    which is not what the time bound is about."""
    parse_spec(base())


WORDS = ["name", "grid", "datasets", "models", "activations", "objectives", "seeds", "where",
         "insert", "width", "max_value", "training", "evaluation", "eps", "protocols", "attacks",
         "attack", "preprocess", "transforms", "swaps", "count", "include", "exclude", "quick",
         "none", "relu", "srelu", "drelu", "cap", "pgd", "two_phase", "second", "digits",
         "mlp_general", "lenet5", "act1", "re:(", "linf", "type", "n", "epochs", "lr"]  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(WORDS),
    st.text(max_size=12),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(WORDS), st.text(max_size=6), st.integers()),
                        inner, max_size=4),
    ),
    max_leaves=12,
)  # fmt: skip


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    )
    for k, v in items:
        out += paths(v, (*prefix, k))
    return out


def check(outcome: Any) -> None:
    if isinstance(outcome, SpecError):
        assert outcome.errors and str(outcome).splitlines() == outcome.errors
        assert all(0 < len(line) < 1200 for line in outcome.errors), outcome.errors
    else:
        assert isinstance(outcome, Spec)
        assert outcome.cells()


def attempt(fn: Any, *args: Any, memory: bool = False, **kw: Any) -> Any:
    """``fn``'s Spec or SpecError, within 30 s (and 64 MB of allocations with ``memory``;
    tracing slows validation tenfold, so only the cheap text fuzzers trace)."""
    if memory:
        tracemalloc.start()
    t0 = time.perf_counter()
    try:
        out = fn(*args, **kw)
    except SpecError as e:
        out = e
    finally:
        if memory:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert peak < 64 << 20, peak
    assert time.perf_counter() - t0 < 30.0
    return out


FUZZ = settings(
    max_examples=int(os.environ.get("ROBUSTACT_FUZZ_EXAMPLES", "40")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(st.data())
def test_mutated_specs_give_a_spec_or_spec_error(data: st.DataObject) -> None:
    doc: Any = base()
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(paths(doc)))
        value = data.draw(values)
        if not where:
            doc = value
            continue
        node = doc
        for k in where[:-1]:
            node = node[k]
        if isinstance(node, dict) and data.draw(st.booleans()):
            node.pop(where[-1], None)
        else:
            node[where[-1]] = value
    check(attempt(parse_spec, copy.deepcopy(doc), source="fuzz.yaml"))


TOKENS = ["&a ", "*a", "&b ", "*b", "[", "]", "{", "}", ", ", ": ", "- ", "\n", "  ", "<<: ",
          "!!python/object:os.system ", "!!binary ", "? ", "|\n  ", "'", '"', "#", "\t", "---\n",
          "%YAML 1.1\n", "\x00", "\ud7ff", "1e999", ".nan", "~", "name: x\n", "grid: ",
          "seeds: ", "evaluation: {eps: 0.1}\n", "datasets: [digits]", "models: [mlp]"]  # fmt: skip


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_yaml_like_text_gives_a_spec_or_spec_error(tmp_path_factory: Any, text: str) -> None:
    path = Path(tmp_path_factory.mktemp("fuzz")) / "spec.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check(attempt(load_spec, path, memory=True))


@FUZZ
@given(st.binary(max_size=200))
def test_raw_bytes_give_a_spec_or_spec_error(tmp_path_factory: Any, raw: bytes) -> None:
    path = Path(tmp_path_factory.mktemp("fuzz")) / "spec.yaml"
    path.write_bytes(raw)
    outcome = attempt(load_spec, path, memory=True)
    check(outcome)
    if isinstance(outcome, SpecError):
        assert outcome.errors[0].startswith(f"{path}: ")
