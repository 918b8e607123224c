"""What each recipe's ``--quick`` run must show: a sensible clean accuracy, and the
direction of the source paper's result together with robustact's correction.

Used by ``tests/test_quick_effects.py`` (the checks) and ``benchmarks/quick_recipes.py``
(which records, per recipe, its wall time, clean accuracies and whether the effect shows).
Every check reads the store's flat records (``ResultStore.records()``), so it judges
exactly what ``robustact report`` would show.

Words: the paper protocol is the recipe's ``seed...`` protocol (what the paper ran), the
gap is paper-protocol minus adaptive accuracy, in percentage points.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Record = Mapping[str, Any]

#: Smallest clean accuracy a quick model may have (the digits test split, 10 classes:
#: chance is 0.10). Below it the quick run only shows the plumbing.
MIN_CLEAN = 0.80


@dataclass
class Effect:
    """Whether a recipe's quick run shows the paper's direction and our correction."""

    recipe: str
    shows: bool | None  # None: the recipe states no direction to check
    summary: str
    numbers: dict[str, float] = field(default_factory=dict)


def paper_protocol(records: Sequence[Record]) -> str:
    """The recipe's paper protocol: the first ``seed...`` protocol of its result rows."""
    names = [str(r["protocol"]) for r in records if r.get("kind") == "result"]
    return next(p for p in dict.fromkeys(names) if p.startswith("seed"))


def _cell_value(
    records: Sequence[Record], match: Mapping[str, Any], protocol: str, attack: str,
    eps: float | None,
) -> float | None:  # fmt: skip
    vals = [
        float(r["value"])
        for r in records
        if r.get("kind") == "result" and r.get("metric") == "accuracy" and r.get("item") is None
        and r["protocol"] == protocol and r["attack"] == attack
        and (eps is None or (r.get("eps") is not None and abs(float(r["eps"]) - eps) < 1e-9))
        and all(r.get(k) == v for k, v in match.items())
    ]  # fmt: skip
    return sum(vals) / len(vals) if vals else None


def max_eps(records: Sequence[Record]) -> float:
    """The largest eps of the adaptive protocol's rows (the headline budget; an attack
    with its own threat model, CW-L2 at L2 18, is not one)."""
    return max(
        float(r["eps"])
        for r in records
        if r.get("kind") == "result" and r.get("protocol") == "adaptive" and r.get("eps")
    )


def clean_accuracies(records: Sequence[Record]) -> dict[str, float]:
    """Clean accuracy per cell label (``cfg.*`` that vary), from the first protocol."""
    out: dict[str, float] = {}
    first = next(str(r["protocol"]) for r in records if r.get("kind") == "result")
    varying = _varying_keys(records)
    for r in records:
        if r.get("kind") == "result" and r["protocol"] == first and r["attack"] == "clean" \
                and r.get("metric") == "accuracy" and r.get("item") is None:  # fmt: skip
            label = "/".join(f"{r.get(k)}" for k in varying) or str(r["cell_id"])
            out[label] = float(r["value"])
    return out


def _varying_keys(records: Sequence[Record]) -> list[str]:
    keys = sorted({k for r in records for k in r if k.startswith("cfg.") and k != "cfg.seed"})
    return [k for k in keys if len({json.dumps(r.get(k), default=str) for r in records}) > 1]


def capped_vs_relu(
    recipe: str, records: Sequence[Record], capped: Mapping[str, Any],
    relu: Mapping[str, Any], *, min_paper_diff: float = 0.10, max_left: float = 0.5,
    min_gap: float = 0.05,
) -> Effect:  # fmt: skip
    """The dissertation's Ch.3-4 direction: the capped model beats the ReLU one under the
    paper protocol by ``min_paper_diff`` at the largest eps; our correction: the adaptive
    protocol keeps at most ``max_left`` of that advantage and the capped model's gap is at
    least ``min_gap``."""
    proto, eps = paper_protocol(records), max_eps(records)
    got = {
        "paper_capped": _cell_value(records, capped, proto, "worst", eps),
        "paper_relu": _cell_value(records, relu, proto, "worst", eps),
        "adaptive_capped": _cell_value(records, capped, "adaptive", "worst", eps),
        "adaptive_relu": _cell_value(records, relu, "adaptive", "worst", eps),
    }
    if any(v is None for v in got.values()):
        return Effect(recipe, False, f"missing rows at eps {eps:g}: {got}")
    g = {k: float(v) for k, v in got.items() if v is not None}
    paper_diff = g["paper_capped"] - g["paper_relu"]
    adaptive_diff = g["adaptive_capped"] - g["adaptive_relu"]
    gap = g["paper_capped"] - g["adaptive_capped"]
    shows = (
        paper_diff >= min_paper_diff and adaptive_diff <= max_left * paper_diff and gap >= min_gap
    )
    numbers = {**g, "paper_diff_pp": 100 * paper_diff, "adaptive_diff_pp": 100 * adaptive_diff,
               "gap_capped_pp": 100 * gap, "eps": eps}  # fmt: skip
    summary = (
        f"{proto} at eps {eps:g}: capped beats ReLU by {100 * paper_diff:.1f} pp; adaptive "
        f"leaves {100 * adaptive_diff:.1f} pp; capped gap {100 * gap:.1f} pp"
    )
    return Effect(recipe, shows, summary, numbers)


