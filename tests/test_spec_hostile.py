"""Hostile spec files: an alias bomb, merge-key bombs, recursive aliases, duplicate keys,
binary files, huge files, deep nesting and huge grids each fail fast with one SpecError line
naming the file, in bounded time and memory; a large grid expands in linear time."""

from __future__ import annotations

import itertools
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from robustact.experiments._specload import MAX_SPEC_BYTES, MAX_SPEC_VALUES, show
from robustact.experiments.spec import MAX_GRID_CELLS, SpecError, load_spec, parse_spec


def one_error(path: Path) -> str:
    """The single error line of loading ``path``, within 5 s and 50 MB of allocations."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(SpecError) as info:
            load_spec(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 5.0
    assert peak < 50 << 20, peak
    (line,) = info.value.errors
    assert "\n" not in line and line.startswith(f"{path}: ") and len(line) < 1200, line
    return line


def spec_text(seeds: str) -> str:
    return (
        "name: t\ngrid:\n  datasets: [digits]\n  models: [mlp_general]\n"
        f"  seeds: {seeds}\nevaluation: {{eps: 0.1}}\n"
    )


def alias_bomb(levels: int = 9) -> str:
    """Nine levels of ``&x [*y, *y, ...]`` (9**9 seeds, 447 bytes as in issue 14)."""
    names = [f"l{i}" for i in range(levels + 1)]
    lines = [f"{names[0]}: &{names[0]} [0, 0, 0, 0, 0, 0, 0, 0, 0]"]
    for prev, cur in itertools.pairwise(names):
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines)


def test_alias_bomb_in_seeds_fails_fast(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    bomb = alias_bomb()
    inner = bomb.replace("\n", ", ").replace(": &", ": &")  # one flow mapping per level
    path.write_text(
        "name: bomb\nbombs: {" + inner + "}\ngrid:\n  datasets: [digits]\n  models: [mlp_general]\n"
        "  seeds: *l9\nevaluation: {eps: 0.1}\n"
    )
    line = one_error(path)
    assert f"expands to more than {MAX_SPEC_VALUES:,} values" in line


def test_alias_bomb_built_in_python_fails_fast() -> None:
    seeds: Any = [0] * 9
    for _ in range(9):
        seeds = [seeds] * 9  # shared lists: 9**10 values, a few hundred objects
    doc = {"name": "b", "grid": {"datasets": ["digits"], "models": ["mlp_general"],
                                 "seeds": seeds}, "evaluation": {"eps": 0.1}}  # fmt: skip
    t0 = time.perf_counter()
    with pytest.raises(SpecError) as info:
        parse_spec(doc, source="b.yaml")
    assert time.perf_counter() - t0 < 5.0
    (line,) = info.value.errors
    assert line.startswith("b.yaml: the spec expands to more than")


def test_merge_key_bomb_fails_before_construction(tmp_path: Path) -> None:
    lines = ["a0: &a0 {k: 1}"]
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} {{<<: [" + ", ".join([f"*a{i - 1}"] * 9) + "]}")
    path = tmp_path / "merge.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert "expands to more than" in one_error(path)


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rec.yaml"
    path.write_text(spec_text("&s [0, *s]"))
    assert "a value contains itself (a YAML alias inside its own anchor" in one_error(path)
    doc: Any = {"name": "r", "grid": {"datasets": ["digits"], "models": ["mlp_general"]},
                "evaluation": {"eps": 0.1}}  # fmt: skip
    doc["grid"]["seeds"] = [0]
    doc["grid"]["seeds"].append(doc["grid"]["seeds"])
    with pytest.raises(SpecError, match="contains itself"):
        parse_spec(doc)


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(spec_text("[0]") + "name: again\n")
    line = one_error(path)
    assert 'line 7, column 1: duplicate key "name" (first given at line 1)' in line
    path.write_text(
        spec_text("[0]").replace("evaluation: {eps: 0.1}", "evaluation: {eps: 0.1, eps: 0.2}")
    )
    assert 'duplicate key "eps"' in one_error(path)
    # a merge key may be overridden: that is not a duplicate
    path.write_text("base: &b {eps: 0.1, n: 5}\n" + spec_text("[0]").replace(
        "evaluation: {eps: 0.1}", "evaluation: {<<: *b, eps: 0.2}"))  # fmt: skip
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert [e for e in info.value.errors if "duplicate key" in e] == []
    assert any("base: unknown key" in e for e in info.value.errors)


def test_binary_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" * 20)
    assert "not a UTF-8 text file (byte 0x89 at offset 0)" in one_error(path)


def test_huge_and_deep_files(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (MAX_SPEC_BYTES + 10))
    assert f"larger than {MAX_SPEC_BYTES:,} bytes" in one_error(path)
    path.write_text(
        "a: " + "[" * 100_000 + "]" * 100_000 + "\n"
    )  # libyaml would overflow its stack
    assert "more than 64 deep" in one_error(path)
    path.write_text("a:\n" + "- " * 100_000 + "1\n")
    assert "nests lists/mappings more than 64 deep" in one_error(path)
    path.write_text("a: " + "[" * 70 + "]" * 70 + "\n")
    assert "more than 64 deep" in one_error(path)


def test_python_tags_stay_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['touch pwned']\n")
    assert "invalid YAML: could not determine a constructor" in one_error(path)
    assert not (tmp_path / "pwned").exists()


def test_huge_grid_is_refused_before_expansion() -> None:
    doc = {
        "name": "huge",
        "grid": {
            "datasets": ["digits"],
            "models": [{"name": "mlp_general", "hidden": [k]} for k in range(1, 11)],
            "activations": [{"name": "srelu", "max_value": float(k)} for k in range(1, 11)],
            "objectives": [{"name": "trades", "beta": float(k)} for k in range(1, 11)],
            "seeds": list(range(1001)),
        },
        "evaluation": {"eps": 0.1},
    }
    t0 = time.perf_counter()
    with pytest.raises(SpecError) as info:
        parse_spec(doc, source="huge.yaml")
    assert time.perf_counter() - t0 < 10.0
    (line,) = info.value.errors
    assert line.startswith("huge.yaml: grid: the grid has 1,001,000 cells")
    assert f"at most {MAX_GRID_CELLS:,}" in line


def test_error_lines_quote_user_values_briefly() -> None:
    doc = {
        "name": "t",
        "grid": {"datasets": ["digits"], "models": [{"name": "x" * 100_000}],
                 "activations": [{"name": "srelu", "max_value": list(range(5_000))}],
                 "seeds": ["a\nb\u2028c"]},
        "evaluation": {"eps": 0.1, "n": {"k" * 1000: 1}},
    }  # fmt: skip
    with pytest.raises(SpecError) as info:
        parse_spec(doc, source="s.yaml")
    lines = info.value.errors
    assert str(info.value).splitlines() == lines and len(lines) == 4, lines
    assert all(len(line) < 1200 for line in lines), [len(x) for x in lines]
    assert show(list(range(5_000))).endswith("...") and len(show("y" * 10**6)) <= 80


def test_non_json_values_are_spec_errors() -> None:
    doc = {"name": "t", "grid": {"datasets": ["digits"],
                                 "models": [{"name": "mlp_general", "hidden": {1: 2}}]},
           "evaluation": {"eps": 0.1}}  # fmt: skip
    with pytest.raises(SpecError):
        parse_spec(doc)


def big_grid(seeds: int) -> dict[str, Any]:
    return {
        "name": "big",
        "grid": {
            "datasets": ["digits"], "models": ["mlp_general"],
            "activations": [{"name": "srelu", "max_value": float(k)} for k in range(1, 11)],
            "objectives": [{"name": "trades", "beta": float(k)} for k in range(1, 11)],
            "seeds": list(range(seeds)),
        },
        "evaluation": {"eps": 0.1, "protocols": ["seed"]},
    }  # fmt: skip


def test_cell_expansion_is_linear() -> None:
    small, large = parse_spec(big_grid(20)), parse_spec(big_grid(400))
    best = {"small": float("inf"), "large": float("inf")}
    for _ in range(4):  # interleaved, so a busy machine slows both alike
        for key, spec in (("small", small), ("large", large)):
            t0 = time.perf_counter()
            cells = spec.cells()
            best[key] = min(best[key], time.perf_counter() - t0)
    assert len(cells) == len({c.cell_id for c in cells}) == 40_000
    # 2 000 vs 40 000 cells: linear is 20x; the old expansion copied every axis for each
    # cell (quadratic in the seeds: 400x here)
    assert best["large"] / best["small"] < 60, best
