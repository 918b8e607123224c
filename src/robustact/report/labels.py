"""Method labels for runner records (no scipy, no matplotlib: the demo's terminal
table needs them without the ``report`` extra)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from robustact.report.tables import fmt_key

__all__ = ["METHOD_SECTIONS", "with_method_labels"]


def _distinct(records: Sequence[Mapping[str, Any]], key: str) -> list[Any]:
    return list(dict.fromkeys(r.get(key) for r in records))


#: Config sections whose varying keys tell methods apart in experiment-runner records
#: (``cfg.activation.name``, ``cfg.activation.max_value``, ``cfg.objective.lam``, ...).
METHOD_SECTIONS = ("cfg.model.", "cfg.activation.", "cfg.preprocess.", "cfg.defense.",
                   "cfg.transform.", "cfg.objective.", "cfg.training.", "cfg.swap.")  # fmt: skip


def with_method_labels(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``records`` with a ``"method"`` label built from the config keys that vary.

    Runner records spread a cell's config over keys such as ``cfg.activation.name`` and
    ``cfg.activation.max_value``; one method is one combination of every such key that
    differs between cells (datasets and seeds excluded: they are rows and repeats). The
    label reads ``srelu(max_value=0.01, where=act2) + natural``: per section its name and
    the arguments that vary. Records that already carry ``cfg.method`` are left as they are.
    """
    out = [dict(r) for r in records]
    if not out or any("cfg.method" in r for r in out):
        return out
    keys = sorted({k for r in out for k in r if k.startswith(METHOD_SECTIONS)})
    if not keys:  # not runner records: nothing to label
        return out
    varying = {k for k in keys if len(_distinct(out, k)) > 1}
    for r in out:
        parts = []
        for sec in METHOD_SECTIONS:
            sec_keys = [k for k in keys if k.startswith(sec)]
            if not any(k in varying for k in sec_keys):
                continue
            name = r.get(sec + "name")
            if sec == "cfg.swap." and all(r.get(k) is None for k in sec_keys):
                parts.append("no swap")  # the cell evaluated the model it trained
                continue
            args = [
                f"{k[len(sec) :]}={fmt_key(r[k])}"
                for k in sec_keys
                if k in varying and k != sec + "name" and r.get(k) is not None
            ]
            label = fmt_key(name) if name is not None else sec[4:-1]
            label = f"swap {label}" if sec == "cfg.swap." else label
            parts.append(f"{label}({', '.join(args)})" if args else label)
        r["method"] = " + ".join(parts) if parts else "all"
    return out
