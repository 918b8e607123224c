"""Model surgery: swap activations, insert capped layers, switch on BPDA for attacks.

Everything here works on any ``nn.Module`` (ours or the user's), recursively. Functions
that change a model return ``(model, names)``, the names being the dotted module paths
they replaced or inserted. By default they work on a deep copy, so the caller's model
is left as it was (``inplace=True`` edits it directly, for models too big to copy).
"""

from __future__ import annotations

import copy
import fnmatch
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from robustact._validate import is_int
from robustact.activations import (
    ActLayer,
    BReLU,
    DReLU,
    SReLU,
    make_activation,
)
from robustact.bpda import register_bpda, straight_through
from robustact.models._record import record_edit, register_edit

__all__ = [
    "ACTIVATION_TYPES",
    "CapStats",
    "cap_summary",
    "find_activations",
    "find_caps",
    "find_stochastic",
    "insert_capped_layer",
    "is_stochastic",
    "record_io",
    "register_bpda",
    "replace_activations",
    "straight_through",
]

#: Module types treated as activations by default in :func:`replace_activations`.
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardtanh,
    nn.Softplus,
    nn.Mish,
    nn.CELU,
    nn.SELU,
    SReLU,
    DReLU,
    BReLU,
)

Match = (
    None
    | str
    | type[nn.Module]
    | tuple[type[nn.Module], ...]
    | int
    | Sequence[int]
    | Callable[[str, nn.Module], bool]
)


def find_activations(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every activation module of ``model`` as ``(dotted_name, module)``, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ACTIVATION_TYPES)]


