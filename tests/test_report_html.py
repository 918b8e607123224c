"""build_report end to end from a real store, and the HTML page rendered in headless Chromium.

The Chromium test needs the Debian packages `chromium` (and `chromium-driver` for later
Selenium use): ``apt-get update && apt-get install -y chromium chromium-driver``.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from report_browser import (
    CHROMIUM,
    MISSING,
    PRINT_WIDTH_PX,
    dump_dom,
    flags,
    overflow_px,
    pdf_pages,
    print_pdf,
)
from robustact.evaluate.rows import MetricRow
from robustact.experiments import ResultStore
from robustact.report import build_report, plot_cap_trajectories
from robustact.report.export import LONG_COLUMNS
from robustact.report.format import wilson

EVIL = '<script>alert("x")</script>&'
METHODS = {
    "ReLU": (98.5, 40.0, 9.5, 8.0),
    "S-ReLU": (97.9, 92.0, 89.6, 16.0),
    EVIL: (98.0, 60.0, 45.0, 40.0),
}
N = 200  # test points behind every accuracy


def make_store(path: Path) -> ResultStore:
    """A store like the runner writes: accuracies as fractions, each row with its n."""
    store = ResultStore(path)
    for d, ds in enumerate(["MNIST", "FMNIST"]):
        for m, (clean, fgsm, pgd, adaptive) in METHODS.items():
            rows = [MetricRow("seed", "clean", "accuracy", (clean - 8 * d) / 100, n=N)]
            for e, eps in enumerate([0.05, 0.1]):
                k = 1 - 0.3 * e
                for proto, attack, v in (
                    ("seed", "FGSM", fgsm * k - d),
                    ("seed", "PGD", pgd * k - d),
                    ("adaptive", "PGD-BPDA", adaptive * k - d + 1),
                    ("adaptive", "worst", adaptive * k - d),
                ):
                    rows.append(MetricRow(proto, attack, "accuracy", v / 100, eps, "linf", n=N))
            masked = m == "S-ReLU"
            store.put_cell(
                {"method": m, "dataset": ds, "seed": 0},
                rows,
                extra={
                    "masking": {
                        "verdict": "masked" if masked else "not masked",
                        "checks": [{"check": "zero_grad_fraction", "flagged": masked}],
                    }
                },
            )
    return store


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("report")
    caps = plot_cap_trajectories(
        {"fc": {"min": [9.0, 3.0], "mean": [10.0, 5.0], "max": [11.0, 8.0]}}
    )
    with make_store(tmp / "results.sqlite") as store:
        return build_report(
            store, tmp / "out", title="Toy <report>", figures={"Cap trajectories": caps}, dpi=60
        )


def test_build_report_files(report: dict[str, Path]) -> None:
    assert set(report) == {
        "md", "tex", "tex:headline", "tex:clean", "tex:seed", "tex:adaptive", "html", "csv",
        "csv:summary", "csv:clean", "csv:seed", "csv:adaptive",
    }  # fmt: skip
    out = report["md"].parent
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in report.values())
    md = report["md"].read_text()
    assert md.startswith("# Toy \\<report\\>\n")
    # rank tables: clean (blocks: datasets), then robust (blocks: dataset x threat model);
    # the seed protocol has no "worst" row here, so its robust accuracy is PGD, the lowest
    assert "| MNIST | **98.5 (1)** | 97.9 (3) | 98.0 (2) |" in md
    assert "| FMNIST | linf ε=0.05 | 8.5 (3) | **88.6 (1)** | 44.0 (2) |" in md
    assert "| Average |  | 7.6 (3.00) | **75.7 (1.00)** | 37.8 (2.00) |" in md
    assert "Comparison of 3 methods over 4 blocks" in md
    assert "† masking verdict masked: S-ReLU; its rank rests on a masked number" in md
    assert "Nemenyi critical difference CD = 1.66" in md  # q(3) = 2.344, sqrt(12 / 24)
    # headline: paper protocol vs adaptive, the 95 % Wilson interval in brackets (n = 200)
    ci = wilson(0.979, N)
    assert ci is not None and f"97.9 ({100 * ci[0]:.1f}–{100 * ci[1]:.1f})" == "97.9 (95.0–99.2)"
    assert "| MNIST | S-ReLU | 0.05 | 97.9 (95.0–99.2) | 89.6 (84.5–93.0) | 16.0 (11.6–21.7) " in md
    assert "| +73.6 | MASKED (zero\\_grad\\_fraction) |" in md
    assert "Norm: linf; n = 200" in md and "gap = paper protocol − adaptive" in md
    assert "in %: mean ± sd over seeds" in md
    assert "n = 200 test points; 95 % Wilson score intervals at most ±6.8 pp." in md
    assert "seed protocol" not in md.lower()  # the source papers' protocol is the paper protocol
    tex = report["tex"].read_text()
    assert tex.startswith("\\documentclass[10pt]{article}")
    assert r"\textbf{75.7 (1.00)}" in tex and r"\&" in tex and "<script>" not in tex
    assert report["tex:headline"].read_text() in tex  # the fragments are the document's tables
    seed = list(csv.reader(report["csv:seed"].read_text().splitlines()))
    assert seed[0][:4] == ["Dataset", "Threat model", "ReLU", "ReLU rank"]
    assert seed[-1][0] == "Average" and float(seed[-1][3]) == pytest.approx(3.0)
    summary = list(csv.DictReader(report["csv:summary"].read_text().splitlines()))
    s_relu = next(r for r in summary if r["method"] == "S-ReLU")
    # machine-readable files keep the stored fractions
    assert float(s_relu["robust_seed"]) == pytest.approx(0.896)
    assert float(s_relu["robust_adaptive"]) == pytest.approx(0.16)
    assert (s_relu["verdict"], s_relu["flagged"]) == ("masked", "zero_grad_fraction")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex missing: apt-get "
                    "install -y texlive-latex-base texlive-latex-recommended")  # fmt: skip
def test_report_tex_compiles_without_overfull_boxes(
    report: dict[str, Path], tmp_path: Path
) -> None:
    shutil.copy(report["tex"], tmp_path / "report.tex")  # report.tex stands alone
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    log = (tmp_path / "report.log").read_text(errors="replace")
    assert res.returncode == 0, log[-3000:]
    assert "Overfull \\hbox" not in log, re.findall(r"Overfull \\hbox.*", log)
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")


def test_records_csv_is_long_format(report: dict[str, Path]) -> None:
    rows = list(csv.DictReader(report["csv"].read_text().splitlines()))
    assert len(rows) == 6 * 9  # one row per stored measurement
    assert list(rows[0]) == list(LONG_COLUMNS)
    r = next(r for r in rows if r["method"] == "S-ReLU" and r["dataset"] == "FMNIST"
             and r["attack"] == "worst" and r["eps"] == "0.1")  # fmt: skip
    assert (r["protocol"], r["norm"], r["metric"], r["n"], r["seed"]) == (
        "adaptive", "linf", "accuracy", "200", "0",
    )  # fmt: skip
    assert float(r["value"]) == pytest.approx((16.0 * 0.7 - 1) / 100)


def test_html_is_self_contained_and_escaped(report: dict[str, Path]) -> None:
    page = report["html"].read_text()
    for ref in ("http://", "https://", "file://", "<link", "url(", "@import"):
        assert ref not in page, ref
    srcs = re.findall(r'\bsrc="([^"]*)"', page)
    assert len(srcs) == 7 and all(s.startswith("data:image/png;base64,") for s in srcs)
    # 2 eps plots (one per dataset), 3 CD diagrams, the security curves (one panel per
    # model), the caps figure given by the caller; no per-step data: a note instead
    assert page.count("<figure>") == 7
    assert "Security curve: accuracy vs ε, per model</figcaption>" in page
    assert "Attack convergence: accuracy vs attack steps, per model: no data" in page
    assert page.count("<script>") == 1  # ours only: the method name is escaped
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    assert "<title>Toy &lt;report&gt;</title>" in page
    assert page.count('class="verdict verdict-bad"') == 4  # S-ReLU x 2 datasets x 2 eps
    assert page.count('class="verdict verdict-good"') == 8
    side = page[page.index('<div class="side">') :]
    assert side.index('data-protocol="clean"') < side.index('data-protocol="seed"')
    assert side.index('data-protocol="seed"') < side.index('data-protocol="adaptive"')


def test_build_report_inputs_and_errors(tmp_path: Path) -> None:
    make_store(tmp_path / "r.sqlite").close()
    paths = build_report(tmp_path / "r.sqlite", tmp_path / "a", formats=("md",))
    assert list(paths) == ["md"] and "MASKED" in paths["md"].read_text()
    with ResultStore(tmp_path / "r.sqlite") as store:
        recs = store.records(include_extra=True)
    only = build_report(recs, tmp_path / "b", formats=("csv",))
    rows = list(csv.DictReader(only["csv:summary"].read_text().splitlines()))
    assert rows[2]["verdict"] == "masked"  # from the extra.masking.verdict column
    with pytest.raises(ValueError, match="unknown report formats"):
        build_report(recs, tmp_path / "c", formats=("pdf",))
    with pytest.raises(ValueError, match="no finished cells"):
        build_report([], tmp_path / "c")
    with pytest.raises(KeyError, match="pass method_key="):
        build_report(
            [{"cfg.x": 1, "protocol": "seed", "metric": "accuracy", "value": 1.0}], tmp_path / "c"
        )


@pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
def test_html_renders_in_headless_chromium(report: dict[str, Path], tmp_path: Path) -> None:
    dom = dump_dom(report["html"], tmp_path / "profile", 1200)
    # Written by the page's script after "load": every image decoded, every table laid out.
    assert 'data-images-loaded="7"' in dom and 'data-images-total="7"' in dom, dom[:300]
    assert 'data-tables-visible="4"' in dom  # summary + clean, paper, adaptive rank tables
    assert '<td class="best">75.7 (1.00)</td>' in dom
    assert overflow_px(dom) == 0
    # fits a 1280 px window: no sideways scroll
    assert overflow_px(dump_dom(report["html"], tmp_path / "profile", 1280)) == 0
    shot = tmp_path / "shot.png"
    cmd = [*flags(tmp_path / "profile", 1200), f"--screenshot={shot}", report["html"].as_uri()]
    res = subprocess.run(cmd, capture_output=True, timeout=120)
    assert res.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[:2] == (2000, 1200)
    assert (img[..., :3].mean(axis=2) < 0.9).mean() > 0.05  # tables, text and plots drawn


def test_print_stylesheet_is_the_narrow_layout(report: dict[str, Path]) -> None:
    page = report["html"].read_text()
    # print and windows up to 760 px share one layout, so a 703 px window shows the print
    assert "@media print, (max-width: 760px)" in page
    assert "@page { size: A4; margin: 12mm; }" in page
    assert PRINT_WIDTH_PX == 703


@pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
def test_html_prints_to_pdf_without_cutting_tables(report: dict[str, Path], tmp_path: Path) -> None:
    pdf = print_pdf(report["html"], tmp_path / "profile", tmp_path / "report.pdf")
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert 2 <= pdf_pages(pdf) <= 12  # tables, statistics and 6 figures on A4 pages
    # the printable width (A4 less the margins): no element reaches past it
    assert overflow_px(dump_dom(report["html"], tmp_path / "profile", PRINT_WIDTH_PX)) == 0
