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
    "LoadProblemError",
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


class LoadProblemError(ValueError):
    """The document breaks a bound or is not valid YAML (``where`` is "line L, column C"
    or empty); the caller prefixes the file name."""

    def __init__(self, message: str, where: str = "") -> None:
        self.where = where
        super().__init__(message)


def _at(node: Node) -> str:
    m = node.start_mark
    return f"line {m.line + 1}, column {m.column + 1}"


def _too_big(count: int | None = None) -> LoadProblemError:
    got = "more than" if count is None else f"{count:,} >"
    return LoadProblemError(
        f"the spec expands to {got} {MAX_SPEC_VALUES:,} values (YAML anchors/aliases "
        "repeat a value each time they are used); write the values out or split the spec"
    )


def _too_deep() -> LoadProblemError:
    return LoadProblemError(f"the spec nests lists/mappings more than {MAX_SPEC_DEPTH} deep")


def _check_unique_keys(node: MappingNode) -> None:
    seen: dict[tuple[str, str], Node] = {}
    for key, _ in node.value:
        if not isinstance(key, ScalarNode) or key.tag == _MERGE:
            continue
        first = seen.setdefault((key.tag, key.value), key)
        if first is not key:
            raise LoadProblemError(
                f"duplicate key {show(key.value)} (first given at line "
                f"{first.start_mark.line + 1}); give each key once",
                _at(key),
            )


def _node_children(node: Any) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        _check_unique_keys(node)
        return [n for pair in node.value for n in pair]
    return []


def _value_children(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return [v for kv in value.items() for v in kv]
    return list(value) if isinstance(value, (list, tuple)) else []


def _walk(root: Any, children: Any, where: Any) -> None:
    """Size a graph (nodes or values) without expanding it: an iterative depth-first walk
    sizing each distinct container once (shared ones are reused), so the cost is linear
    in the distinct containers, whatever the graph expands to."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, int, list[Any] | None]] = [(root, 1, None)]
    while stack:
        item, depth, kids = stack.pop()
        iid = id(item)
        if kids is not None:  # all children sized
            on_path.discard(iid)
            size[iid] = 1 + sum(size.get(id(k), 1) for k in kids)
            if size[iid] > MAX_SPEC_VALUES:
                raise _too_big()
            continue
        if iid in size:
            continue
        if iid in on_path:
            raise LoadProblemError(
                "a value contains itself (a YAML alias inside its own anchor, or "
                "a recursive list or mapping); write the value out",
                where(item),
            )
        if depth > MAX_SPEC_DEPTH:
            raise _too_deep()
        kids = children(item)
        if not kids and not isinstance(item, (Mapping, list, tuple, SequenceNode, MappingNode)):
            continue  # a scalar: size 1, nothing to remember
        if len(kids) > MAX_SPEC_VALUES:
            raise _too_big()
        on_path.add(iid)
        stack.append((item, depth, kids))
        stack.extend((k, depth + 1, None) for k in kids)


def check_node_graph(root: Node) -> None:
    """Enforce the bounds on a composed YAML graph before any value is built.

    Raises:
        LoadProblemError: a repeated key, a recursive alias, too deep or too big.
    """
    _walk(root, _node_children, _at)


def check_value_size(data: Any) -> None:
    """The same bounds on an already built document (``parse_spec`` of a Python object,
    whose lists may be shared or contain themselves).

    Raises:
        LoadProblemError: too big, too deep or recursive.
    """
    _walk(data, _value_children, lambda _: "")


# libyaml when present (the pure-Python parser takes seconds per 100 KiB); its composer
# recurses in C, so nesting is bounded on the token stream first (the scanner is iterative)
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPEN = (yaml.BlockSequenceStartToken, yaml.BlockMappingStartToken,
         yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken)  # fmt: skip
_CLOSE = (yaml.BlockEndToken, yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken)


def _check_tokens(text: str) -> None:
    depth = 0
    for count, token in enumerate(yaml.scan(text, Loader=_BaseLoader)):
        if count > 4 * MAX_SPEC_VALUES + 16:
            raise _too_big()
        if isinstance(token, _OPEN):
            depth += 1
            if depth > MAX_SPEC_DEPTH:
                raise _too_deep()
        elif isinstance(token, _CLOSE):
            depth -= 1


class _Loader(_BaseLoader):
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
        LoadProblemError: not UTF-8, too big, invalid YAML or a broken bound.
    """
    if len(raw) > MAX_SPEC_BYTES:
        raise LoadProblemError(f"the file is larger than {MAX_SPEC_BYTES:,} bytes, the most a "
                          "spec may have")  # fmt: skip
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LoadProblemError(
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
        raise LoadProblemError(f"invalid YAML: {clip(str(problem), 200)}", where) from None
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
