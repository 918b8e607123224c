"""A zoo of defended models robustact has no special knowledge of, and hand-written attacks.

Used by ``tests/test_zoo.py`` (small) and ``benchmarks/zoo.py`` (bigger). The defences are
plain modules written the way a user would (``torch.clamp``, ``randn_like``, ``torch.round``,
a top-k mask, a logit scale): none subclasses anything of robustact or sets a flag. The hand
attacks use knowledge of each defence (its surrogate gradient) and share no code with
robustact's attacks: they are the reference robustact's adaptive protocol must match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustact.activations import BReLU, DReLU, SReLU, drelu_penalty


# --------------------------------------------------------------------------- user defences
class OwnCap(nn.Module):
    """A user's capped ReLU: ``clamp(x, 0, cap)`` (zero gradient wherever it saturates)."""

    def __init__(self, cap: float = 0.01) -> None:
        super().__init__()
        self.cap = cap

    def forward(self, x: Tensor) -> Tensor:
        return torch.clamp(x, 0.0, self.cap)


class InputNoise(nn.Module):
    """Gaussian noise on the input, in train and eval mode."""

    def __init__(self, sigma: float = 0.3) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: Tensor) -> Tensor:
        return x + self.sigma * torch.randn_like(x)


class InputRound(nn.Module):
    """Input quantisation ``round(x * k) / k`` (zero gradient everywhere)."""

    def __init__(self, k: int = 4) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: Tensor) -> Tensor:
        return torch.round(x * self.k) / self.k


class KWTA(nn.Module):
    """k-winners-take-all (Xiao et al. 2020): keep the top ``frac`` of units per sample."""

    def __init__(self, frac: float = 0.2) -> None:
        super().__init__()
        self.frac = frac

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        k = max(1, int(self.frac * flat.shape[1]))
        thresh = flat.topk(k, dim=1).values[:, -1:]
        return (flat * (flat >= thresh).to(flat.dtype)).view_as(x)


class Scale(nn.Module):
    """Multiplies the logits: softmax saturates and the CE gradient underflows to zero."""

    def __init__(self, factor: float = 1e4) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return x * self.factor


class BitDepth(nn.Module):
    """Bit-depth reduction ``floor(x * 2**bits) / 2**bits`` (Xu et al. 2018 feature squeezing)."""

    def __init__(self, bits: int = 2) -> None:
        super().__init__()
        self.levels = 2**bits

    def forward(self, x: Tensor) -> Tensor:
        return torch.floor(x * self.levels).clamp(max=self.levels - 1) / (self.levels - 1)


def median3(x: Tensor) -> Tensor:
    """3x3 median filter with replicate padding, (N, C, H, W) -> same shape."""
    n, c, h, w = x.shape
    patches = F.unfold(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3)  # (N, C*9, H*W)
    return patches.view(n, c, 9, h * w).median(dim=2).values.view(n, c, h, w)


class MedianQuant(nn.Module):
    """A 3x3 median filter followed by rounding to ``k`` levels (no useful gradient)."""

    def __init__(self, k: int = 4) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: Tensor) -> Tensor:
        return torch.round(median3(x) * self.k) / self.k


class ResizePad(nn.Module):
    """Random resize (nearest) to ``8..out`` pixels and random zero padding to ``out``
    (Xie et al. 2018), in train and eval mode; (N, C, 8, 8) -> (N, C, out, out)."""

    def __init__(self, out: int = 10) -> None:
        super().__init__()
        self.out = out

    def forward(self, x: Tensor) -> Tensor:
        size = int(torch.randint(x.shape[-1], self.out + 1, ()))
        z = F.interpolate(x, size=(size, size), mode="nearest")
        left, top = (int(torch.randint(0, self.out - size + 1, ())) for _ in range(2))
        return F.pad(z, (left, self.out - size - left, top, self.out - size - top))


class InputDropout(nn.Module):
    """Drops each input pixel with probability ``p`` (no rescaling), in train and eval mode."""

    def __init__(self, p: float = 0.3) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return x * (torch.rand_like(x) >= self.p).to(x.dtype)


