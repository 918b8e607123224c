"""Named evaluation protocols: ordered attack lists with their options.

A :class:`Protocol` is a name, a threat model (eps, norm) and an ordered tuple of
:class:`ProtocolEntry` (label, attack, keyword arguments, ``bpda``, ``eot``). Built-ins:

``seed``
    As the dissertation ran them (Ch. 4 §4.5.5 and Ch. 5 §5.1.3): FGSM; PGD with 10 steps
    of eps/10 (0.01 at eps 0.1); APGD-CE and APGD-DLR (no settings given: AutoAttack's 100
    steps, 1 restart); CW-L2 with 10 000 iterations, learning rate 0.01, initial constant
    0.001 and 9 binary-search steps, bounded at L2 <= 18 (§5.2.1); Square (no settings given:
    5000 queries, p_init 0.8). Plain gradients, no EOT, no BPDA; every attack on all
    clean-correct points (the seeds report one column per attack). CW-L2 is reported under
    its own L2 threat model and left out of the worst case unless the protocol is L2.
``seed-brelu``
    The BReLU paper's evaluation: FGSM, PGD-20 (step eps/4: the paper gives 0.00784 at
    eps 0.03 for PGD-7 and no other), CW (unbounded; settings unstated, torchattacks'
    defaults c=1, kappa=0, 50 steps, lr 0.01 assumed).
``adaptive``
    BPDA through caps (gradient attacks wrapped in ``attacks.Adaptive(bpda=True)``), EOT over
    stochastic layers (``eot="auto"``: ``eot_samples`` passes, default
    ``attacks.DEFAULT_EOT`` = 20, when ``surgery.is_stochastic(model)``, else 1), CE / DLR /
    margin losses, APGD-T, PGD-margin with restarts and gradient-free Square (with EOT),
    then ``evaluate.health.Escalation`` on the survivors (transfer from a derived
    surrogate, Square rounds with doubling budgets, SPSA); AutoAttack-style cascade.
    Randomness and BPDA are decided by behaviour on each batch (``surgery.is_stochastic
    (model, x)``, ``bpda.find_flat_modules``) as well as by the built-in layers. DLR needs
    at least 3 classes and APGD-T at least 4 (as in AutoAttack).
``autoattack``
    AutoAttack's standard version (Croce & Hein 2020, ``version='standard'``): APGD-CE,
    APGD-T (DLR, 9 targets), FAB-T (9 targets, one 100-step run each from the clean point,
    alpha_max 0.1, eta 1.05, beta 0.9; a point counts as broken when FAB finds a
    misclassified point within eps) and Square with 5000 queries and AutoAttack's sampling
    (``resample=False``); cascade; no BPDA/EOT. Matches the official implementation
    (``tests/test_autoattack_oracle.py``), so its numbers compare with RobustBench's.
``autoattack-rand``
    AutoAttack's version for randomised defences (``version='rand'``): APGD-CE and
    APGD-DLR, 100 steps, EOT over 20 forward passes per gradient; cascade.

``fast=True`` cuts steps, restarts, targets, queries and (``adaptive``) EOT passes to 8
(for tests and quick recipes) and is labelled in every report.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from torch import Tensor, nn

from robustact._validate import is_int
from robustact.attacks import Attack, list_attacks
from robustact.attacks.adaptive import DEFAULT_EOT, Adaptive, check_eot, resolve_eot
from robustact.attacks.threat import canonical_norm

__all__ = ["Protocol", "ProtocolEntry"]

AttackSpec = str | Callable[..., Attack]


def _params(fn: Callable[..., Any]) -> set[str]:
    """Keyword names ``fn`` accepts; for a class whose ``__init__`` forwards ``**kwargs``,
    those of its bases too."""
    out: set[str] = set()
    for owner in getattr(fn, "__mro__", (fn,)):
        target = owner.__init__ if isinstance(owner, type) else owner  # type: ignore[misc]
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):
            break
        out |= {n for n, p in params.items() if p.kind is not p.VAR_KEYWORD}
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return out


def _load_attack_modules() -> None:
    """Import the attack modules that ``robustact.attacks`` may not import itself yet, so
    their registry entries exist (cw, square, zerograd register on import)."""
    for mod in ("cw", "square", "zerograd"):
        try:
            importlib.import_module(f"robustact.attacks.{mod}")
        except ModuleNotFoundError:
            continue


def _attack_class(attack: AttackSpec) -> Callable[..., Attack]:
    if isinstance(attack, str):
        from robustact.attacks.base import ATTACKS

        _load_attack_modules()
        return ATTACKS.get(attack)
    return attack


@dataclass(frozen=True)
class ProtocolEntry:
    """One attack of a protocol.

    Attributes:
        label: column name in reports (unique within a protocol).
        attack: a registered attack name (``robustact.attacks.list_attacks()``) or a
            factory ``(**kwargs) -> Attack``.
        kwargs: hyper-parameters passed to the attack (eps and norm are added from the
            protocol unless ``own_threat``).
        bpda: straight-through (BPDA) gradients: :meth:`build` wraps the attack in
            ``attacks.Adaptive(bpda=True)``.
        eot: forward passes averaged per gradient/query; ``"auto"`` = the protocol's
            ``eot_samples`` (default ``attacks.DEFAULT_EOT``) on stochastic models, 1
            otherwise.
        own_threat: the attack keeps the eps/norm in ``kwargs`` (a different threat model);
            it is reported as its own column and left out of the worst case.
    """

    label: str
    attack: AttackSpec
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    bpda: bool = False
    eot: int | Literal["auto"] = 1
    own_threat: bool = False

    def resolve_eot(
        self, model: nn.Module, eot_samples: int = DEFAULT_EOT, x: Tensor | None = None
    ) -> int:
        """The EOT count this entry uses on ``model`` (randomness tested on batch ``x``)."""
        return resolve_eot(model, self.eot, eot_samples, x)

    def build(
        self,
        model: nn.Module,
        eps: float,
        norm: str,
        eot_samples: int = DEFAULT_EOT,
        x: Tensor | None = None,
    ) -> Attack:
        """The complete attack for ``model`` under the protocol's threat model: the EOT
        count resolved on ``model`` (by behaviour on the batch ``x`` when given) and, when
        the entry asks for BPDA or EOT, wrapped in :class:`~robustact.attacks.Adaptive`,
        so callers just run it."""
        cls = _attack_class(self.attack)
        params = _params(cls)
        kw = dict(self.kwargs)
        if not self.own_threat:
            kw["eps"] = eps
            if "norm" in params:
                kw["norm"] = norm
        eot = self.resolve_eot(model, eot_samples, x)
        if "eot" in params:
            kw["eot"] = eot
        elif eot > 1:
            raise ValueError(
                f"protocol entry {self.label!r}: attack {self.attack!r} has no eot parameter "
                f"but eot={eot} was requested; use an attack with EOT (pgd, apgd, square)"
            )
        try:
            attack = cls(**kw)
        except TypeError as e:
            raise ValueError(f"protocol entry {self.label!r}: bad attack arguments ({e})") from e
        if self.bpda or eot > 1:
            return Adaptive(attack, bpda=self.bpda, eot=eot if "eot" in params else None)
        return attack

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description (attack name, kwargs, options)."""
        name = (
            self.attack
            if isinstance(self.attack, str)
            else getattr(self.attack, "__name__", type(self.attack).__name__)
        )
        d: dict[str, Any] = {"label": self.label, "attack": name, **dict(self.kwargs)}
        d.update(bpda=self.bpda, eot=self.eot)
        if self.own_threat:
            d["own_threat"] = True
        return d


