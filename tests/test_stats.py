"""Tests for robustact.stats: oracle (dissertation Table 4.2), toy cases, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from scipy import stats as sps

from robustact.stats import (
    compare_methods,
    critical_difference,
    friedman,
    friedman_from_ranks,
    mcnemar,
    mean_sd,
    nemenyi_q,
    nemenyi_significance,
    nonsignificant_groups,
    one_way_anova,
    rank_matrix,
    wilson_interval,
)
from robustact.stats.diagram import GID_CD_BAR, GID_GROUP, GID_METHOD, cd_diagram

# Dissertation (seeds/000_db23c60551cd3451.txt), Table 4.2: accuracy (%) of two-hidden-layer
# MLPs; columns = No Max (ReLU), S-ReLU Max = 1, Max = 0.1, Max = 0.01; rows = for each of
# MNIST, FMNIST, KMNIST, EMNIST: clean, FGSM eps=0.05, PGD eps=0.05, FGSM eps=0.1,
# PGD eps=0.1. Transcribed as printed; the printed per-row ranks are in TABLE_4_2_RANKS.
TABLE_4_2_METHODS = ("No Max", "Max = 1", "Max = 0.1", "Max = 0.01")
TABLE_4_2 = np.array(
    [
        [98.49, 98.46, 98.06, 97.88],  # MNIST clean
        [77.34, 80.36, 85.16, 93.31],
        [55.92, 56.47, 67.90, 93.13],
        [41.77, 41.24, 68.04, 92.37],
        [9.47, 7.45, 39.79, 89.61],
        [89.45, 89.65, 89.11, 87.29],  # FMNIST clean
        [35.57, 46.46, 52.17, 80.31],
        [18.62, 22.16, 40.96, 83.84],
        [17.64, 26.52, 38.23, 79.06],
        [5.20, 5.77, 27.46, 78.65],
        [92.34, 91.89, 91.68, 87.67],  # KMNIST clean
        [66.50, 67.96, 71.29, 79.83],
        [50.44, 50.93, 56.15, 82.08],
        [30.20, 34.65, 48.89, 76.96],
        [8.56, 9.76, 34.07, 75.89],
        [84.65, 84.70, 83.46, 79.84],  # EMNIST clean
        [32.91, 60.47, 74.88, 78.38],
        [8.40, 40.14, 79.13, 79.23],
        [10.60, 31.79, 59.00, 76.54],
        [3.31, 10.26, 65.75, 75.15],
    ]
)
TABLE_4_2_RANKS = np.array(
    [[1, 2, 3, 4], [4, 3, 2, 1], [4, 3, 2, 1], [3, 4, 2, 1], [3, 4, 2, 1]]
    + [[2, 1, 3, 4]]
    + [[4, 3, 2, 1]] * 4
    + [[1, 2, 3, 4]]
    + [[4, 3, 2, 1]] * 4
    + [[2, 1, 3, 4]]
    + [[4, 3, 2, 1]] * 4,
    dtype=float,
)
TABLE_4_2_AVG_RANKS = np.array([3.4, 2.8, 2.2, 1.6])  # the table's "Average" row
TABLE_4_2_AVG_ACC = np.array([41.87, 47.85, 63.56, 83.35])


class TestOracleTable42:
    """All 20 printed rows (N = 20, k = 4) reproduce the dissertation's Section 4.5.4."""

    def test_ranks_match_printed(self) -> None:
        np.testing.assert_array_equal(rank_matrix(TABLE_4_2), TABLE_4_2_RANKS)
        cmp = compare_methods(TABLE_4_2, TABLE_4_2_METHODS)
        np.testing.assert_allclose(cmp.avg_ranks, TABLE_4_2_AVG_RANKS, atol=1e-12)
        # The printed averages are the column means, rounded to 2 decimals.
        np.testing.assert_allclose(TABLE_4_2.mean(axis=0), TABLE_4_2_AVG_ACC, atol=0.005)

    def test_friedman_and_iman_davenport(self) -> None:
        fr = friedman(TABLE_4_2)
        # Printed: chi2 = 21.6, F_F = 10.69. Exact values: 21.6 and 410.4 / 38.4 = 10.6875.
        assert fr.chi2 == pytest.approx(21.6, abs=1e-9)
        assert fr.f_f == pytest.approx(10.6875, abs=1e-9)
        assert round(fr.f_f, 2) == 10.69
        assert fr.df == (3, 57)
        # No ties in any row, so Demšar's chi2 equals scipy's tie-corrected one.
        assert fr.chi2 == pytest.approx(sps.friedmanchisquare(*TABLE_4_2.T).statistic)
        # The same from the printed ranks row alone.
        assert friedman_from_ranks(TABLE_4_2_AVG_RANKS, 20).f_f == pytest.approx(fr.f_f)
        # The text gives the alpha = 0.01 critical value as "around 4.126"; F(3, 57) gives
        # 4.145 (4.126 matches neither df exactly; it looks read from a printed F table near
        # F(3, 60) = 4.13). Either way F_F is far above it, as the text concludes.
        fr01 = friedman(TABLE_4_2, alpha=0.01)
        assert fr01.critical_value == pytest.approx(4.145, abs=1e-3)
        assert fr01.reject and fr01.p_f < 1e-4

    def test_nemenyi_cd(self) -> None:
        cd = critical_difference(4, 20, alpha=0.05)
        # Printed CD = 1.05: q_0.05 = 2.569, sqrt(4 * 5 / 120) = 0.4082 -> 1.0488.
        assert cd == pytest.approx(1.0488, abs=1e-4)
        assert round(cd, 2) == 1.05

    def test_significant_pairs(self) -> None:
        cmp = compare_methods(TABLE_4_2, TABLE_4_2_METHODS)
        # The text names Max = 0.1 and Max = 0.01 as significantly better than No Max. The
        # ranks also separate Max = 0.01 from Max = 1 (2.8 - 1.6 = 1.2 > 1.05), which the
        # text does not mention; Max = 1 vs No Max (0.6) and Max = 0.1 vs Max = 0.01 (0.6)
        # are not significant.
        assert set(cmp.significant_pairs) == {
            ("Max = 0.01", "No Max"),
            ("Max = 0.1", "No Max"),
            ("Max = 0.01", "Max = 1"),
        }
        assert cmp.significant_pairs[0] == ("Max = 0.01", "No Max")  # largest gap first
        text = cmp.to_text()
        for fragment in ("chi2 = 21.60", "F_F = 10.69", "CD = 1.05", "Max = 0.01 > No Max"):
            assert fragment in text

    def test_anova(self) -> None:
        # Printed: "F score of 11.15 while the critical value (alpha = 0.01) is 4.05".
        res = one_way_anova(*TABLE_4_2.T)
        assert res.f == pytest.approx(11.15, abs=0.005)
        assert res.df == (3, 76)
        assert res.critical_value(0.01) == pytest.approx(4.05, abs=0.005)


