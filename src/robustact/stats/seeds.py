"""Mean ± sd over random seeds of typed result rows (store records).

Two records are repeats of one measurement when they differ only by the random seed: the
same row identity (kind, protocol, attack, item, metric, eps, norm) and the same config
(every ``cfg.*`` key but ``cfg.seed``). `aggregate_seeds` groups them and gives the mean,
the sample sd (ddof = 1) and the number of seeds of each group.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from robustact.stats.samples import MeanSD, mean_sd

__all__ = ["IDENTITY_KEYS", "SeedAggregate", "aggregate_seeds", "seed_free_key"]

#: Record keys that say what a number measures (besides the ``cfg.*`` config keys).
IDENTITY_KEYS = ("spec", "kind", "protocol", "attack", "item", "metric", "eps", "norm",
                 "method", "block", "threat")  # fmt: skip
#: Keys that name the repeat, not the measurement.
SEED_KEYS = ("seed", "cfg.seed")


def seed_free_key(record: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The identity of ``record`` without its seed: sorted (key, value) pairs of
    `IDENTITY_KEYS` and of every ``cfg.*`` key except ``cfg.seed`` (values made hashable)."""
    keys = [k for k in record if k in IDENTITY_KEYS or k.startswith("cfg.")]
    return tuple(sorted((k, _hashable(record[k])) for k in keys if k not in SEED_KEYS))


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((str(k), _hashable(x)) for k, x in v.items()))
    return v


@dataclass(frozen=True)
class SeedAggregate:
    """One measurement over its seeds.

    Attributes:
        record: the identity keys of the group (those of `seed_free_key`), taken from its
            first record.
        stat: mean ± sample sd over the seeds (sd NaN for one seed).
        seeds: the seeds (or cell ids where a record has no seed), in first-seen order.
    """

    record: dict[str, Any]
    stat: MeanSD
    seeds: tuple[Any, ...]

    @property
    def mean(self) -> float:
        return self.stat.mean

    @property
    def sd(self) -> float | None:
        """Sample sd over seeds; None with a single seed."""
        return None if self.stat.n < 2 or not math.isfinite(self.stat.sd) else self.stat.sd

    @property
    def n_seeds(self) -> int:
        return self.stat.n

    def to_record(self, value_key: str = "value") -> dict[str, Any]:
        """``record`` with ``value_key`` = the mean, ``sd``, ``n_seeds`` and ``seeds``."""
        return {**self.record, value_key: self.mean, "sd": self.sd, "n_seeds": self.n_seeds,
                "seeds": list(self.seeds)}  # fmt: skip


def aggregate_seeds(
    records: Iterable[Mapping[str, Any]], *, value_key: str = "value"
) -> list[SeedAggregate]:
    """Mean ± sd over seeds of records that differ only by the seed.

    Within one cell (``cell_id``) a measurement counts once: a duplicated row, e.g. an
    ε-independent attack stored at every ε, is not a second seed.

    Args:
        records: dicts as from `ResultStore.records()` (or any with ``value_key``; the
            seed is ``seed``/``cfg.seed``, the cell ``cell_id``).
        value_key: the key holding the number.

    Returns:
        One `SeedAggregate` per measurement, in first-appearance order; e.g. accuracies
        0.90, 0.92, 0.94 of seeds 0, 1, 2 give mean 0.92, sd 0.02, n_seeds 3.
    """
    groups: dict[tuple[Any, ...], tuple[dict[str, Any], dict[Any, tuple[Any, float]]]] = {}
    for r in records:
        v = r.get(value_key)
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            continue
        key = seed_free_key(r)
        if key not in groups:
            groups[key] = ({k: r[k] for k, _ in key}, {})
        seed = r.get("seed", r.get("cfg.seed"))
        cell = r.get("cell_id", seed)
        reps = groups[key][1]
        reps.setdefault(cell if cell is not None else len(reps), (seed, float(v)))
    out = []
    for rec, reps in groups.values():
        seeds = tuple(s if s is not None else c for c, (s, _) in reps.items())
        out.append(SeedAggregate(rec, mean_sd([v for _, v in reps.values()]), seeds))
    return out
