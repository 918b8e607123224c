"""``evaluate(model, x, y, protocol=..., eps=..., norm=...) -> EvalResult``.

Runs a protocol batch by batch, records per-point outcomes and summarises them with
:mod:`robustact.evaluate.metrics`. Stochastic models (``surgery.is_stochastic``) are
evaluated ``repeats`` times; the result then carries mean ± sd, worst-of-R and
majority-vote accuracies.

Reproducibility: with ``seed=`` the run happens inside ``torch.random.fork_rng`` seeded
with it, so attacks that draw their seeds from torch's RNG and stochastic layers repeat
exactly, and the caller's global RNG state is left untouched.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustact._validate import check_batch, is_int
from robustact.attacks import Attack
from robustact.attacks.adaptive import DEFAULT_EOT
from robustact.evaluate.catalog import get_protocol
from robustact.evaluate.metrics import (
    AttackOutcome,
    CleanOutcome,
    EvalResult,
    cat_outcomes,
    summarise,
    summarise_repeats,
)
from robustact.evaluate.protocol import Protocol, ProtocolEntry
from robustact.progress import Task, task
from robustact.surgery import is_stochastic

__all__ = ["evaluate", "iter_batches", "run_entry", "run_protocol_batch"]

Data = Tensor | Any  # a tensor x (with y), a dataset with .tensors(), or an iterable of (x, y)


def iter_batches(data: Data, y: Tensor | None, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(x, y)`` batches from a tensor pair, a dataset or a loader."""
    if isinstance(data, Tensor):
        if y is None:
            raise ValueError("evaluate(model, x, y): y is required when x is a tensor")
        if y.dim() != 1 or y.shape[0] != data.shape[0]:
            raise ValueError(f"y must be (N,) with N = {data.shape[0]}, got {tuple(y.shape)}")
        for i in range(0, data.shape[0], batch_size):
            yield data[i : i + batch_size], y[i : i + batch_size]
        return
    if y is not None:
        raise ValueError("pass y only with a tensor x; datasets and loaders carry their labels")
    if hasattr(data, "tensors") and callable(data.tensors):
        x_all, y_all = data.tensors()
        yield from iter_batches(x_all, y_all, batch_size)
        return
    if isinstance(data, Iterable):
        for i, batch in enumerate(data):
            if not (isinstance(batch, list | tuple) and len(batch) >= 2):
                raise ValueError(f"batch {i} of the loader is not an (x, y) pair")
            yield batch[0], batch[1]
        return
    raise TypeError(
        f"cannot evaluate on {type(data).__name__}: pass tensors x, y, a dataset with "
        ".tensors() or an iterable of (x, y) batches"
    )


