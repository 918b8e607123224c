"""Rank tables (Markdown, LaTeX, CSV), statistics block and the protocol summary."""

from __future__ import annotations

import csv
import re
from typing import Any

import numpy as np
import pytest

from robustact.report import (
    pivot,
    protocol_summary,
    rank_table,
    statistics_text,
    to_csv,
    to_latex,
    to_markdown,
    verdict_level,
)
from robustact.report.tables import comparison, latex_escape, markdown_escape
from robustact.stats import compare_methods


def rec(method: str, dataset: str, attack: str, eps: float | None, value: float, **kw: Any) -> dict:
    r = {
        "cell_id": f"{method}-{dataset}-{kw.pop('seed', 0)}",
        "protocol": kw.pop("protocol", "seed"),
        "attack": attack,
        "metric": kw.pop("metric", "accuracy"),
        "value": value,
        "eps": eps,
        "norm": None if eps is None else "linf",
        "cfg.method": method,
        "cfg.dataset": dataset,
    }
    r.update(kw)
    return r


TOY = [
    rec("ReLU", "MNIST", "clean", None, 98.49),
    rec("S-ReLU", "MNIST", "clean", None, 97.88),
    rec("D_ReLU", "MNIST", "clean", None, 98.49),
    rec("ReLU", "MNIST", "PGD", 0.1, 9.47),
    rec("S-ReLU", "MNIST", "PGD", 0.1, 89.61),
    rec("D_ReLU", "MNIST", "PGD", 0.1, 50.0),
    rec("ReLU", "FMNIST", "PGD", 0.1, 5.0, seed=0),
    rec("ReLU", "FMNIST", "PGD", 0.1, 5.4, seed=1),  # two seeds: averaged to 5.2
    rec("S-ReLU", "FMNIST", "PGD", 0.1, 78.65),
    rec("D_ReLU", "FMNIST", "PGD", 0.1, 30.0),
    rec("ReLU", "FMNIST", "PGD", 0.1, 1.0, metric="loss"),  # filtered out
]


def toy_table() -> Any:
    return rank_table(pivot(TOY, where={"metric": "accuracy"}))


def test_pivot_and_ranks_with_ties() -> None:
    t = toy_table()
    assert t.pivot.methods == ["ReLU", "S-ReLU", "D_ReLU"]
    assert t.pivot.rows == [("MNIST", "clean", None), ("MNIST", "PGD", 0.1), ("FMNIST", "PGD", 0.1)]
    assert t.pivot.counts.tolist() == [[1, 1, 1], [1, 1, 1], [2, 1, 1]]
    np.testing.assert_allclose(t.pivot.values[2], [5.2, 78.65, 30.0])
    assert t.ranks.tolist() == [[1.5, 3.0, 1.5], [3.0, 1.0, 2.0], [3.0, 1.0, 2.0]]
    np.testing.assert_allclose(t.avg_ranks, [2.5, 5 / 3, 11 / 6])
    np.testing.assert_allclose(t.means, [113.16 / 3, 266.14 / 3, 178.49 / 3])
    assert t.best.tolist() == [[True, False, True], [False, True, False], [False, True, False]]
    low = rank_table(pivot(TOY, where={"metric": "accuracy"}), higher_is_better=False)
    assert low.ranks[1].tolist() == [1.0, 3.0, 2.0]


def test_markdown_exact() -> None:
    assert to_markdown(toy_table()) == (
        "| Dataset | Attack | ε | ReLU | S-ReLU | D\\_ReLU |\n"
        "|---|---|---|---:|---:|---:|\n"
        "| MNIST | clean | – | **98.49 (1.5)** | 97.88 (3) | **98.49 (1.5)** |\n"
        "|  | PGD | 0.1 | 9.47 (3) | **89.61 (1)** | 50.00 (2) |\n"
        "| FMNIST | PGD | 0.1 | 5.20 (3) | **78.65 (1)** | 30.00 (2) |\n"
        "| Average |  |  | 37.72 (2.50) | **88.71 (1.67)** | 59.50 (1.83) |\n"
    )
    assert markdown_escape("a|b*c") == "a\\|b\\*c"


def _unescaped(s: str, ch: str) -> int:
    return len(re.findall(r"(?<!\\)" + re.escape(ch), s))


