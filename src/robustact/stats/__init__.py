"""Statistics for comparing methods: ranks, ANOVA, Friedman / Iman-Davenport, Nemenyi
critical difference and its diagram, McNemar, Wilson intervals, mean ± sd over seeds
(`aggregate_seeds`: store records that differ only by the seed -> mean, sd, n_seeds).

Built on scipy (the ``report`` extra), except `samples`, which evaluation needs and which
runs on numpy alone; the few hand-written formulas (Friedman from average ranks,
Iman-Davenport, the CD and its groups) say why in their docstrings. References: J. Demšar,
"Statistical
Comparisons of Classifiers over Multiple Data Sets", JMLR 7 (2006).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from robustact.stats.compare import MethodComparison, compare_methods
    from robustact.stats.diagram import cd_diagram
    from robustact.stats.omnibus import (
        AnovaResult,
        FriedmanResult,
        friedman,
        friedman_from_ranks,
        one_way_anova,
    )
    from robustact.stats.posthoc import (
        critical_difference,
        nemenyi_q,
        nemenyi_significance,
        nonsignificant_groups,
    )
    from robustact.stats.ranks import average_ranks, rank_matrix
    from robustact.stats.samples import McNemarResult, MeanSD, mcnemar, mean_sd, wilson_interval
    from robustact.stats.seeds import SeedAggregate, aggregate_seeds, seed_free_key

#: name -> submodule, imported on first use: `samples` (what evaluation needs) runs on
#: numpy alone, the rest needs scipy and matplotlib (the ``report`` extra).
_WHERE = {
    "MethodComparison": "compare",
    "compare_methods": "compare",
    "cd_diagram": "diagram",
    "AnovaResult": "omnibus",
    "FriedmanResult": "omnibus",
    "friedman": "omnibus",
    "friedman_from_ranks": "omnibus",
    "one_way_anova": "omnibus",
    "critical_difference": "posthoc",
    "nemenyi_q": "posthoc",
    "nemenyi_significance": "posthoc",
    "nonsignificant_groups": "posthoc",
    "average_ranks": "ranks",
    "rank_matrix": "ranks",
    "McNemarResult": "samples",
    "MeanSD": "samples",
    "mcnemar": "samples",
    "mean_sd": "samples",
    "wilson_interval": "samples",
    "SeedAggregate": "seeds",
    "aggregate_seeds": "seeds",
    "seed_free_key": "seeds",
}

__all__ = [
    "AnovaResult",
    "FriedmanResult",
    "McNemarResult",
    "MeanSD",
    "MethodComparison",
    "SeedAggregate",
    "aggregate_seeds",
    "average_ranks",
    "cd_diagram",
    "compare_methods",
    "critical_difference",
    "friedman",
    "friedman_from_ranks",
    "mcnemar",
    "mean_sd",
    "nemenyi_q",
    "nemenyi_significance",
    "nonsignificant_groups",
    "one_way_anova",
    "rank_matrix",
    "seed_free_key",
    "wilson_interval",
]


def __getattr__(name: str) -> Any:
    sub = _WHERE.get(name)
    if sub is None:
        raise AttributeError(f"module 'robustact.stats' has no attribute {name!r}")
    from robustact._extras import import_or_explain

    value = getattr(import_or_explain(f"robustact.stats.{sub}", "report"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
