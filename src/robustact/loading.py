"""Bring your own model: build a user's ``nn.Module`` and load its weights safely.

``load_model(model, weights)`` is what ``--model`` / ``--weights`` do on the command line:

* ``model`` names a factory: ``"package.module:factory"`` (importable), or
  ``"path/to/file.py:Name"`` (a file, imported under a private module name), or a class /
  callable / ``nn.Module`` given directly from Python. ``model_args`` are passed as keyword
  arguments to the factory.
* ``weights`` is a ``state_dict`` file: ``.safetensors`` (read with safetensors), a
  ``torch.save(model.state_dict())`` file (``.pt``/``.pth``/``.bin``/``.ckpt``, read with
  ``torch.load(weights_only=True)``: no code in the file ever runs), or a TorchScript
  archive (``torch.jit.save``), which is a whole model and needs no ``model``.

A file that holds a *pickled model object* (``torch.save(model)``) is refused: unpickling
it would run arbitrary code from the file. The error says how to re-save it as a state_dict.

Training-framework wrappers are unwrapped: a dict whose ``state_dict`` / ``model`` /
``model_state_dict`` entry is the state dict, and a ``module.`` prefix (DDP/DataParallel).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ModelLoadError", "functional_activations", "load_model", "load_state_dict"]

_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


class ModelLoadError(ValueError):
    """A model or weights file that cannot be used; the message says why and what to do."""


# --------------------------------------------------------------------------- the factory


def _import_file(path: Path) -> Any:
    name = f"_robustact_user_{abs(hash(str(path.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ModelLoadError(f"importing {path} failed: {type(e).__name__}: {e}") from e
    return module


def resolve_factory(spec: str) -> Callable[..., Any]:
    """The callable named by ``"package.module:name"`` or ``"file.py:name"``.

    Raises:
        ModelLoadError: no ``:``, the module or file cannot be imported, or it has no such name.
    """
    where, sep, attr = str(spec).rpartition(":")
    if not sep or not where or not attr:
        raise ModelLoadError(
            f"--model {spec!r}: expected MODULE:NAME or FILE.py:NAME, e.g. mypkg.nets:MyNet "
            "or examples/mynet.py:MyNet (or a registry name: robustact list models)"
        )
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise ModelLoadError(f"--model {spec!r}: no file {where}")
        module = _import_file(path)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise ModelLoadError(
                f"--model {spec!r}: cannot import {where} ({e}); install the package or pass "
                "a file path, e.g. path/to/nets.py:MyNet"
            ) from e
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(module) if not n.startswith("_"))[:20]
            raise ModelLoadError(
                f"--model {spec!r}: {where} has no {attr!r}; it defines: {', '.join(names)}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelLoadError(f"--model {spec!r}: {attr} is not a class or function")
    return obj


def _build(model: str | nn.Module | Callable[..., Any], model_args: Mapping[str, Any]) -> nn.Module:
    if isinstance(model, nn.Module):
        if model_args:
            raise ModelLoadError("model_args apply to a factory, not to a built nn.Module")
        return model
    factory = resolve_factory(model) if isinstance(model, str) else model
    try:
        built = factory(**dict(model_args))
    except TypeError as e:
        raise ModelLoadError(
            f"calling {getattr(factory, '__name__', factory)}(**{dict(model_args)}) failed: {e}; "
            "pass its arguments with --model-arg KEY=VALUE"
        ) from e
    if not isinstance(built, nn.Module):
        raise ModelLoadError(
            f"{getattr(factory, '__name__', factory)} returned {type(built).__name__}, "
            "not a torch.nn.Module"
        )
    return built


# --------------------------------------------------------------------------- weights


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.split("/", 1)[-1].startswith("code/") for n in z.namelist())


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    for _ in range(3):
        if isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
            break
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _STATE_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                keys = ", ".join(map(str, list(obj)[:8]))
                raise ModelLoadError(
                    f"{path} holds a dict without a state_dict (keys: {keys}); save "
                    "torch.save(model.state_dict(), FILE)"
                )
            obj = inner
        else:
            raise ModelLoadError(
                f"{path} holds a {type(obj).__name__}, not a state_dict; save "
                "torch.save(model.state_dict(), FILE)"
            )
    state = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a ``torch.save`` file, never unpickling code.

    Raises:
        ModelLoadError: no such file, a pickled whole model, a TorchScript archive (load it
            with :func:`load_model`), or a file that holds no tensors.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"--weights {path}: no such file")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(p)))
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelLoadError(f"{p} is not a readable safetensors file ({e})") from e
    if _is_torchscript(p):
        raise ModelLoadError(f"{p} is a TorchScript model, not a state_dict; pass it as the model")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or others here
        text = str(e)
        if "weights_only" in text or "Unpickl" in type(e).__name__ or "GLOBAL" in text:
            raise ModelLoadError(
                f"{p} holds a pickled Python object (e.g. torch.save(model)), refused: loading "
                "it would run code from the file. Re-save the weights with "
                "torch.save(model.state_dict(), FILE) or safetensors, and name the class "
                "with --model MODULE:NAME"
            ) from None
        raise ModelLoadError(f"{p} is not a torch.save state_dict ({type(e).__name__})") from None
    state = _unwrap(obj, p)
    if not state:
        raise ModelLoadError(f"{p} holds no tensors")
    return state


def _load_into(net: nn.Module, state: Mapping[str, Tensor], path: Path) -> None:
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            k = shapes[0]
            parts.append(
                f"{len(shapes)} of another shape (e.g. {k}: file {tuple(state[k].shape)}, "
                f"model {tuple(own[k].shape)})"
            )
        raise ModelLoadError(
            f"{path} does not fit the model: {'; '.join(parts)}; check --model and --model-arg"
        )
    net.load_state_dict(dict(state), strict=True)


def load_model(
    model: str | nn.Module | Callable[..., Any] | None = None,
    weights: str | Path | None = None,
    *,
    model_args: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Build a user's model and load its weights; the result is in eval mode on ``device``.

    Args:
        model: ``"package.module:factory"``, ``"file.py:Name"``, a class or callable
            returning an ``nn.Module``, or a built module; ``None`` when ``weights`` is a
            TorchScript archive.
        weights: a state_dict file (``.safetensors``, ``.pt``/``.pth``/``.bin``) or a
            TorchScript archive; ``None`` keeps the factory's initial weights.
        model_args: keyword arguments for the factory.
        device: where the model goes.

    Returns:
        The model, mapping images (N, C, H, W) in [0, 1] to logits (N, K).

    Raises:
        ModelLoadError: one line saying what is wrong and what to do.
    """
    args = dict(model_args or {})
    wpath = Path(weights) if weights is not None else None
    if wpath is not None and wpath.is_file() and _is_torchscript(wpath):
        if model is not None:
            raise ModelLoadError(
                f"{wpath} is a TorchScript model (it holds its own code): pass it alone, "
                "without --model"
            )
        try:
            net: nn.Module = torch.jit.load(str(wpath), map_location="cpu")
        except RuntimeError as e:
            raise ModelLoadError(f"{wpath} is not a loadable TorchScript archive ({e})") from e
        return net.to(device).eval()
    if model is None:
        raise ModelLoadError(
            "no model given: pass --model MODULE:NAME (or FILE.py:NAME) with --weights, "
            "or a TorchScript file as --weights"
        )
    net = _build(model, args)
    if wpath is not None:
        _load_into(net, load_state_dict(wpath), wpath)
    return net.to(device).eval()