def gap_of(
    recipe: str, records: Sequence[Record], cell: Mapping[str, Any], *, min_gap: float = 0.05,
    what: str = "",
) -> Effect:  # fmt: skip
    """The paper protocol overstates ``cell``'s robustness by at least ``min_gap``."""
    proto, eps = paper_protocol(records), max_eps(records)
    paper = _cell_value(records, cell, proto, "worst", eps)
    adaptive = _cell_value(records, cell, "adaptive", "worst", eps)
    if paper is None or adaptive is None:
        return Effect(recipe, False, f"missing rows for {dict(cell)} at eps {eps:g}")
    gap = paper - adaptive
    summary = f"{proto} at eps {eps:g}: {what or dict(cell)} gap {100 * gap:.1f} pp"
    numbers = {"paper": paper, "adaptive": adaptive, "gap_pp": 100 * gap, "eps": eps}
    return Effect(recipe, gap >= min_gap, summary, numbers)


_RELU = {"cfg.activation.name": "relu"}
_S001 = {"cfg.activation.name": "srelu", "cfg.activation.max_value": 0.01}


Checker = Callable[[str, Sequence[Record]], Effect]

_NONE = None  # a cell without the optional axis: its cfg.<axis>.name key is absent


def _pair(a: Mapping[str, Any], b: Mapping[str, Any], **kw: float) -> Checker:
    def run(name: str, records: Sequence[Record]) -> Effect:
        return capped_vs_relu(name, records, a, b, **kw)

    return run


_S001_ACT2 = {**_S001, "cfg.activation.where": "act2"}
_NAT = {"cfg.objective.name": "natural"}
_DRELU = {"cfg.objective.name": "drelu_penalty"}
_BRELU = {"cfg.activation.name": "brelu", "cfg.activation.alpha": 1.0}
# Ch.5 and the BReLU paper claim an advantage, not a size: any lead counts as the direction
_LEAD = {"min_paper_diff": 0.01}

#: recipe name -> its check (recipes without one report their clean accuracy only).
EFFECTS: dict[str, Checker] = {
    "table4_2": _pair(_S001_ACT2, _RELU),
    "table4_3": _pair({**_S001_ACT2, **_NAT}, {**_RELU, **_NAT}),
    "ch3_layer_growth": _pair(_S001_ACT2, _RELU),
    "sensitivity_map": _pair(_S001_ACT2, _RELU),
    # Figs 4.1-4.3: evaluating the act2-capped general net at cap 0.01 looks more robust
    "ch4_placement": _pair(
        {
            "cfg.model.name": "mlp_general",
            "cfg.activation.where": "act2",
            "cfg.swap.name": "cap",
            "cfg.swap.max_value": 0.01,
        },
        {"cfg.model.name": "mlp_general", "cfg.activation.where": "act2", "cfg.swap.name": _NONE},
    ),
    "table5_1": _pair(
        {**_DRELU, "cfg.objective.lam": 100.0, "cfg.model.name": "mlp_general"},
        {"cfg.objective.name": "pgd_at", "cfg.model.name": "mlp_general"},
        **_LEAD,
    ),
    "fig5_5_lambda_sweep": _pair(
        {**_DRELU, "cfg.objective.lam": 100.0, "cfg.model.name": "mlp_general"},
        {**_DRELU, "cfg.objective.lam": 0.0, "cfg.model.name": "mlp_general"},
    ),
    "ch5_cifar_tables5_2_to_5_5": _pair(
        {**_DRELU, "cfg.model.name": "mlp_general"},
        {"cfg.objective.name": "pgd_at", "cfg.model.name": "mlp_general"},
        **_LEAD,
    ),
    "fig5_19_eps_sweep": _pair(_DRELU, {"cfg.objective.name": "pgd_at"}, **_LEAD),
    "brelu_tables1_3_6": _pair(_BRELU, _RELU, **_LEAD),
    "brelu_table5_vbrelu": _pair(_BRELU, _RELU, **_LEAD),
    "brelu_table4_dropout": _pair(
        {**_BRELU, "cfg.transform.name": _NONE},
        {**_RELU, "cfg.transform.name": "dropout"},
        **_LEAD,
    ),
}

#: The smallest clean accuracy per recipe where :data:`MIN_CLEAN` is not it: the quick
#: BReLU ResNets (width 8, 15 epochs of PGD-AT with random gates) must beat chance well.
MIN_CLEAN_FOR = {name: 0.60 for name in EFFECTS if name.startswith("brelu")} | {
    "brelu_replacement": 0.30  # BReLU swapped into a ReLU net: the paper's drop to ~65 %
}


def check(recipe: str, records: Sequence[Record]) -> Effect:
    """The recipe's effect (``shows=None`` when it declares none) with its clean
    accuracies; a clean accuracy below :data:`MIN_CLEAN` fails it."""
    clean = clean_accuracies(records)
    floor = MIN_CLEAN_FOR.get(recipe, MIN_CLEAN)
    low = {k: v for k, v in clean.items() if v < floor}
    eff = (
        EFFECTS[recipe](recipe, records) if recipe in EFFECTS else Effect(recipe, None, "no check")
    )
    eff.numbers.update({f"clean[{k}]": v for k, v in clean.items()})
    if low:
        eff.shows = False
        eff.summary += f"; clean below {floor:.0%}: " + ", ".join(
            f"{k} {100 * v:.1f}%" for k, v in low.items()
        )
    return eff