class Thermometer(nn.Module):
    """Thermometer encoding (Buckman et al. 2018): ``levels`` channels ``x > (i + 0.5) /
    levels`` per input channel; (N, C, H, W) -> (N, C * levels, H, W), zero gradient."""

    def __init__(self, levels: int = 8) -> None:
        super().__init__()
        self.levels = levels

    def thresholds(self, x: Tensor) -> Tensor:
        t = (torch.arange(self.levels, dtype=x.dtype, device=x.device) + 0.5) / self.levels
        return t.view(1, 1, -1, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        code = (x.unsqueeze(2) > self.thresholds(x)).to(x.dtype)
        return code.flatten(1, 2)


class Sign(nn.Module):
    """A sign activation; trained with a straight-through gradient, exact sign in eval mode."""

    def forward(self, x: Tensor) -> Tensor:
        s = torch.sign(x)
        return x + (s - x).detach() if self.training else s


def mlp(
    act: Callable[[], nn.Module],
    act2: Callable[[], nn.Module] | None = None,
    d: int = 64,
    hidden: int = 64,
    k: int = 10,
) -> nn.Sequential:
    """Flatten, two hidden layers with ``act`` (the second with ``act2`` if given), logits."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(d, hidden),
        act(),
        nn.Linear(hidden, hidden),
        (act2 or act)(),
        nn.Linear(hidden, k),
    )


# --------------------------------------------------------------------------- training
def train(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    lr: float = 3e-3,
    adv_eps: float = 0.0,
    penalty: float = 0.0,
    seed: int = 0,
) -> nn.Module:
    """Adam, batch 64; PGD-7 adversarial training when ``adv_eps > 0`` (hand PGD-CE)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            xb, yb = x[perm[i : i + 64]], y[perm[i : i + 64]]
            if adv_eps > 0:
                model.eval()
                xb = _pgd_steps(model, model, xb, yb, adv_eps, 7, adv_eps / 4, ce_loss, 1, True)
            model.train()
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            if penalty:
                loss = loss + penalty * drelu_penalty(model)
            loss.backward()
            opt.step()
            for m in model.modules():
                if isinstance(m, DReLU):
                    with torch.no_grad():
                        m.max_value.clamp_(min=0.0)
    return model.eval()


# --------------------------------------------------------------------------- hand attacks
def margin_loss(z: Tensor, y: Tensor) -> Tensor:
    """max_{j != y} z_j - z_y, per point (N,)."""
    zy = z.gather(1, y[:, None]).squeeze(1)
    other = z.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return other.amax(1) - zy


def ce_loss(z: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(z, y, reduction="none")


def _pgd_steps(
    grad_model: nn.Module,
    eval_model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    steps: int,
    step: float,
    loss: Callable[[Tensor, Tensor], Tensor],
    eot: int,
    random_start: bool,
    gen: torch.Generator | None = None,
) -> Tensor:
    """Linf PGD on ``grad_model``'s gradient; the returned point is the last iterate."""
    if random_start:
        u = torch.rand(x.shape, generator=gen) if gen is not None else torch.rand_like(x)
        xa = (x + eps * (2 * u - 1)).clamp(0, 1)
    else:
        xa = x.clone()
    for _ in range(steps):
        g = torch.zeros_like(x)
        for _ in range(eot):
            xg = xa.detach().requires_grad_(True)
            (gi,) = torch.autograd.grad(loss(grad_model(xg), y).sum(), xg)
            g += gi
        xa = torch.min(torch.max(xa + step * g.sign(), x - eps), x + eps).clamp(0, 1).detach()
    return xa


def correct_prob(model: nn.Module, x: Tensor, y: Tensor, passes: int = 1) -> Tensor:
    """Per-point fraction of ``passes`` forward passes that classify correctly (N,)."""
    with torch.no_grad():
        return sum((model(x).argmax(1) == y).float() for _ in range(passes)) / passes


def hand_pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    grad_model: nn.Module | None = None,
    steps: int = 100,
    restarts: int = 3,
    loss: Callable[[Tensor, Tensor], Tensor] = margin_loss,
    eot: int = 1,
    passes: int = 1,
    seed: int = 0,
) -> Tensor:
    """Best-of-restarts PGD (step eps/10, first restart from x) with the gradient of
    ``grad_model`` (a surrogate written with knowledge of the defence); per point keeps
    the iterate the model classifies correctly least often. Returns x_adv (N, ...)."""
    gm = grad_model if grad_model is not None else model
    gen = torch.Generator().manual_seed(seed)
    best = x.clone()
    best_p = correct_prob(model, x, y, passes)
    for r in range(restarts):
        xa = _pgd_steps(gm, model, x, y, eps, steps, eps / 10, loss, eot, r > 0, gen)
        p = correct_prob(model, xa, y, passes)
        better = p < best_p
        best[better], best_p[better] = xa[better], p[better]
    return best


# --------------------------------------------------------------------------- surrogates
class _STCap(nn.Module):
    """Forward: the cap; backward: ReLU (straight-through), written for the hand attack."""

    def __init__(self, cap_of: nn.Module) -> None:
        super().__init__()
        self.inner = cap_of

    def forward(self, x: Tensor) -> Tensor:
        r = F.relu(x)
        return self.inner(x).detach() + (r - r.detach())


class _STIdentity(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x).detach() + (x - x.detach())


class _Expected(nn.Module):
    """BReLU with the backward of its expectation x * sigmoid(alpha x)."""

    def __init__(self, inner: BReLU) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        e = x * torch.sigmoid(self.inner.alpha * x)
        return self.inner(x).detach() + (e - e.detach())


def swapped(model: nn.Sequential, swap: Callable[[nn.Module], nn.Module | None]) -> nn.Sequential:
    """A Sequential sharing ``model``'s layers, with ``swap(layer)`` where it is not None."""
    return nn.Sequential(*[swap(m) or m for m in model])


def _swap_caps(m: nn.Module) -> nn.Module | None:
    return _STCap(m) if isinstance(m, OwnCap | SReLU | DReLU) else None


def _swap_round(m: nn.Module) -> nn.Module | None:
    return _STIdentity(m) if isinstance(m, InputRound) else None


def _swap_brelu(m: nn.Module) -> nn.Module | None:
    return _Expected(m) if isinstance(m, BReLU) else None


def _swap_kwta(m: nn.Module) -> nn.Module | None:
    return _STCap(m) if isinstance(m, KWTA) else None  # backward as ReLU: all units pass


def _swap_bitdepth(m: nn.Module) -> nn.Module | None:
    return _STIdentity(m) if isinstance(m, BitDepth | Sign) else None


class _STMedian(nn.Module):
    """Forward: the median-and-round defence; backward: the median's own gradient."""

    def __init__(self, inner: MedianQuant) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        med = median3(x)
        return self.inner(x).detach() + (med - med.detach())


def _swap_median(m: nn.Module) -> nn.Module | None:
    return _STMedian(m) if isinstance(m, MedianQuant) else None


class _SoftThermometer(nn.Module):
    """Forward: the thermometer code; backward: sigmoid((x - t) * levels * 4) per level."""

    def __init__(self, inner: Thermometer) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        t = self.inner.thresholds(x)
        soft = torch.sigmoid((x.unsqueeze(2) - t) * 4 * self.inner.levels).flatten(1, 2)
        return self.inner(x).detach() + (soft - soft.detach())


def _swap_thermometer(m: nn.Module) -> nn.Module | None:
    return _SoftThermometer(m) if isinstance(m, Thermometer) else None


def _unscale(m: nn.Module) -> nn.Module | None:
    return nn.Identity() if isinstance(m, Scale) else None


# --------------------------------------------------------------------------- the zoo
@dataclass
class Member:
    """One zoo model: how to build and train it and the attacks its defence calls for."""

    name: str
    build: Callable[[], nn.Sequential]
    masking: bool  # a defence that masks gradients (the masking report must flag it)
    stochastic: bool = False
    epochs_factor: float = 1.0
    adv_train: bool = False
    penalty: float = 0.0
    surrogates: tuple[Callable[[nn.Module], nn.Module | None], ...] = ()
    train_scaled: bool = False  # train with the logit scale in place (a temperature)


def zoo() -> list[Member]:
    """The zoo: five user-written defences, three baselines of robustact's own layers and
    two undefended references."""
    return [
        Member("relu", lambda: mlp(nn.ReLU), masking=False),
        Member("pgd-at", lambda: mlp(nn.ReLU), masking=False, adv_train=True),
        Member(
            "own-cap",
            lambda: mlp(nn.ReLU, lambda: OwnCap(0.01)),
            masking=True,
            epochs_factor=2.0,
            surrogates=(_swap_caps,),
        ),
        Member(
            "input-noise",
            lambda: nn.Sequential(InputNoise(0.3), *mlp(nn.ReLU)),
            masking=True,
            stochastic=True,
        ),
        Member(
            "input-round",
            lambda: nn.Sequential(InputRound(2), *mlp(nn.ReLU)),
            masking=True,
            surrogates=(_swap_round,),
        ),
        Member(
            "kwta",
            lambda: mlp(lambda: KWTA(0.2)),
            masking=True,
            surrogates=(_swap_kwta,),
        ),
        Member("saturated-logits", lambda: nn.Sequential(*mlp(nn.ReLU), Scale(1e4)), masking=True),
        Member(
            "srelu",
            lambda: mlp(nn.ReLU, lambda: SReLU(0.01)),
            masking=True,
            epochs_factor=2.0,
            surrogates=(_swap_caps,),
        ),
        Member(
            "drelu",
            lambda: mlp(lambda: DReLU(64, init_max=0.05)),
            masking=True,
            epochs_factor=2.0,
            penalty=1e-2,
            surrogates=(_swap_caps,),
        ),
        Member(
            "brelu",
            lambda: mlp(BReLU),
            masking=True,
            stochastic=True,
            surrogates=(_swap_brelu,),
        ),
        *unseen(),
    ]


def unseen() -> list[Member]:
    """Defences added after robustact's adaptive path was written, as a check that it
    generalises: bit-depth reduction, median filter + rounding, random resize-and-pad,
    input dropout, thermometer encoding, a sign activation, a temperature of 1000 in
    training and test."""
    return [
        Member(
            "bit-depth",
            lambda: nn.Sequential(BitDepth(2), *mlp(nn.ReLU)),
            masking=True,
            surrogates=(_swap_bitdepth,),
        ),
        Member(
            "median-round",
            lambda: nn.Sequential(MedianQuant(4), *mlp(nn.ReLU)),
            masking=True,
            surrogates=(_swap_median,),
        ),
        Member(
            "resize-pad",
            lambda: nn.Sequential(ResizePad(9), *mlp(nn.ReLU, d=81)),
            masking=True,
            stochastic=True,
            epochs_factor=2.0,
        ),
        Member(
            "input-dropout",
            lambda: nn.Sequential(InputDropout(0.2), *mlp(nn.ReLU)),
            masking=True,
            stochastic=True,
        ),
        Member(
            "thermometer",
            lambda: nn.Sequential(Thermometer(8), *mlp(nn.ReLU, d=64 * 8)),
            masking=True,
            surrogates=(_swap_thermometer,),
        ),
        Member(
            "sign-act",
            lambda: mlp(nn.ReLU, Sign),
            masking=True,
            surrogates=(_swap_bitdepth,),
        ),
        Member(
            "temperature",
            lambda: nn.Sequential(*mlp(nn.ReLU), Scale(1000.0)),
            masking=True,
            train_scaled=True,
        ),
    ]


def build_trained(m: Member, x: Tensor, y: Tensor, epochs: int, eps: float) -> nn.Sequential:
    """Build ``m`` and train it (a saturated-logits model is trained before its scale,
    a temperature model with it)."""
    torch.manual_seed(0)
    net = m.build()
    keep = m.train_scaled
    body = nn.Sequential(*[layer for layer in net if keep or not isinstance(layer, Scale)])
    e = max(1, int(epochs * m.epochs_factor))
    train(body, x, y, epochs=e, adv_eps=eps if m.adv_train else 0.0, penalty=m.penalty)
    return net.eval()


def hand_attack(
    m: Member, net: nn.Sequential, x: Tensor, y: Tensor, eps: float, *, steps: int, restarts: int
) -> dict[str, Tensor]:
    """Adversarial examples (N, ...) per hand attack on ``net``: PGD with margin and CE
    losses on the plain gradient and on each surrogate the defence calls for (EOT 20 for
    random defences, unscaled logits for saturated ones)."""
    eot = 20 if m.stochastic else 1
    passes = 10 if m.stochastic else 1
    grads: dict[str, nn.Module] = {"plain": net}
    for i, s in enumerate(m.surrogates):
        grads[f"surrogate{i}"] = swapped(net, s)
    if any(isinstance(layer, Scale) for layer in net):
        grads["unscaled"] = swapped(net, _unscale)
    out: dict[str, Tensor] = {}
    for gname, gm in grads.items():
        for lname, lf in (("margin", margin_loss), ("ce", ce_loss)):
            out[f"PGD-{lname}-{gname}"] = hand_pgd(
                net, x, y, eps, grad_model=gm, steps=steps, restarts=restarts,
                loss=lf, eot=eot, passes=passes,
            )  # fmt: skip
    return out


def hand_scores(
    net: nn.Module, advs: dict[str, Tensor], x: Tensor, y: Tensor, passes: int
) -> dict[str, float]:
    """Robust accuracy of the hand attacks together.

    ``single``: a point is robust when the clean point and every attack's point are
    classified correctly in one forward pass each (the runner's counting rule);
    ``expected``: per point the lowest expected correctness (over ``passes`` passes) of
    its clean and attacked points; ``vote``: a point is robust when its label wins the
    plurality vote of ``passes`` passes at the clean and at every attacked point (the rule
    robustact's evaluation uses on random models). Deterministic models give one number
    three times."""
    with torch.no_grad():
        single = net(x).argmax(1) == y
        for xa in advs.values():
            single &= net(xa).argmax(1) == y
    probs = [correct_prob(net, xa, y, passes) for xa in (x, *advs.values())]
    exp = torch.stack(probs).amin(0)
    vote = torch.stack([vote_correct(net, xa, y, passes) for xa in (x, *advs.values())])
    return {
        "single": float(single.float().mean()),
        "expected": float(exp.mean()),
        "vote": float(vote.all(0).float().mean()),
    }


def vote_correct(model: nn.Module, x: Tensor, y: Tensor, passes: int) -> Tensor:
    """bool (N,): the label wins the plurality vote of ``passes`` forward passes (a tie
    with another class counts as wrong): the rule robustact documents for random models."""
    with torch.no_grad():
        z = model(x)
        counts = F.one_hot(z.argmax(1), z.shape[1]).float()
        for _ in range(passes - 1):
            counts += F.one_hot(model(x).argmax(1), z.shape[1]).float()
    mine = counts.gather(1, y[:, None]).squeeze(1)
    others = counts.scatter(1, y[:, None], -1.0).amax(1)
    return mine > others


def robustact_advs(
    net: nn.Module, x: Tensor, y: Tensor, eps: float, fast: bool
) -> dict[str, Tensor]:
    """The adversarial examples of each attack of robustact's ``adaptive`` protocol, as
    built for ``net`` (BPDA, EOT and the escalation decided by robustact), each run on
    every point; label -> x_adv (N, ...)."""
    from robustact.evaluate import get_protocol

    proto = get_protocol("adaptive", eps=eps, fast=fast)
    torch.manual_seed(0)
    return {
        e.label: e.build(net, proto.eps, proto.norm, proto.eot_samples, x)(net, x, y)
        for e in proto.entries
    }


def run_member(
    m: Member,
    data: tuple[Tensor, Tensor, Tensor, Tensor],
    *,
    eps: float,
    epochs: int,
    steps: int,
    restarts: int,
    fast: bool,
) -> dict[str, Any]:
    """Train one zoo model, attack it by hand and with robustact; one result row."""
    from robustact.evaluate import evaluate, masking_report

    xtr, ytr, x, y = data
    net = build_trained(m, xtr, ytr, epochs, eps)
    passes = 50 if m.stochastic else 1
    advs = hand_attack(m, net, x, y, eps, steps=steps, restarts=restarts)
    hand = hand_scores(net, advs, x, y, passes)
    res = evaluate(net, x, y, protocol="adaptive", eps=eps, fast=fast, seed=0, repeats=1)
    # a random model's single-pass numbers differ by several pp from draw to draw: score
    # robustact's adaptive attacks exactly as the hand attacks (expected correctness)
    ours = robustact_advs(net, x, y, eps, fast) if m.stochastic else {}
    scored = hand_scores(net, ours, x, y, passes) if ours else {}
    expected = scored.get("expected", res.robust_accuracy)
    rep = masking_report(net, x, y, eps=eps, fast=fast, seed=0)
    per_attack = {a.label: a.n_fooled for a in res.attacks}
    esc = next((a.describe for a in res.attacks if a.label == "Escalation"), {})
    return {
        "model": m.name,
        "masking_defence": m.masking,
        "clean": float(correct_prob(net, x, y, passes).mean()),
        "hand_single": hand["single"],
        "hand_expected": hand["expected"],
        "adaptive": float(res.robust_accuracy),
        "adaptive_expected": float(expected),
        "hand_vote": hand["vote"],
        "adaptive_vote": float(scored.get("vote", res.robust_accuracy)),
        "verdict": rep.verdict,
        "reason": rep.reason,
        "found_per_attack": per_attack,
        "escalation": esc.get("attack_args", {}).get("escalation", []),
    }