class TestRanks:
    def test_ties_get_average_rank(self) -> None:
        scores = np.array([[0.9, 0.8, 0.8, 0.7], [0.5, 0.5, 0.5, 0.9]])
        expected = np.array([[1.0, 2.5, 2.5, 4.0], [3.0, 3.0, 3.0, 1.0]])
        np.testing.assert_array_equal(rank_matrix(scores), expected)
        np.testing.assert_array_equal(rank_matrix(scores, higher_is_better=False), 5 - expected)

    def test_accepts_tensor(self) -> None:
        r = rank_matrix(torch.tensor([[1.0, 3.0], [2.0, 2.0]]))
        np.testing.assert_array_equal(r, [[2.0, 1.0], [1.5, 1.5]])

    @pytest.mark.parametrize(
        ("bad", "match"),
        [
            (np.ones(4), "2-D"),
            (np.ones((1, 3)), "at least 2 datasets"),
            (np.array([[1.0, np.nan], [1.0, 2.0]]), "NaN"),
        ],
    )
    def test_bad_input(self, bad: np.ndarray, match: str) -> None:
        with pytest.raises(ValueError, match=match):
            rank_matrix(bad)

    @settings(max_examples=60, deadline=None)
    @given(
        st.integers(2, 6).flatmap(
            lambda k: st.lists(
                st.lists(st.integers(0, 5), min_size=k, max_size=k), min_size=2, max_size=8
            )
        )
    )
    def test_rows_sum_to_k_k_plus_1_over_2(self, rows: list[list[int]]) -> None:
        # Small integer scores so ties are frequent.
        r = rank_matrix(np.array(rows, dtype=float))
        k = r.shape[1]
        np.testing.assert_allclose(r.sum(axis=1), k * (k + 1) / 2)
        assert r.min() >= 1 and r.max() <= k


