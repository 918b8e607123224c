"""Reading a spec safely: bounded YAML in, bounded text out.

A spec is untrusted input. Before any value is walked or shown, the document is checked
against documented bounds, so a few hundred hostile bytes cannot cost gigabytes:

* the file is at most :data:`MAX_SPEC_BYTES` of UTF-8 text;
* the YAML graph (after following anchors and aliases, merge keys included) expands to at
  most :data:`MAX_SPEC_VALUES` values, nested at most :data:`MAX_SPEC_DEPTH` deep, and no
  alias refers to the value that contains it; the expanded size is counted on the
  composed node graph with memoisation, so an "alias bomb" is measured, never expanded;
* mapping keys are unique (a repeated key is an error, not "last one wins");
* only plain YAML types are built (``yaml.SafeLoader``: ``!!python/...`` tags are refused).

:func:`show` renders a user value for an error line in at most :data:`SHOW_CHARS`
characters, walking only what it prints.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = [
    "MAX_SPEC_BYTES",
    "MAX_SPEC_DEPTH",
    "MAX_SPEC_VALUES",
    "SHOW_CHARS",
    "LoadProblem",
    "check_value_size",
    "clip",
    "read_yaml",
    "show",
]

#: Largest spec file read (bytes). The biggest shipped recipe is under 3 KiB.
MAX_SPEC_BYTES = 256 << 10
#: Most values (scalars, lists and mappings, counted after expanding aliases) in a spec.
#: The biggest shipped recipe has about 300; a 2 000-seed grid about 2 100.
MAX_SPEC_VALUES = 20_000
#: Deepest nesting of lists/mappings in a spec.
MAX_SPEC_DEPTH = 64
#: Longest rendering of a user value inside an error line.
SHOW_CHARS = 80

_MERGE = "tag:yaml.org,2002:merge"


class LoadProblem(ValueError):
    """The document breaks a bound or is not valid YAML (``where`` is "line L, column C"
    or empty); the caller prefixes the file name."""

    def __init__(self, message: str, where: str = "") -> None:
        self.where = where
        super().__init__(message)


def _at(node: Node) -> str:
    m = node.start_mark
    return f"line {m.line + 1}, column {m.column + 1}"


def _too_big(count: int | None = None) -> LoadProblem:
    got = "more than" if count is None else f"{count:,} >"
    return LoadProblem(
        f"the spec expands to {got} {MAX_SPEC_VALUES:,} values (YAML anchors/aliases "
        "repeat a value each time they are used); write the values out or split the spec"
    )


def _too_deep() -> LoadProblem:
    return LoadProblem(f"the spec nests lists/mappings more than {MAX_SPEC_DEPTH} deep")


def _check_unique_keys(node: MappingNode) -> None:
    seen: dict[tuple[str, str], Node] = {}
    for key, _ in node.value:
        if not isinstance(key, ScalarNode) or key.tag == _MERGE:
            continue
        first = seen.setdefault((key.tag, key.value), key)
        if first is not key:
            raise LoadProblem(
                f"duplicate key {show(key.value)} (first given at line "
                f"{first.start_mark.line + 1}); give each key once",
                _at(key),
            )


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def check_node_graph(root: Node) -> None:
    """Enforce the bounds on a composed YAML graph without expanding it.

    Iterative depth-first walk; each distinct node is sized once (aliases share nodes), so
    the cost is linear in the file, whatever it expands to.

    Raises:
        LoadProblem: a repeated key, a recursive alias, too deep or too big.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        nid = id(node)
        if done:
            on_path.discard(nid)
            size[nid] = 1 + sum(size[id(c)] for c in _children(node))
            if size[nid] > MAX_SPEC_VALUES:
                raise _too_big()
            continue
        if nid in size:
            continue
        if nid in on_path:
            raise LoadProblem("an alias refers to a value that contains it (a recursive "
                              "value); write the value out", _at(node))  # fmt: skip
        if depth > MAX_SPEC_DEPTH:
            raise _too_deep()
        if isinstance(node, MappingNode):
            _check_unique_keys(node)
        on_path.add(nid)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in _children(node))


