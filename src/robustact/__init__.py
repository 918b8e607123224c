"""robustact: robust activation functions and honest robustness evaluation for PyTorch.

The main entry points are importable from the top level (loaded on first use, so
``import robustact`` stays cheap)::

    import robustact as ra
    model = ra.create_model("mlp_general", in_shape=(1, 8, 8), num_classes=10)
    model, _ = ra.replace_activations(model, ra.SReLU, match="act2")
    ra.fit(model, "natural", ra.load_dataset("digits", split="train"), ra.TrainConfig(epochs=5))
    result = ra.evaluate(model, ra.load_dataset("digits"), protocol="adaptive", eps=0.1)
    print(ra.masking_report(model, *ra.load_dataset("digits").tensors(), eps=0.1).verdict)
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("robustact")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

#: top-level name -> module that defines it
_API: dict[str, str] = {
    # activations and surgery
    "SReLU": "robustact.activations",
    "DReLU": "robustact.activations",
    "BReLU": "robustact.activations",
    "get_activation": "robustact.activations",
    "replace_activations": "robustact.surgery",
    "insert_capped_layer": "robustact.surgery",
    "straight_through": "robustact.surgery",
    "is_stochastic": "robustact.surgery",
    "cap_summary": "robustact.surgery",
    # models and data
    "create_model": "robustact.models",
    "list_models": "robustact.models",
    "load_model": "robustact.loading",
    "load_dataset": "robustact.data",
    "list_datasets": "robustact.data",
    # training
    "fit": "robustact.train",
    "TrainConfig": "robustact.train",
    "save_checkpoint": "robustact.train",
    "load_checkpoint": "robustact.train",
    # attacks
    "get_attack": "robustact.attacks",
    "list_attacks": "robustact.attacks",
    "Adaptive": "robustact.attacks",
    # evaluation
    "evaluate": "robustact.evaluate",
    "evaluate_suite": "robustact.evaluate",
    "masking_report": "robustact.evaluate",
    "get_protocol": "robustact.evaluate",
    "list_protocols": "robustact.evaluate",
    "Protocol": "robustact.evaluate",
    "certified_accuracy": "robustact.certify",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'robustact' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