# --------------------------------------------------------------------------- functional hint

_FUNCTIONAL = {
    "relu",
    "relu_",
    "relu6",
    "leaky_relu",
    "gelu",
    "silu",
    "elu",
    "selu",
    "celu",
    "hardtanh",
    "softplus",
    "mish",
    "clamp",
    "clip",
    "sigmoid",
    "tanh",
}


def functional_activations(model: nn.Module, example: Tensor) -> dict[str, int]:
    """Activation functions ``model.forward`` calls as functions (``F.relu``, ``torch.clamp``)
    outside activation modules, counted by name, from one forward pass on ``example``.

    Surgery (``robustact.surgery.replace_activations``) can only swap modules: an
    activation called as a function stays a ReLU whatever you ask for.

    Args:
        model: the model.
        example: a small input batch (N, C, H, W) in [0, 1].
    """
    from torch.overrides import TorchFunctionMode

    from robustact.surgery import ACTIVATION_TYPES

    counts: dict[str, int] = {}
    depth = [0]
    hooks = []

    def enter(*_: Any) -> None:
        depth[0] += 1

    def leave(*_: Any) -> None:
        depth[0] -= 1

    for m in model.modules():
        if isinstance(m, ACTIVATION_TYPES):
            hooks.append(m.register_forward_pre_hook(enter))
            hooks.append(m.register_forward_hook(leave))

    class _Spy(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            name = getattr(func, "__name__", "")
            if depth[0] == 0 and name in _FUNCTIONAL:
                counts[name] = counts.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    was = model.training
    try:
        model.eval()
        with torch.no_grad(), _Spy():
            model(example)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return counts
