"""Rich tables for evaluation results and masking reports."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from robustact.evaluate.masking import MaskingReport
    from robustact.evaluate.metrics import EvalResult

__all__ = ["eval_table", "masking_table", "to_text"]


def _pct(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{100 * v:.{digits}f}"


def _num(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _options(d: dict[str, Any]) -> str:
    keys = ("bpda", "eot", "loss", "steps", "restarts", "queries", "targeted")
    parts = [f"{k}={d[k]}" for k in keys if k in d and d[k] not in (None, False)]
    parts = [p for p in parts if p != "eot=1"]
    return " ".join(parts)


def eval_table(r: EvalResult) -> Table:
    """One row per attack plus clean and worst-case rows; accuracies in %."""
    t = Table(title=r.title(), show_lines=False)
    for col in (
        "attack",
        "options",
        "acc %",
        "95% CI",
        "cum. acc %",
        "success %",
        "max-prob",
        "true-prob",
        "Linf",
        "L2",
        "s",
    ):
        t.add_column(col, justify="left" if col in ("attack", "options") else "right")
    t.add_row(
        "clean",
        "",
        _pct(r.clean_accuracy),
        f"[{_pct(r.clean_ci[0])}, {_pct(r.clean_ci[1])}]",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    )
    for a in r.attacks:
        ci = (
            "" if a.accuracy_ci is None else f"[{_pct(a.accuracy_ci[0])}, {_pct(a.accuracy_ci[1])}]"
        )
        t.add_row(
            a.label,
            _options(a.describe),
            _pct(a.accuracy),
            ci,
            _pct(a.cumulative_accuracy),
            _pct(a.success_rate),
            _num(a.mean_max_prob),
            _num(a.mean_true_prob),
            _num(a.mean_linf),
            _num(a.mean_l2),
            f"{a.seconds:.2f}",
        )
    t.add_row(
        "[bold]worst case[/bold]",
        "",
        _pct(r.robust_accuracy),
        f"[{_pct(r.robust_ci[0])}, {_pct(r.robust_ci[1])}]",
        "",
        _pct(r.success_rate),
        _num(r.mean_max_prob),
        _num(r.mean_true_prob),
        _num(r.mean_linf),
        _num(r.mean_l2),
        f"{r.seconds:.2f}",
    )
    cap = [f"drop (clean - robust) {_pct(r.robustness_gap)} pp"]
    if r.stochastic is not None:
        s = r.stochastic
        for key in ("clean_acc", "robust_acc"):
            ms = s.mean_sd[key]
            cap.append(
                f"{key} over R={s.repeats}: {ms.format(2, 100)} %, worst-of-R "
                f"{_pct(s.worst_of_r[key])} %, majority {_pct(s.majority_vote[key])} %"
            )
    cap.extend(r.notes)
    t.caption = "\n".join(cap)
    return t


def masking_table(rep: MaskingReport) -> Table:
    """One row per masking check, with its verdict in the title."""
    t = Table(title=f"gradient-masking report: {rep.verdict.upper()} ({rep.reason})")
    for col in ("check", "value", "threshold", "flag", "source", "meaning"):
        t.add_column(col, justify="right" if col in ("value", "threshold") else "left")
    for c in rep.checks:
        value = "n/a" if c.value is None else f"{c.value:.4g}"
        t.add_row(
            c.name,
            value,
            f"{c.threshold:.4g}",
            "[red]FLAG[/red]" if c.flagged else "ok",
            c.citation,
            c.explanation,
        )
    t.caption = "\n".join(rep.notes)
    return t


def to_text(table: Table, width: int = 140) -> str:
    """Render a rich table as plain text (no colour codes)."""
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(table)
    return buf.getvalue()
