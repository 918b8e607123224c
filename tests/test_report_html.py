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
from typing import Any

import pytest

from robustact.experiments import ResultStore
from robustact.report import build_report, plot_cap_trajectories

EVIL = '<script>alert("x")</script>&'
METHODS = {
    "ReLU": (98.5, 40.0, 9.5, 8.0),
    "S-ReLU": (97.9, 92.0, 89.6, 16.0),
    EVIL: (98.0, 60.0, 45.0, 40.0),
}


def make_store(path: Path) -> ResultStore:
    store = ResultStore(path)
    for d, ds in enumerate(["MNIST", "FMNIST"]):
        for m, (clean, fgsm, pgd, adaptive) in METHODS.items():
            rows: list[tuple[Any, ...]] = [("seed", "clean", "accuracy", clean - 8 * d)]
            for e, eps in enumerate([0.05, 0.1]):
                k = 1 - 0.3 * e
                rows += [
                    ("seed", "FGSM", "accuracy", fgsm * k - d, eps, "linf"),
                    ("seed", "PGD", "accuracy", pgd * k - d, eps, "linf"),
                    ("adaptive", "PGD-BPDA", "accuracy", adaptive * k - d + 1, eps, "linf"),
                    ("adaptive", "worst", "accuracy", adaptive * k - d, eps, "linf"),
                ]
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
        "md", "tex", "html", "csv", "csv:summary", "csv:clean", "csv:seed", "csv:adaptive"
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
    assert "| MNIST | S-ReLU | 0.05 | linf | 97.90 | 89.60 | 16.00 | 73.60 | MASKED " in md
    assert "Nemenyi critical difference CD = 1.66" in md  # q(3) = 2.344, sqrt(12 / 24)
    tex = report["tex"].read_text()
    assert r"\textbf{75.7 (1.00)}" in tex and r"\&" in tex and "<script>" in tex  # no & raw
    assert all(ln.startswith("%") for ln in tex.splitlines() if "Friedman" in ln)
    seed = list(csv.reader(report["csv:seed"].read_text().splitlines()))
    assert seed[0][:4] == ["Dataset", "Threat model", "ReLU", "ReLU rank"]
    assert seed[-1][0] == "Average" and float(seed[-1][3]) == pytest.approx(3.0)
    summary = list(csv.DictReader(report["csv:summary"].read_text().splitlines()))
    s_relu = next(r for r in summary if r["method"] == "S-ReLU")
    assert (s_relu["robust_seed"], s_relu["robust_adaptive"], s_relu["verdict"]) == (
        "89.6",
        "16.0",
        "masked",
    )
    assert s_relu["flagged"] == "zero_grad_fraction"
    assert len(list(csv.DictReader(report["csv"].read_text().splitlines()))) == 6 * 9


def test_html_is_self_contained_and_escaped(report: dict[str, Path]) -> None:
    page = report["html"].read_text()
    for ref in ("http://", "https://", "file://", "<link", "url(", "@import"):
        assert ref not in page, ref
    srcs = re.findall(r'\bsrc="([^"]*)"', page)
    assert len(srcs) == 6 and all(s.startswith("data:image/png;base64,") for s in srcs)
    # 2 eps plots (one per dataset), 3 CD diagrams (clean, seed, adaptive), the caps figure
    assert page.count("<figure>") == 6
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


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium missing: apt-get update && apt-get install -y chromium "
    "chromium-driver",
)
def test_html_renders_in_headless_chromium(report: dict[str, Path], tmp_path: Path) -> None:
    assert CHROMIUM is not None
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,2000",
    ]
    narrow = [*flags[:-1], "--window-size=1280,2000"]
    url = report["html"].resolve().as_uri()
    res = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    # Written by the page's script after "load": every image decoded, every table laid out.
    assert 'data-images-loaded="6"' in dom and 'data-images-total="6"' in dom, dom[:300]
    assert 'data-tables-visible="4"' in dom  # summary + clean, seed, adaptive rank tables
    assert '<td class="best">75.7 (1.00)</td>' in dom
    res = subprocess.run([*narrow, "--dump-dom", url], capture_output=True, text=True, timeout=90)
    assert 'data-overflow-px="0"' in res.stdout  # fits a 1280 px window: no sideways scroll
    shot = tmp_path / "shot.png"
    shot_run = subprocess.run(
        [*flags, f"--screenshot={shot}", url], capture_output=True, timeout=90
    )
    assert shot_run.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[:2] == (2000, 1200)
    assert (img[..., :3].mean(axis=2) < 0.9).mean() > 0.05  # tables, text and plots drawn