def _select(acts: list[tuple[str, nn.Module]], match: Match) -> list[str]:
    if match is None:
        return [n for n, _ in acts]
    if isinstance(match, bool):
        raise TypeError("match must not be a bool; pass a type, name pattern, index or callable")
    if isinstance(match, int):
        match = [match]
    if isinstance(match, str):
        # glob on the dotted name ("features.*.act"), or a regex with the "re:" prefix
        if match.startswith("re:"):
            rx = re.compile(match[3:])
            return [n for n, _ in acts if rx.search(n)]
        return [n for n, _ in acts if fnmatch.fnmatchcase(n, match)]
    if isinstance(match, type) or (
        isinstance(match, tuple) and all(isinstance(t, type) for t in match)
    ):
        return [n for n, m in acts if isinstance(m, match)]
    if isinstance(match, Sequence):
        idx: list[int] = []
        for i in match:
            if not is_int(i):
                raise TypeError(f"match as a sequence must hold occurrence indices, got {match!r}")
            idx.append(i)
        out = []
        for i in idx:
            if not -len(acts) <= i < len(acts):
                raise IndexError(
                    f"activation index {i} out of range: the model has {len(acts)} activations"
                )
            out.append(acts[i][0])
        return list(dict.fromkeys(out))
    if callable(match):
        return [n for n, m in acts if match(n, m)]
    raise TypeError(f"unsupported match {match!r}: use a type, glob/regex, index list or callable")


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def record_io(
    model: nn.Module, x: Tensor, modules: Sequence[tuple[str, nn.Module]]
) -> dict[str, tuple[Tensor, Tensor]]:
    """One eval-mode, no-grad forward pass of ``x``; each module's (input, output), detached.

    Mode and hooks are restored even on errors; a module called twice keeps its first call;
    modules whose input or output is not one tensor are left out.

    Args:
        model: any module.
        x: an input batch (N, ...).
        modules: ``(name, module)`` pairs of submodules of ``model``.
    Returns:
        ``{name: (input, output)}``.
    """
    seen: dict[str, tuple[Tensor, Tensor]] = {}
    hooks = []
    for name, mod in modules:

        def hook(m: nn.Module, args: tuple[Any, ...], out: Any, name: str = name) -> None:
            if args and isinstance(args[0], Tensor) and isinstance(out, Tensor):
                seen.setdefault(name, (args[0].detach(), out.detach()))

        hooks.append(mod.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return seen


def _channel_counts(model: nn.Module, names: list[str], example_input: Tensor) -> dict[str, int]:
    """Run one forward pass and record dim 1 of the input of each named module."""
    io = record_io(model, example_input, [(n, model.get_submodule(n)) for n in names])
    return {n: int(inp.shape[1]) for n, (inp, _) in io.items() if inp.dim() >= 2}


def replace_activations(
    model: nn.Module,
    to: ActLayer,
    match: Match = None,
    *,
    example_input: Tensor | None = None,
    inplace: bool = False,
) -> tuple[nn.Module, list[str]]:
    """Replace activation modules of ``model`` with fresh ``to`` activations.

    Args:
        model: any module; activations are found recursively (see ``ACTIVATION_TYPES``).
        to: an activation name (``"srelu"``), class or factory, e.g.
            ``functools.partial(SReLU, max_value=0.1)``.
        match: which activations to replace: ``None`` (all); a type or tuple of types;
            a glob on the dotted module name (``"layers.*"``) or a regex ``"re:..."``; an
            occurrence index or list of indices (negative counts from the end); or a
            callable ``(name, module) -> bool``.
        example_input: an input batch (N, ...) used to size per-unit activations
            (D-ReLU) by one forward pass; without it D-ReLU layers are created lazy.
        inplace: edit ``model`` itself instead of a deep copy.
    Returns:
        ``(model, names)``: the edited model and the dotted names replaced, in order.
    Raises:
        ValueError: nothing matched (with the activations the model does have).
    """
    acts = find_activations(model)
    names = _select(acts, match)
    if not names:
        have = ", ".join(f"{n} ({type(m).__name__})" for n, m in acts)
        if not have:
            raise ValueError(
                f"match {match!r} selects no activation: the model holds no activation "
                "modules. Surgery swaps modules only; an activation called as a function in "
                "forward (F.relu, torch.clamp) cannot be swapped: define it as a module "
                "(self.act = nn.ReLU()) and call self.act(x) "
                "(robustact.loading.functional_activations(model, x) lists such calls)"
            )
        raise ValueError(f"match {match!r} selects no activation; the model has: {have}")
    target = model if inplace else copy.deepcopy(model)
    widths = _channel_counts(target, names, example_input) if example_input is not None else {}
    _swap_named(target, names, to, widths)
    if example_input is not None and any(
        isinstance(m, DReLU) and m.num_features is None for m in target.modules()
    ):
        _channel_counts(target, [], example_input)  # materialise remaining lazy caps
    desc, ok = _describe(to)
    edit = {"op": "replace_activations", "names": names, "to": desc,
            "widths": {n: widths[n] for n in names if n in widths}}  # fmt: skip
    return record_edit(target, edit, rebuildable=ok), names


def _swap_named(
    model: nn.Module, names: list[str], to: ActLayer | None, widths: dict[str, int]
) -> None:
    for n in names:
        _set_submodule(model, n, make_activation(to, widths.get(n)))


def _describe(act_layer: ActLayer) -> tuple[Any, bool]:
    """JSON description of an activation argument for the model record, and whether the
    record can rebuild it."""
    from robustact.models._actspec import describe_act_layer, is_rebuildable

    try:
        desc = describe_act_layer(act_layer)
    except (TypeError, ValueError):
        return repr(act_layer), False
    return desc, is_rebuildable(desc)


@register_edit("replace_activations")
def _replay_replace(model: nn.Module, edit: Any) -> nn.Module:
    from robustact.models._actspec import resolve_act_layer

    widths = {str(k): int(v) for k, v in dict(edit.get("widths") or {}).items()}
    _swap_named(model, [str(n) for n in edit["names"]], resolve_act_layer(edit["to"]), widths)
    return model


def insert_capped_layer(
    model: nn.Module,
    where: Literal["before_output", "after_input"] = "before_output",
    width: int | None = None,
    activation: ActLayer = "drelu",
    *,
    inplace: bool = False,
) -> tuple[nn.Module, list[str]]:
    """Insert a layer followed by a (capped) activation, as in dissertation Ch. 5.

    ``"before_output"`` (Fig 5.4): the last ``nn.Linear`` ``(in -> out)`` becomes
    ``Linear(in -> width), activation, Linear(width -> out)``; with ``width`` equal to
    ``in`` (the default) the original output layer is kept as the last step.
    ``"after_input"``: the first ``nn.Conv2d`` (or ``nn.Linear`` for MLPs) gets a
    3x3 conv (or dense layer) ``in -> width`` plus the activation in front of it; with
    ``width`` equal to its input channels (the default) the original layer is kept.

    Returns:
        ``(model, [name])``: the edited model and the name of the new ``nn.Sequential``.
    """
    if where not in ("before_output", "after_input"):
        raise ValueError(f"where must be 'before_output' or 'after_input', got {where!r}")
    if width is not None and (not is_int(width) or width < 1):
        raise ValueError(f"width must be a positive int, got {width!r}")
    target = model if inplace else copy.deepcopy(model)
    out, names = _insert(target, where, width, activation)
    desc, ok = _describe(activation)
    edit = {"op": "insert_capped_layer", "where": where, "width": width, "activation": desc}
    return record_edit(out, edit, base=target, rebuildable=ok), names


@register_edit("insert_capped_layer")
def _replay_insert(model: nn.Module, edit: Any) -> nn.Module:
    from robustact.models._actspec import resolve_act_layer

    width = edit.get("width")
    act = resolve_act_layer(edit["activation"])
    return _insert(model, edit["where"], None if width is None else int(width), act)[0]


def _insert(
    target: nn.Module, where: str, width: int | None, activation: ActLayer | None
) -> tuple[nn.Module, list[str]]:
    """:func:`insert_capped_layer` on ``target`` itself, unrecorded."""
    if where not in ("before_output", "after_input"):
        raise ValueError(f"where must be 'before_output' or 'after_input', got {where!r}")
    mods = list(target.named_modules())
    if where == "before_output":
        linears = [(n, m) for n, m in mods if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("insert_capped_layer('before_output') needs an nn.Linear output layer")
        name, last = linears[-1]
        assert isinstance(last, nn.Linear)
        old: nn.Module = last
        w = width or last.in_features
        keep = w == last.in_features
        out: nn.Module = (
            last if keep else nn.Linear(w, last.out_features, bias=last.bias is not None)
        )
        new = nn.Sequential(
            OrderedDict(
                capped_dense=nn.Linear(last.in_features, w),
                capped_act=make_activation(activation, w),
                output=out,
            )
        )
    else:
        firsts = [(n, m) for n, m in mods if isinstance(m, nn.Conv2d | nn.Linear)]
        if not firsts:
            raise ValueError("insert_capped_layer('after_input') needs an nn.Conv2d or nn.Linear")
        name, old = firsts[0]
        if isinstance(old, nn.Conv2d):
            c = old.in_channels
            w = width or c
            first: nn.Module = nn.Conv2d(c, w, kernel_size=3, padding=1)
            rest: nn.Module = old if w == c else _conv_like(old, w)
        else:
            assert isinstance(old, nn.Linear)
            c = old.in_features
            w = width or c
            first = nn.Linear(c, w)
            rest = old if w == c else nn.Linear(w, old.out_features, bias=old.bias is not None)
        new = nn.Sequential(
            OrderedDict(capped_in=first, capped_act=make_activation(activation, w), layer=rest)
        )
    ref = next(old.parameters(), None)
    if ref is not None:
        new = new.to(device=ref.device, dtype=ref.dtype)
    if name:
        _set_submodule(target, name, new)
    else:  # the model itself is the single layer
        return new, [""]
    return target, [name]


def _conv_like(old: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    if old.groups != 1:
        raise ValueError(
            "after_input with a new width needs a first conv with groups=1; "
            "use width=None to keep the original first layer"
        )
    return nn.Conv2d(
        in_channels,
        old.out_channels,
        kernel_size=old.kernel_size,  # type: ignore[arg-type]
        stride=old.stride,  # type: ignore[arg-type]
        padding=old.padding,  # type: ignore[arg-type]
        dilation=old.dilation,  # type: ignore[arg-type]
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
    )


def find_caps(model: nn.Module) -> list[tuple[str, SReLU | DReLU]]:
    """Every S-ReLU and D-ReLU of ``model`` as ``(dotted_name, module)``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SReLU | DReLU)]


def find_stochastic(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules whose forward pass is random in eval mode (sampling BReLU, or any module
    exposing ``stochastic = True``, e.g. noise-injection defences)."""
    return [(n, m) for n, m in model.named_modules() if getattr(m, "stochastic", False) is True]


def is_stochastic(model: nn.Module, x: Tensor | None = None) -> bool:
    """True when two eval-mode forward passes of ``model`` can differ.

    A module exposing ``stochastic = True`` (BReLU, noise defences) is a hint that settles
    it without running anything. Otherwise, given a batch ``x`` (N, ...), the model is run
    twice on it in eval mode (as AutoAttack's randomness check does), inside a forked RNG
    so the caller's random stream is untouched; any difference beyond float noise
    (1e-6 relative) makes it stochastic, whatever its modules are. Without ``x`` only the
    hint is used.
    """
    if find_stochastic(model):
        return True
    if x is None:
        return False
    was_training = model.training
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            a, b = model(x), model(x)
    finally:
        model.train(was_training)
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise ValueError("is_stochastic: the model must return one tensor of logits")
    scale = 1.0 + float(a.detach().abs().nan_to_num(0.0, 0.0, 0.0).amax()) if a.numel() else 1.0
    return not torch.allclose(a, b, rtol=0.0, atol=1e-6 * scale, equal_nan=True)


@dataclass(frozen=True)
class CapStats:
    """Statistics of one capped layer on a batch.

    Attributes:
        name: dotted module name.
        kind: ``"SReLU"`` or ``"DReLU"``.
        units: number of activation values per example.
        cap_min, cap_mean, cap_max: the cap(s) of the layer.
        saturated: fraction of activation values at the cap (input >= cap).
        inactive: fraction of activation values <= 0 (zero output, zero gradient).
        zero_grad: fraction with zero local gradient (``saturated + inactive``).
    """

    name: str
    kind: str
    units: int
    cap_min: float
    cap_mean: float
    cap_max: float
    saturated: float
    inactive: float

    @property
    def zero_grad(self) -> float:
        return self.saturated + self.inactive


def cap_summary(model: nn.Module, x: Tensor) -> list[CapStats]:
    """Per capped layer: its caps and the fraction of units saturated on batch ``x``.

    Args:
        model: any module; it is run once in eval mode (mode restored afterwards).
        x: an input batch (N, ...).
    """
    caps = find_caps(model)
    io = record_io(model, x, caps)
    stats: dict[str, CapStats] = {}
    for name, m in caps:
        if name not in io:
            continue
        z = io[name][0]
        if isinstance(m, DReLU):
            cap = m._cap(z).detach()
            cvals = m.max_value.detach()
        else:
            cap = torch.tensor(m.max_value, device=z.device, dtype=z.dtype)
            cvals = cap.reshape(1)
        stats[name] = CapStats(
            name=name,
            kind=type(m).__name__,
            units=int(z[0].numel()) if z.dim() > 0 else 1,
            cap_min=float(cvals.min()),
            cap_mean=float(cvals.mean()),
            cap_max=float(cvals.max()),
            saturated=float((z >= cap).float().mean()),
            inactive=float((z <= 0).float().mean()),
        )
    return [stats[n] for n, _ in caps if n in stats]