class TestFriedman:
    def test_perfect_agreement_gives_infinite_f_f(self) -> None:
        fr = friedman(np.tile([4.0, 3.0, 2.0, 1.0], (5, 1)))
        assert fr.chi2 == pytest.approx(5 * 3)  # N (k - 1), the maximum
        assert math.isinf(fr.f_f) and fr.p_f == 0.0 and fr.reject

    def test_no_difference(self) -> None:
        # Each method is best exactly once in a cyclic design: equal average ranks.
        fr = friedman(np.array([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [2.0, 1.0, 3.0]]))
        assert fr.chi2 == pytest.approx(0.0, abs=1e-12)
        assert fr.f_f == pytest.approx(0.0, abs=1e-12)
        assert fr.p_f == pytest.approx(1.0) and not fr.reject

    def test_bad_ranks(self) -> None:
        with pytest.raises(ValueError, match="n_datasets"):
            friedman_from_ranks([1.5, 1.5], 1)
        with pytest.raises(ValueError, match=r"\[1, k=2\]"):
            friedman_from_ranks([0.5, 2.5], 5)
        with pytest.raises(ValueError, match="alpha"):
            friedman_from_ranks([1.5, 1.5], 5, alpha=1.0)


class TestNemenyi:
    def test_q_matches_demsar_table(self) -> None:
        # Demšar (2006) Table 5(a), alpha = 0.05, k = 2..10.
        table = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]
        for k, q in zip(range(2, 11), table, strict=True):
            assert nemenyi_q(k, 0.05) == pytest.approx(q, abs=1e-3)
        assert nemenyi_q(4, 0.10) == pytest.approx(2.291, abs=1e-3)  # Table 5(a), alpha=0.10

    def test_significance_and_groups(self) -> None:
        ranks = np.array([1.0, 1.5, 2.6, 3.0, 4.9])
        sig = nemenyi_significance(ranks, cd=1.2)
        assert not sig[0, 1] and sig[0, 2] and not sig[1, 2] and sig[1, 3] and not sig[2, 3]
        np.testing.assert_array_equal(sig, sig.T)
        assert not sig.diagonal().any()
        # Groups in rank order: {0,1}, {1,2}, {2,3}; method 4 stands alone.
        assert nonsignificant_groups(ranks, 1.2) == [(0, 1), (1, 2), (2, 3)]
        # A huge CD joins everything into one group.
        assert nonsignificant_groups(ranks[::-1], 10.0) == [(4, 3, 2, 1, 0)]

    def test_cd_diagram(self) -> None:
        fig = cd_diagram(TABLE_4_2_AVG_RANKS, TABLE_4_2_METHODS, 1.0488, title="Table 4.2")
        assert isinstance(fig, Figure)
        (ax,) = fig.axes
        by_gid: dict[str | None, int] = {}
        for line in ax.lines:
            by_gid[line.get_gid()] = by_gid.get(line.get_gid(), 0) + 1
        # ranks 1.6, 2.2, 2.8, 3.4 with CD 1.05: groups {0.01, 0.1}, {0.1, 1}, {1, No Max}.
        assert by_gid[GID_GROUP] == 3
        assert by_gid[GID_METHOD] == 4
        assert by_gid[GID_CD_BAR] == 3
        labels = [t.get_text().strip() for t in ax.texts]
        assert "Max = 0.01 (1.60)" in labels and "No Max (3.40)" in labels
        # The method line of "No Max" hangs from its average rank on the axis.
        method_lines = [ln for ln in ax.lines if ln.get_gid() == GID_METHOD]
        starts = sorted(float(np.asarray(ln.get_xdata())[0]) for ln in method_lines)
        assert starts == [1.6, 2.2, 2.8, 3.4]

    def test_cd_diagram_bad_names(self) -> None:
        with pytest.raises(ValueError, match="one name per column"):
            cd_diagram([1.0, 2.0], ["a"], 1.0)