def test_latex_looks_compilable() -> None:
    tex = to_latex(toy_table(), caption="Accuracy % on MNIST_test & co", label="tab:acc")
    assert r"\caption{Accuracy \% on MNIST\_test \& co}" in tex
    assert r"D\_ReLU" in tex and r"\textbf{89.61 (1)}" in tex and r"\textbf{88.71 (1.67)}" in tex
    assert "MNIST & clean & -- & " in tex
    assert r"\begin{tabular}{@{}lllrrr@{}}" in tex  # no outer padding: fits \textwidth
    # Balanced braces and environments; no unescaped % or _ anywhere.
    assert _unescaped(tex, "{") == _unescaped(tex, "}")
    assert _unescaped(tex, "%") == 0 and _unescaped(tex, "_") == 0
    for env in ("table", "tabular"):
        assert tex.count(rf"\begin{{{env}}}") == tex.count(rf"\end{{{env}}}") == 1
    rows = [ln for ln in tex.splitlines() if ln.endswith(r"\\")]
    assert len(rows) == 5  # header, 3 conditions, average
    assert all(_unescaped(ln, "&") == 5 for ln in rows)
    assert latex_escape(r"a\b~^{}$#") == (
        r"a\textbackslash{}b\textasciitilde{}\textasciicircum{}\{\}\$\#"
    )


def test_csv_table() -> None:
    rows = list(csv.reader(to_csv(toy_table()).splitlines()))
    assert rows[0] == [
        "Dataset",
        "Attack",
        "ε",
        "ReLU",
        "ReLU rank",
        "S-ReLU",
        "S-ReLU rank",
        "D_ReLU",
        "D_ReLU rank",
    ]
    assert rows[1] == ["MNIST", "clean", "", "98.49", "1.5", "97.88", "3", "98.49", "1.5"]
    assert float(rows[3][3]) == pytest.approx(5.2) and rows[3][4] == "3"
    assert rows[-1][0] == "Average" and float(rows[-1][4]) == 2.5


def test_statistics_uses_robustact_stats() -> None:
    t = toy_table()
    cmp = comparison(t)
    assert cmp is not None
    ref = compare_methods(t.pivot.values, t.pivot.methods)
    np.testing.assert_allclose(cmp.avg_ranks, t.avg_ranks)
    assert cmp.cd == ref.cd and cmp.friedman.chi2 == ref.friedman.chi2
    text = statistics_text(t)
    assert "Friedman chi2" in text and f"CD = {ref.cd:.2f}" in text
    one = rank_table(pivot(TOY[:3]))
    assert one.ranks.tolist() == [[1.5, 3.0, 1.5]]
    assert statistics_text(one).startswith("Statistics need at least 2 complete conditions")


def test_incomplete_rows_dropped_and_bad_keys() -> None:
    extra = [*TOY, rec("ReLU", "KMNIST", "PGD", 0.1, 7.0)]
    t = rank_table(pivot(extra, where={"metric": "accuracy"}))
    assert t.dropped == [("KMNIST", "PGD", 0.1)] and len(t.pivot.rows) == 3
    with pytest.raises(KeyError, match=r"pick from \['cfg.dataset', 'cfg.method'\]"):
        pivot(TOY, method_key="cfg.activation")
    with pytest.raises(ValueError, match="no records match"):
        pivot(TOY, where={"protocol": "adaptive"})


def test_protocol_summary_side_by_side() -> None:
    recs = [
        rec("S-ReLU", "MNIST", "clean", None, 97.9),
        rec("S-ReLU", "MNIST", "FGSM", 0.1, 92.4),
        rec("S-ReLU", "MNIST", "PGD", 0.1, 89.6),
        rec("S-ReLU", "MNIST", "PGD-BPDA", 0.1, 20.0, protocol="adaptive"),
        rec("S-ReLU", "MNIST", "worst", 0.1, 16.0, protocol="adaptive"),
        rec("ReLU", "MNIST", "clean", None, 98.5, **{"extra.masking.verdict": "not masked"}),
        rec("ReLU", "MNIST", "PGD", 0.1, 9.5, **{"extra.masking.verdict": "not masked"}),
    ]
    masking = {
        "S-ReLU-MNIST-0": {
            "verdict": "masked",
            "checks": [
                {"name": "zero_grad_fraction", "flagged": True},
                {"check": "eps_monotone", "flagged": False},
            ],
        }
    }
    s_relu, relu = protocol_summary(recs, masking=masking)
    assert (s_relu.method, s_relu.eps, s_relu.clean) == ("S-ReLU", 0.1, 97.9)
    assert (s_relu.robust_seed, s_relu.robust_adaptive) == (89.6, 16.0)  # min, then "worst"
    assert s_relu.gap == pytest.approx(73.6)
    assert s_relu.verdict == "masked" and s_relu.flagged == ("zero_grad_fraction",)
    assert relu.robust_adaptive is None and relu.gap is None and relu.verdict == "not masked"
    levels = [
        verdict_level(v)
        for v in (
            "masked",
            "likely masked",
            "not masked",
            "OK",
            "suspicious",
            None,
            "???",
            "no evidence",
            "suspect",
        )
    ]
    assert levels == ["bad", "bad", "good", "good", "warn", "unknown", "unknown", "good", "warn"]
