"""LaTeX that fits \\textwidth: escaping, width estimates, split and transposed tables, the
headline table and the standalone report.tex, compiled with pdflatex where installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from robustact.report.headline import headline
from robustact.report.latex import (
    TEXTWIDTH_PT,
    TexCell,
    TexTable,
    headline_latex,
    latex_escape,
    rank_table_latex,
    render_table,
    standalone,
    text_width,
)
from robustact.report.summary import SummaryRow
from robustact.report.tables import Pivot, RankTable, rank_table

PDFLATEX = shutil.which("pdflatex")
NO_TEX = "pdflatex missing: apt-get install -y texlive-latex-base texlive-latex-recommended"


def compile_tex(tex: str, tmp: Path, name: str = "doc") -> str:
    """pdflatex ``tex`` in ``tmp``; returns the log (asserts it compiled)."""
    assert PDFLATEX is not None
    (tmp / f"{name}.tex").write_text(tex)
    res = subprocess.run(
        [PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"],
        cwd=tmp, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    log = (tmp / f"{name}.log").read_text(errors="replace")
    assert res.returncode == 0, log[-3000:]
    assert (tmp / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    return log


def wide_table(k: int = 12, n: int = 4) -> RankTable:
    """k methods with long names, n conditions: far wider than a page in one tabular."""
    rng = np.random.default_rng(0)
    methods = [f"srelu(max_value=0.{i}, where=act2) + drelu_penalty(lam=0.01)" for i in range(k)]
    rows = [("digits", f"PGD-{10 * (j + 1)}", 0.1) for j in range(n)]
    values = rng.uniform(0.1, 0.9, size=(n, k))
    p = Pivot(("cfg.dataset", "attack", "eps"), rows, methods, values, np.ones((n, k), int))
    return rank_table(p)


def test_escape_specials_greek_and_unknown_characters() -> None:
    assert latex_escape(r"a\b~^{}$#&%_") == (
        r"a\textbackslash{}b\textasciitilde{}\textasciicircum{}\{\}\$\#\&\%\_"
    )
    assert latex_escape("ε = 8/255, λ ≤ 0.1 ± 2, µ–σ") == (
        r"$\varepsilon$ = 8/255, $\lambda$ $\le$ 0.1 $\pm$ 2, $\mu$--$\sigma$"
    )
    assert (
        latex_escape("<b>|x|</b>")
        == r"\textless{}b\textgreater{}\textbar{}x\textbar{}\textless{}/b\textgreater{}"
    )
    assert latex_escape("Δ→☃é") == r"$\Delta$$\to$?é"  # a snowman cannot be set: "?"
    assert latex_escape("f(a_b,c)", breakable=True) == (
        r"f(\allowbreak{}a\_\allowbreak{}b,\allowbreak{}c)"
    )
    assert latex_escape("two\nlines") == "two lines"


def test_width_estimates_grow_with_the_text() -> None:
    assert text_width("") == 0.0
    assert text_width("MW") > text_width("il") > 0
    assert text_width("98.5 (1)", bold=True) > text_width("98.5 (1)")
    assert TexCell(("a", "longer line"), note="x").width() == text_width("longer line")
    pieces = ["srelu(", "max_", "value=", "0.1,"]  # a line may break after ( _ = ,
    assert TexCell.of("srelu(max_value=0.1,").min_width() == max(map(text_width, pieces))


@pytest.mark.skipif(PDFLATEX is None, reason=NO_TEX)
def test_width_estimates_are_never_below_what_tex_sets(tmp_path: Path) -> None:
    samples = ["MWmw Test 0.123 (1)", "srelu(max_value=0.01, where=act2)", "96.4 (1)",
               "APGD-DLR+BPDA", "no evidence", "91.6–96.4"]  # fmt: skip
    body = "".join(
        rf"\settowidth{{\w}}{{{b}{{{latex_escape(s)}}}}}\typeout{{W=\the\w}}"
        for s in samples
        for b in (r"\textrm", r"\textbf")
    )
    head = r"\documentclass[10pt]{article}\newlength{\w}\begin{document}\small "
    doc = head + body + r" x\end{document}"
    log = compile_tex(doc, tmp_path)
    set_pt = [float(w) for w in re.findall(r"W=([\d.]+)pt", log)]
    assert len(set_pt) == 2 * len(samples)
    est = [text_width(s, bold=b) for s in samples for b in (False, True)]
    pairs = list(zip(est, set_pt, strict=True))
    assert all(e >= w for e, w in pairs), pairs


def test_a_too_wide_table_is_split_with_its_labels_repeated() -> None:
    cells = [TexCell.of(f"{v:.1f} (1)") for v in range(20)]
    t = TexTable([TexCell.of("Attack"), *[TexCell.of(f"M{i}") for i in range(20)]],
                 [[TexCell.of("PGD"), *cells]], ["l"] + ["r"] * 20)  # fmt: skip
    tex = render_table(t)
    parts = tex.count(r"\begin{tabular}")
    assert parts == 3  # 20 value columns of ~45 pt each: 7 + 7 + 6 beside the label column
    assert tex.count("PGD & ") == parts and r"\resizebox" not in tex
    specs = re.findall(r"\\begin\{tabular\}\{@\{\}(\w+)@\{\}\}", tex)
    assert all(s.startswith("lr") for s in specs) and sum(len(s) - 1 for s in specs) == 20
    with pytest.raises(ValueError, match="one cell per column"):
        render_table(TexTable([TexCell.of("a")], [[TexCell.of("1"), TexCell.of("2")]], ["l"]))


def test_rank_table_uses_short_names_and_the_narrower_layout() -> None:
    # 4 methods x 12 conditions: the seeds' layout, long names as M1..M4 with a legend
    tex = rank_table_latex(wide_table(4, 12), caption="Accuracy (%)", percent=True, note="n = 9.")
    assert tex.count(r"\begin{tabular}") == 1 and "Attack & M1 & M2 & M3 & M4" in tex
    assert "M1: srelu(" in tex and "M4: srelu(" in tex  # the legend under the table
    assert "Accuracy (\\%); Dataset: digits; $\\varepsilon$: 0.1" in tex  # shared: caption
    assert "n =\\allowbreak{} 9." in tex and r"\textbf{" in tex
    # 12 methods x 4 conditions: methods as rows (5 value columns) fit in one tabular
    wide = rank_table_latex(wide_table(12, 4), caption="x")
    assert wide.count(r"\begin{tabular}") == 1 and "Method & " in wide and "M1" not in wide


def demo_like_rows() -> tuple[list[SummaryRow], list[int | None]]:
    names = ["relu + natural", "relu + pgd_at(eps=0.1, steps=5)",
             "srelu(max_value=0.01, where=act2) + natural",
             "drelu(where=act2) + drelu_penalty(lam=0.01)"]  # fmt: skip
    rows = [
        SummaryRow(("digits",), m, 0.1, "Linf", 0.96 - i / 50, 0.6 - i / 20, 0.4, "masked",
                   ("bpda_beats_plain", "stochastic_predictions", "gradient_free_beats"))
        for i, m in enumerate(names)
    ]  # fmt: skip
    return rows, [359] * len(rows)


def test_headline_table_has_the_intervals_and_fits() -> None:
    rows, counts = demo_like_rows()
    tex = headline_latex(headline(rows, counts, ["cfg.dataset"]), caption="Headline")
    assert "Model & Clean & " in tex and "Verdict" in tex
    assert r"{\scriptsize 93.6--97.7}" in tex  # 345 of 359 points, Wilson 95 %
    assert "+20.0" in tex and "masked" in tex and "stochastic" in tex
    assert tex.count(r"\begin{tabular}{") == 1  # one part (cells with 2 lines: tabular[t])


@pytest.mark.skipif(PDFLATEX is None, reason=NO_TEX)
def test_tables_compile_without_overfull_boxes(tmp_path: Path) -> None:
    rows, counts = demo_like_rows()
    tables = [
        headline_latex(headline(rows, counts, ["cfg.dataset"]), caption="Headline"),
        rank_table_latex(wide_table(), caption="twelve methods", percent=True),
        rank_table_latex(wide_table(3, 3), caption="three methods"),
        rank_table_latex(wide_table(20, 12), caption="twenty methods, twelve conditions"),
    ]
    doc = standalone("Stress ε & λ", "meta_data with 50% & more", [("Tables", "\n".join(tables))])
    log = compile_tex(doc, tmp_path)
    assert "Overfull \\hbox" not in log, re.findall(r"Overfull \\hbox.*", log)
    # the check can fail: the same table laid out for a 3x wider page overflows this one
    too_wide = render_table(
        TexTable([TexCell.of(f"M{i}") for i in range(30)],
                 [[TexCell.of("12.5 (3)") for _ in range(30)]], ["r"] * 30),
        width_pt=3 * TEXTWIDTH_PT,
    )  # fmt: skip
    log = compile_tex(standalone("t", "m", [("T", too_wide)]), tmp_path, "wide")
    assert "Overfull \\hbox" in log


@pytest.mark.skipif(PDFLATEX is None, reason=NO_TEX)
def test_labels_from_protocol_names_compile(tmp_path: Path) -> None:
    # paper protocols are named like "seed-table4_2": an escaped "\_" inside \label broke
    # the second pdflatex pass of a real table4_2 report
    tex = rank_table_latex(wide_table(3, 3), caption="c", label="tab:seed-table4_2")
    assert r"\label{tab:seed-table4-2}" in tex
    doc = standalone("t", "m", [("T", tex + "\n" + r"See Table~\ref{tab:seed-table4-2}.")])
    compile_tex(doc, tmp_path)
    compile_tex(doc, tmp_path)  # the second pass reads the .aux labels back
