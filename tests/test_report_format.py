"""Percentages, percentage points and Wilson intervals as every report shows them."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from robustact.report.format import (
    ci_text,
    describe,
    half_width,
    is_proportion,
    pct,
    pct_ci,
    pp,
    wilson,
)


def test_percent_one_decimal() -> None:
    assert pct(0.9234) == "92.3"
    assert pct(1.0) == "100.0" and pct(0.0) == "0.0"
    assert pct(0.12345, digits=2) == "12.35"
    assert pct(None) == "–" and pct(math.nan) == "–" and pct(math.inf) == "–"


def test_percentage_points_are_signed() -> None:
    assert pp(0.123) == "+12.3" and pp(-0.05) == "-5.0"
    assert pp(-0.0001) == "0.0" and pp(0.0) == "0.0"  # no "-0.0" / "+0.0"
    assert pp(0.123, sign=False) == "12.3" and pp(None) == "–"


def test_wilson_matches_scipy() -> None:
    low, high = wilson(0.8, 10) or (0.0, 0.0)
    ref = stats.binomtest(8, 10).proportion_ci(confidence_level=0.95, method="wilson")
    assert (low, high) == pytest.approx((ref.low, ref.high))
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    # k = round(value * n): 331 of 359
    lo, hi = wilson(331 / 359, 359) or (0.0, 0.0)
    ref = stats.binomtest(331, 359).proportion_ci(method="wilson")
    assert (lo, hi) == pytest.approx((ref.low, ref.high))
    assert half_width(331 / 359, 359) == pytest.approx((ref.high - ref.low) / 2)
    for bad in ((None, 10), (0.5, None), (0.5, 0), (1.5, 10), (math.nan, 10)):
        assert wilson(*bad) is None


def test_interval_texts() -> None:
    assert ci_text(0.8, 10) == "49.0–94.3"
    assert pct_ci(0.8, 10) == "80.0 [49.0–94.3]"
    assert pct_ci(0.8, None) == "80.0"  # no n, no interval
    assert pct_ci(0.8, 10, sep=", ") == "80.0 [49.0, 94.3]"
    assert describe(0.8, 10) == "80.0 % (n = 10, 95 % CI 49.0–94.3)"
    assert describe(0.8, None) == "80.0 %" and describe(None, 10) == "–"


def test_is_proportion() -> None:
    assert is_proportion("accuracy", [0.1, 1.0, None])
    assert not is_proportion("accuracy", [0.1, 98.5])  # hand-made records in percent
    assert not is_proportion("mean_linf", [0.01])
