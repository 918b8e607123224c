"""The full ``adaptive`` protocol's time against official AutoAttack (standard version).

Same models and points as ``benchmarks/autoattack.py`` (a natural and a PGD-5 trained MLP
784-128-10 on the mnist-t10k split, Linf eps 0.1), in one run: official
``AutoAttack(version='standard').run_standard_evaluation`` and robustact's
``evaluate(protocol="adaptive")`` (full budget: APGD-CE, APGD-DLR, PGD-margin x5,
APGD-T x9, Square 5000, the escalation), one after the other on one torch thread.
Target: time ratio <= 1.0 at equal or lower robust accuracy.

Run by hand: ``PYTHONPATH=src python benchmarks/adaptive_time.py [--points N]``.
Writes ``benchmarks/results/adaptive_time.json`` (machine, load, command, numbers).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from autoattack import EPS, robust, run_models

from robustact.evaluate import evaluate

OUT = Path(__file__).resolve().parent / "results" / "adaptive_time.json"


def compare(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Any]:
    """Official AutoAttack standard, then robustact's full adaptive protocol."""
    from pyautoattack import AutoAttack

    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    aa = AutoAttack(model, eps=EPS, norm="Linf", version="standard", seed=0)
    t0 = time.perf_counter()
    x_ref, _ = aa.run_standard_evaluation(x, y, batch_size=len(y))
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = evaluate(model, x, y, protocol="adaptive", eps=EPS, seed=0, batch_size=len(y))
    t_ours = time.perf_counter() - t0
    ours, official = 100 * res.robust_accuracy, robust(model, x_ref, y)
    return {
        "clean_acc": round(100 * res.clean_accuracy, 2),
        "adaptive_acc": round(ours, 2),
        "official_acc": round(official, 2),
        "adaptive_per_attack_s": {a.label: round(a.seconds, 2) for a in res.attacks},
        "adaptive_s": round(t_ours, 2),
        "official_s": round(t_ref, 2),
        "time_ratio": round(t_ours / t_ref, 3),
        "equal_or_lower_accuracy": ours <= official + 1e-9,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_models(compare, OUT, __doc__ or "", argv, command_prefix=("PYTHONPATH=src",))


if __name__ == "__main__":
    main()