class TestMcNemar:
    def test_exact_small_example(self) -> None:
        # b = 2 (A right, B wrong), c = 8: p = 2 * P(X <= 2 | 10, 1/2) = 2 * 56 / 1024.
        a = np.array([1] * 2 + [0] * 8 + [1] * 30 + [0] * 5, dtype=bool)
        b = np.array([0] * 2 + [1] * 8 + [1] * 30 + [0] * 5, dtype=bool)
        res = mcnemar(a, b)
        assert (res.b, res.c, res.method) == (2, 8, "exact")
        assert res.p == pytest.approx(112 / 1024)

    def test_chi2_wikipedia_counts(self) -> None:
        # Counts a=101, b=121, c=59, d=33: corrected chi2 = (|121 - 59| - 1)^2 / 180.
        a = np.repeat([True, True, False, False], [101, 121, 59, 33])
        b = np.repeat([True, False, True, False], [101, 121, 59, 33])
        res = mcnemar(torch.from_numpy(a), torch.from_numpy(b))
        assert res.method == "chi2"
        assert res.statistic == pytest.approx(61**2 / 180)
        assert res.p == pytest.approx(sps.chi2.sf(61**2 / 180, 1))
        assert res.p < 1e-4

    def test_threshold_and_degenerate(self) -> None:
        a = np.array([True] * 24 + [False] * 1)
        assert mcnemar(a, ~a).method == "chi2"  # 25 discordant pairs
        assert mcnemar(a[1:], ~a[1:]).method == "exact"  # 24
        same = mcnemar(a, a)
        assert same.p == 1.0 and same.b == same.c == 0

    def test_bad_input(self) -> None:
        with pytest.raises(ValueError, match="same length"):
            mcnemar([True, False], [True])
        with pytest.raises(ValueError, match="booleans or 0/1"):
            mcnemar([0.5, 1.0], [1.0, 1.0])


class TestWilson:
    def test_known_value(self) -> None:
        low, high = wilson_interval(8, 10, 0.95)
        assert low == pytest.approx(0.4902, abs=1e-4)
        assert high == pytest.approx(0.9433, abs=1e-4)

    def test_matches_closed_form(self) -> None:
        k, n, conf = 853, 1000, 0.99
        z = sps.norm.ppf(0.5 + conf / 2)
        p = k / n
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
        assert wilson_interval(k, n, conf) == pytest.approx((centre - half, centre + half))

    def test_bad_input(self) -> None:
        with pytest.raises(ValueError, match=r"\[0, n=10\]"):
            wilson_interval(11, 10)
        with pytest.raises(ValueError, match="n must be >= 1"):
            wilson_interval(0, 0)
        with pytest.raises(ValueError, match="confidence"):
            wilson_interval(1, 2, 95)

    @settings(max_examples=100, deadline=None)
    @given(
        st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
        st.floats(0.5, 0.999),
    )
    def test_contains_p_hat_and_stays_in_unit_interval(
        self, kn: tuple[int, int], conf: float
    ) -> None:
        k, n = kn
        low, high = wilson_interval(k, n, conf)
        assert 0.0 <= low <= k / n <= high <= 1.0
        assert high - low > 0


class TestMeanSD:
    def test_sample_sd_and_format(self) -> None:
        res = mean_sd([84.0, 85.5, 86.4])
        assert res.mean == pytest.approx(85.3)
        assert res.sd == pytest.approx(np.std([84.0, 85.5, 86.4], ddof=1))
        assert str(res) == "85.3 ± 1.2"
        assert mean_sd(torch.tensor([0.853, 0.841])).format(decimals=2, scale=100) == (
            "84.70 ± 0.85"
        )

    def test_single_value_and_errors(self) -> None:
        one = mean_sd([0.9])
        assert math.isnan(one.sd) and one.format() == "0.9 (n=1)"
        with pytest.raises(ValueError, match="at least one value"):
            mean_sd([])
        with pytest.raises(ValueError, match="NaN"):
            mean_sd([1.0, float("nan")])


def test_anova_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    groups = [rng.normal(m, 1.0, size=n) for m, n in ((0.0, 5), (0.5, 7), (1.5, 6))]
    res = one_way_anova(*groups)
    ref = sps.f_oneway(*groups)
    assert res.f == pytest.approx(ref.statistic) and res.p == pytest.approx(ref.pvalue)
    assert res.df == (2, 15)
    # Hand check of F on a tiny case: groups [1,2,3], [4,5,6]: MSB = 13.5, MSW = 1.
    assert one_way_anova([1, 2, 3], [4, 5, 6]).f == pytest.approx(13.5)
    with pytest.raises(ValueError, match="at least 2 groups"):
        one_way_anova([1.0, 2.0])


def test_compare_methods_validation() -> None:
    with pytest.raises(ValueError, match="one name per column"):
        compare_methods(TABLE_4_2, ["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        compare_methods(TABLE_4_2, ["a", "a", "b", "c"])
