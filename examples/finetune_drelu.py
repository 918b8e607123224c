"""Dissertation Ch.5's framing on your own model: take trained weights, insert a D-ReLU
layer before the output (Fig 5.4), fine-tune with the cap penalty (eq. 5.1), and compare
the paper protocol with the adaptive one.

    python examples/finetune_drelu.py --weights my.pt        # your MyNet state_dict
    python examples/finetune_drelu.py                        # trains a MyNet first

For a zoo model in an experiment spec the same thing is ``training: {init: {weights:
FILE}}`` with ``activations: [{name: drelu, insert: before_output}]`` (see the recipes).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch

from robustact.data import load_dataset
from robustact.evaluate.suite import evaluate_suite
from robustact.loading import load_model
from robustact.surgery import insert_capped_layer
from robustact.train import Natural, TrainConfig, fit, get_objective

MODEL = "examples/mynet.py:MyNet"


def main(
    weights: str | None = None, epochs: int = 5, lam: float = 0.01, n_test: int = 300,
    eps: float = 0.1, seed: int = 0, protocols: Sequence[Any] = ("seed", "adaptive"),
) -> dict[str, Any]:  # fmt: skip
    """Fine-tune ``MyNet`` (from ``weights``, else trained here) with a D-ReLU layer.

    Returns:
        ``{"before": clean accuracy of the given weights, "rows": the suite's rows}``.
    """
    torch.manual_seed(seed)
    train = load_dataset("digits", split="train")
    test_x, test_y = load_dataset("digits", split="test").tensors()
    test_x, test_y = test_x[:n_test], test_y[:n_test]
    model = load_model(MODEL, weights)
    if weights is None:  # stand-in for "a model you already trained"
        fit(model, Natural(), train, TrainConfig(epochs=8, lr=3e-3, seed=seed, progress=False))
    model.eval()
    with torch.no_grad():
        before = float((model(test_x).argmax(1) == test_y).float().mean())
    model, _ = insert_capped_layer(model, "before_output", activation="drelu")
    cfg = TrainConfig(epochs=epochs, lr=1e-3, seed=seed, progress=False)
    fit(model, get_objective("drelu_penalty", lam=lam), train, cfg)
    model.eval()
    suite = evaluate_suite(model, test_x, test_y, eps=[eps], fast=True, seed=seed,
                           protocols=protocols)  # fmt: skip
    return {"before": before, "rows": suite.rows}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", help="MyNet state_dict (.pt / .safetensors)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lam", type=float, default=0.01, help="cap penalty lambda (eq. 5.1)")
    args = ap.parse_args()
    out = main(args.weights, args.epochs, args.lam)
    print(f"clean accuracy of the given weights: {100 * out['before']:.1f}%")
    for r in out["rows"]:
        if r.metric == "accuracy":
            print(f"{r.protocol:>10} {r.attack:>24}: {100 * r.value:.1f}%")