_SPEC_OPTIONS = {"attack", "label", "bpda", "eot", "own_threat"}


@dataclass(frozen=True)
class Protocol:
    """An ordered attack list under one threat model.

    Attributes:
        name: printed in every report.
        entries: the attacks, in order.
        eps, norm: threat model.
        fast: steps/queries were cut (labelled in reports).
        cascade: AutoAttack style (each attack only on points still robust) when True;
            every attack on all clean-correct points when False.
        eot_samples: EOT passes for ``eot="auto"`` entries on stochastic models.
        repeats: R full runs for stochastic models (mean ± sd, worst-of-R, majority vote).
    """

    name: str
    entries: tuple[ProtocolEntry, ...]
    eps: float
    norm: str = "Linf"
    fast: bool = False
    cascade: bool = True
    eot_samples: int = DEFAULT_EOT
    repeats: int = 5

    def __post_init__(self) -> None:
        if not self.entries:
            raise ValueError(f"protocol {self.name!r} has no attacks; give at least one entry")
        labels = [e.label for e in self.entries]
        dup = {lab for lab in labels if labels.count(lab) > 1}
        if dup:
            raise ValueError(
                f"protocol {self.name!r}: duplicate labels {sorted(dup)}; make them unique"
            )
        eps = float(self.eps)
        if not eps >= 0 or eps == float("inf"):
            raise ValueError(f"protocol eps must be a finite number >= 0, got {self.eps!r}")
        object.__setattr__(self, "eps", eps)
        object.__setattr__(self, "norm", canonical_norm(self.norm))
        for what, v in (("eot_samples", self.eot_samples), ("repeats", self.repeats)):
            if not is_int(v) or v < 1:
                raise ValueError(f"protocol {what} must be an int >= 1, got {v!r}")

    @classmethod
    def from_spec(
        cls,
        spec: Sequence[Mapping[str, Any]],
        *,
        eps: float,
        norm: str = "Linf",
        name: str = "custom",
        cascade: bool = True,
        fast: bool = False,
        eot_samples: int = DEFAULT_EOT,
        repeats: int = 5,
    ) -> Protocol:
        """Build a protocol from dicts such as ``{"attack": "pgd", "steps": 20, "bpda": True}``.

        Keys ``attack`` (required, a registered name), ``label`` (default: the attack name,
        numbered if repeated), ``bpda``, ``eot`` (int or ``"auto"``), ``own_threat``; every
        other key is a keyword argument of the attack.
        """
        if isinstance(spec, Mapping) or not isinstance(spec, Sequence) or not spec:
            raise ValueError("spec must be a non-empty list of {'attack': name, ...} dicts")
        _load_attack_modules()
        known = list_attacks()
        entries: list[ProtocolEntry] = []
        for i, item in enumerate(spec):
            if not isinstance(item, Mapping) or "attack" not in item:
                raise ValueError(f"spec[{i}] must be a dict with an 'attack' key, got {item!r}")
            att = item["attack"]
            if not isinstance(att, str) or att not in known:
                raise ValueError(f"spec[{i}]: unknown attack {att!r}; known: {', '.join(known)}")
            try:
                eot = check_eot(item.get("eot", 1))
            except ValueError as e:
                raise ValueError(f"spec[{i}]: {e}") from None
            label = str(item.get("label", att))
            if any(e.label == label for e in entries):
                label = f"{label}#{i}"
            kwargs = {k: v for k, v in item.items() if k not in _SPEC_OPTIONS}
            entries.append(
                ProtocolEntry(
                    label=label,
                    attack=att,
                    kwargs=kwargs,
                    bpda=bool(item.get("bpda", False)),
                    eot=eot,
                    own_threat=bool(item.get("own_threat", False)),
                )
            )
        return cls(
            name=name,
            entries=tuple(entries),
            eps=eps,
            norm=norm,
            fast=fast,
            cascade=cascade,
            eot_samples=eot_samples,
            repeats=repeats,
        )

    def with_threat(self, eps: float, norm: str | None = None) -> Protocol:
        """The same attack list under another threat model."""
        return replace(self, eps=eps, norm=self.norm if norm is None else norm)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description of the protocol: its fields, entries described."""
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["entries"] = [e.describe() for e in d.pop("entries")]
        return d

    def lines(self) -> list[str]:
        """Human-readable lines, one per attack, for reports."""
        from robustact.evaluate._notebook import display_protocol

        quick = " [QUICK: reduced steps/queries]" if self.fast else ""
        head = (
            f"protocol '{display_protocol(self.name)}'{quick}: "
            f"{self.norm} eps={self.eps:g}, {'cascade' if self.cascade else 'individual'}"
        )
        out = [head]
        for i, e in enumerate(self.entries, 1):
            d = e.describe()
            args = ", ".join(
                f"{k}={v}" for k, v in d.items() if k not in ("label", "attack", "bpda", "eot")
            )
            opts = []
            if e.bpda:
                opts.append("BPDA")
            if e.eot != 1:
                opts.append(f"EOT={e.eot}")
            if e.own_threat:
                opts.append("own threat model, not in worst case")
            out.append(f"  {i}. {e.label}: {d['attack']}({args}) {' '.join(opts)}".rstrip())
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def __getattr__(name: str) -> Any:
    # the named protocols live in catalog.py (which imports this module); keep the
    # old import path ``robustact.evaluate.protocol.get_protocol`` working lazily
    if name in ("PROTOCOLS", "get_protocol", "list_protocols"):
        from robustact.evaluate import catalog

        return getattr(catalog, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