def _checked(x: Tensor, y: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """One batch on ``device`` after the pixel contract: every point (misclassified ones
    too) finite in [0, 1], float32-compatible; integer labels (int32 etc. widened to
    int64), never float labels silently truncated."""
    if isinstance(y, Tensor) and not y.is_floating_point() and y.dtype != torch.bool:
        y = y.long()
    check_batch(x, y)
    return x.to(device), y.to(device)


def _probs(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(pred, max-prob, true-class prob), each (N,), from one forward pass.

    Every protocol judges a random model this way too, one pass per decision averaged over
    the repeated runs, so paper-protocol and adaptive numbers compare; the plurality vote
    of `attacks.stochastic.VOTE_PASSES` passes is how EOT attacks pick their iterate, and
    judging by it here would measure a more lenient, voting classifier."""
    with torch.no_grad():
        logits = model(x)
    if logits.dim() != 2:
        raise ValueError(f"model must return logits (N, K), got shape {tuple(logits.shape)}")
    p = F.softmax(logits.float(), dim=1)
    return logits.argmax(1), p.amax(1), p.gather(1, y[:, None]).squeeze(1)


def run_entry(
    model: nn.Module, x: Tensor, y: Tensor, entry: ProtocolEntry, eps: float, norm: str,
    eot_samples: int = DEFAULT_EOT,
) -> tuple[Tensor, Attack]:  # fmt: skip
    """Run one protocol entry on ``(x, y)`` under ``(eps, norm)``: the one place an entry
    becomes an attack and runs (``entry.build`` carries its BPDA and EOT).

    Returns:
        ``(x_adv (N, ...), the attack)``; the model is left in eval mode.
    """
    attack = entry.build(model, eps, norm, eot_samples, x)  # x: randomness by behaviour
    x_adv = attack(model, x, y)
    model.eval()
    return x_adv, attack


def run_protocol_batch(
    model: nn.Module, x: Tensor, y: Tensor, protocol: Protocol, row: Task | None = None
) -> tuple[CleanOutcome, list[AttackOutcome], int]:
    """Run every attack of ``protocol`` on one batch (``row``: a progress row advanced
    once per attack).

    Returns:
        ``(clean outcome, attack outcomes, number of classes)``; tensors on the CPU.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            k = int(model(x[:1]).shape[1])
        if y.numel() and int(y.max()) >= k:
            raise ValueError(f"label {int(y.max())} out of range for a model with {k} outputs")
        pred, pmax, ptrue = _probs(model, x, y)
        clean = CleanOutcome(y.cpu(), pred.cpu(), pmax.cpu(), ptrue.cpu())
        clean_ok = pred == y
        robust = clean_ok.clone()
        outs: list[AttackOutcome] = []
        for entry in protocol.entries:
            attack = None
            counts = not entry.own_threat
            attacked = robust.clone() if (protocol.cascade and counts) else clean_ok.clone()
            a_pred, a_max, a_true = pred.clone(), pmax.clone(), ptrue.clone()
            linf = torch.zeros(x.shape[0], device=x.device)
            l2 = torch.zeros(x.shape[0], device=x.device)
            t0 = time.perf_counter()
            idx = attacked.nonzero().squeeze(1)
            if idx.numel():
                xs, ys = x[idx], y[idx]
                x_adv, attack = run_entry(model, xs, ys, entry, protocol.eps, protocol.norm,
                                          protocol.eot_samples)  # fmt: skip
                p_, m_, t_ = _probs(model, x_adv, ys)
                a_pred[idx], a_max[idx], a_true[idx] = p_, m_, t_
                d = (x_adv - xs).flatten(1)
                linf[idx] = d.abs().amax(1).to(linf.dtype)
                l2[idx] = d.norm(dim=1).to(l2.dtype)
            seconds = time.perf_counter() - t0
            if counts:
                robust &= ~(attacked & (a_pred != y))
            if attack is None:  # no point to attack: build it only to describe it
                attack = entry.build(model, protocol.eps, protocol.norm, protocol.eot_samples, x)
            desc = {**entry.describe(), "attack_args": attack.describe()}
            desc["eot"] = entry.resolve_eot(model, protocol.eot_samples, x)
            outs.append(
                AttackOutcome(
                    label=entry.label,
                    attacked=attacked.cpu(),
                    pred=a_pred.cpu(),
                    max_prob=a_max.cpu(),
                    true_prob=a_true.cpu(),
                    linf=linf.cpu(),
                    l2=l2.cpu(),
                    seconds=seconds,
                    describe=desc,
                    counts=counts,
                )
            )
            if row is not None:
                row.advance(1, attack=entry.label)
    finally:
        model.train(was_training)
    return clean, outs, k


def _resolve(protocol: str | Protocol, eps: float | None, norm: str | None, fast: bool) -> Protocol:
    if isinstance(protocol, Protocol):
        if eps is not None and float(eps) != protocol.eps:
            raise ValueError(
                f"eps={eps} conflicts with protocol {protocol.name!r} built at eps="
                f"{protocol.eps}; use protocol.with_threat(eps) or leave eps out"
            )
        if norm is not None and norm.lower() != protocol.norm.lower():
            raise ValueError(f"norm={norm!r} conflicts with the protocol's norm {protocol.norm!r}")
        return protocol
    if isinstance(protocol, str):
        if eps is None:
            raise ValueError(f"protocol {protocol!r} needs eps=; e.g. eps=0.1 for MNIST L-inf")
        return get_protocol(protocol, eps=eps, norm=norm or "Linf", fast=fast)
    raise TypeError(f"protocol must be a name or a Protocol, got {type(protocol).__name__}")


def evaluate(
    model: nn.Module,
    x: Data,
    y: Tensor | None = None,
    *,
    protocol: str | Protocol = "adaptive",
    eps: float | None = None,
    norm: str | None = None,
    fast: bool = False,
    batch_size: int = 512,
    seed: int | None = None,
    repeats: int | None = None,
) -> EvalResult:
    """Evaluate ``model`` under a protocol.

    Args:
        model: classifier mapping images (N, C, H, W) in [0, 1] to logits (N, K); it stays
            on its device, the data is moved to the device of its first parameter.
        x: images (N, ...) with labels ``y`` (N,); or a dataset with ``.tensors()``; or an
            iterable of ``(x, y)`` batches (a DataLoader).
        protocol: a :class:`Protocol` or a name from ``list_protocols()``.
        eps, norm: threat model (needed with a protocol name).
        fast: cut steps/queries (named protocols only; labelled in the report).
        batch_size: points per attack call for tensor/dataset input.
        seed: run inside a forked, seeded torch RNG: same seed, same numbers.
        repeats: R runs for a stochastic model (default: the protocol's ``repeats``);
            deterministic models always run once.
    Returns:
        :class:`~robustact.evaluate.metrics.EvalResult`; for stochastic models its
        top-level numbers are those of the first run and ``stochastic`` holds the summary
        (mean ± sd, each run); its typed rows headline the mean over the runs.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    proto = _resolve(protocol, eps, norm, fast)
    ref = next(iter(model.parameters()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    batches = [_checked(bx, by, device) for bx, by in iter_batches(x, y, batch_size)]
    if not batches:
        raise ValueError("no data to evaluate: the input was empty")
    stochastic = is_stochastic(model, batches[0][0])  # by behaviour, not only by module flag
    r = (repeats if repeats is not None else proto.repeats) if stochastic else 1
    if not is_int(r) or r < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    t0 = time.perf_counter()
    runs, num_classes = _run_repeats(model, batches, proto, r, seed, device)
    seconds = time.perf_counter() - t0
    notes = proto.lines()[1:]
    skipped = [e.label for e in proto.entries if e.own_threat]
    if skipped:
        notes.append(f"not in the worst case (own threat model): {', '.join(skipped)}")
    results = [
        summarise(c, a, protocol=proto.name, eps=proto.eps, norm=proto.norm,
                  num_classes=num_classes, cascade=proto.cascade, fast=proto.fast,
                  seconds=seconds, seed=seed, notes=notes)
        for c, a in runs
    ]  # fmt: skip
    result = results[0]
    if stochastic:
        result.stochastic = summarise_repeats(runs, results, num_classes)
        result.notes.append(
            f"stochastic model: {r} runs; the table shows run 1 of {r}, the stored rows' "
            f"accuracy is the mean over the {r} runs (accuracy_run: each run)"
        )
    return result


def _run_repeats(
    model: nn.Module, batches: list[tuple[Tensor, Tensor]], proto: Protocol, r: int,
    seed: int | None, device: torch.device,
) -> tuple[list[tuple[CleanOutcome, list[AttackOutcome]]], int]:  # fmt: skip
    """``r`` runs of ``proto`` over every batch (inside a forked RNG seeded with ``seed``,
    when given), one progress row over attacks x batches x runs; returns each run's
    outcomes and the number of classes."""
    devices = [device] if device.type == "cuda" else []
    rng = torch.random.fork_rng(devices=devices) if seed is not None else nullcontext()
    runs = []
    num_classes = 0
    with rng:
        if seed is not None:
            torch.manual_seed(int(seed))
        units = r * len(batches) * len(proto.entries)
        with task(f"{proto.name} eps={proto.eps:g}", total=units, transient=True) as row:
            for _ in range(r):
                parts = []
                for bx, by in batches:
                    c, a, num_classes = run_protocol_batch(model, bx, by, proto, row)
                    parts.append((c, a))
                runs.append(cat_outcomes(parts))
    return runs, num_classes