def check_value_size(data: Any) -> None:
    """The same bounds on an already built document (``parse_spec`` of a Python object,
    whose lists may share or contain themselves).

    Raises:
        LoadProblem: too big, too deep or recursive.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, int, bool]] = [(data, 1, False)]
    while stack:
        value, depth, done = stack.pop()
        if not isinstance(value, (list, tuple, Mapping)):
            continue
        vid = id(value)
        items = list(value.items()) if isinstance(value, Mapping) else list(value)
        kids = [v for kv in items for v in kv] if isinstance(value, Mapping) else items
        if done:
            on_path.discard(vid)
            size[vid] = 1 + sum(size.get(id(k), 1) for k in kids)
            if size[vid] > MAX_SPEC_VALUES:
                raise _too_big()
            continue
        if vid in size:
            continue
        if vid in on_path:
            raise LoadProblem("a value contains itself (a recursive list or mapping)")
        if depth > MAX_SPEC_DEPTH:
            raise _too_deep()
        if len(kids) > MAX_SPEC_VALUES:
            raise _too_big(len(kids))
        on_path.add(vid)
        stack.append((value, depth, True))
        stack.extend((k, depth + 1, False) for k in kids)


# libyaml when present (the pure-Python parser takes seconds per 100 KiB); its composer
# recurses in C, so nesting is bounded on the token stream first (the scanner is iterative)
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPEN = (yaml.BlockSequenceStartToken, yaml.BlockMappingStartToken,
         yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken)  # fmt: skip
_CLOSE = (yaml.BlockEndToken, yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken)


def _check_tokens(text: str) -> None:
    depth = count = 0
    for token in yaml.scan(text, Loader=_BaseLoader):
        count += 1
        if count > 4 * MAX_SPEC_VALUES + 16:
            raise _too_big()
        if isinstance(token, _OPEN):
            depth += 1
            if depth > MAX_SPEC_DEPTH:
                raise _too_deep()
        elif isinstance(token, _CLOSE):
            depth -= 1


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Safe loader that checks the composed graph before building any value."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        check_node_graph(node)
        return self.construct_document(node)


def read_yaml(raw: bytes) -> Any:
    """The document of a spec file's bytes (plain YAML types only).

    Raises:
        LoadProblem: not UTF-8, too big, invalid YAML or a broken bound.
    """
    if len(raw) > MAX_SPEC_BYTES:
        raise LoadProblem(f"the file is larger than {MAX_SPEC_BYTES:,} bytes, the most a "
                          "spec may have")  # fmt: skip
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LoadProblem(
            f"not a UTF-8 text file (byte 0x{raw[e.start]:02x} at offset {e.start}); a spec "
            "is YAML text"
        ) from None
    loader = None
    try:
        _check_tokens(text)
        loader = _Loader(text)
        return loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise LoadProblem(f"invalid YAML: {clip(str(problem), 200)}", where) from None
    except RecursionError:
        raise _too_deep() from None
    finally:
        if loader is not None:
            loader.dispose()


# --------------------------------------------------------------------------- show


def clip(text: str, limit: int = SHOW_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _render(v: Any, budget: int, depth: int = 0) -> str:
    """JSON-like text of ``v``, walking only what fits in ``budget`` characters."""
    if isinstance(v, str):
        return json.dumps(v if len(v) <= budget else v[:budget] + "...")
    if v is None or isinstance(v, bool):
        return json.dumps(v)
    if isinstance(v, int):
        return str(v) if v.bit_length() < 200 else f"<an integer of {v.bit_length()} bits>"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    if not isinstance(v, (list, tuple, Mapping)):
        return f"<{type(v).__name__}>"
    brackets = "{}" if isinstance(v, Mapping) else "[]"
    if depth >= 3:
        return f"{brackets[0]}...{brackets[1]}"
    parts: list[str] = []
    used = 2
    for item in v.items() if isinstance(v, Mapping) else v:
        if used >= budget:
            parts.append(f"... ({len(v)} items)")
            break
        if isinstance(v, Mapping):
            key = _render(item[0], budget - used, depth + 1)
            text = f"{key}: {_render(item[1], budget - used - len(key), depth + 1)}"
        else:
            text = _render(item, budget - used, depth + 1)
        parts.append(text)
        used += len(text) + 2
    return brackets[0] + ", ".join(parts) + brackets[1]


def show(v: Any) -> str:
    """A user value as written (strings quoted), in at most :data:`SHOW_CHARS` characters."""
    return clip(_render(v, SHOW_CHARS, 0))
