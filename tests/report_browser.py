"""Headless Chromium for the report tests: the DOM after the page's script ran, a PDF
print, and the widths the page measured (``data-overflow-px``, see report/html.py).

Needs the Debian package ``chromium`` (``apt-get install -y chromium``); the tests that use
it skip with that reason when it is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MISSING = "headless Chromium missing: apt-get update && apt-get install -y chromium"
#: A4 (210 mm) less the print stylesheet's 12 mm margins, in CSS px (96 per inch).
PRINT_WIDTH_PX = round((210 - 2 * 12) / 25.4 * 96)


def flags(profile: Path, width: int, height: int = 2000) -> list[str]:
    """Chromium's command line for one headless run in a fresh profile."""
    assert CHROMIUM is not None, MISSING
    return [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", f"--window-size={width},{height}",
    ]  # fmt: skip


def dump_dom(page: Path, profile: Path, width: int) -> str:
    """The page's DOM after "load" in a window ``width`` px wide."""
    res = subprocess.run([*flags(profile, width), "--dump-dom", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def overflow_px(dom: str) -> int:
    """How far the widest element reaches past the window (0: no sideways scroll)."""
    m = re.search(r'data-overflow-px="(\d+)"', dom)
    assert m is not None, "the page's script did not run: " + dom[:300]
    return int(m.group(1))


def print_pdf(page: Path, profile: Path, out: Path) -> bytes:
    """The page printed to PDF (print stylesheet, A4) by headless Chromium."""
    cmd = [*flags(profile, PRINT_WIDTH_PX), "--no-pdf-header-footer", f"--print-to-pdf={out}",
           page.resolve().as_uri()]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return out.read_bytes()


def pdf_pages(pdf: bytes) -> int:
    """The number of pages of a PDF (its /Type /Page objects)."""
    return len(re.findall(rb"/Type\s*/Page(?!s)", pdf))
