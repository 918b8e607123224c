"""Optional dependencies: which extra brings which package, and one clear error when one
is missing.

The runtime dependencies (torch, numpy, rich, PyYAML, safetensors) train, attack and
evaluate; the ``report`` extra (scipy, matplotlib) adds the rank statistics, plots and
report files; pandas is used only by ``to_pandas()``.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "import_or_explain", "missing_extra_message"]

#: extra -> the top-level packages it installs.
EXTRAS: dict[str, tuple[str, ...]] = {
    "report": ("scipy", "matplotlib"),
    "ray": ("ray",),
    "tensorboard": ("tensorboard",),
    "mlflow": ("mlflow",),
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed (the message names the pip command)."""


def missing_extra_message(what: str, package: str, extra: str) -> str:
    """One line: ``what`` needs ``package``, and the pip command that installs it."""
    return f"{what} needs {package}, which is not installed: pip install 'robustact[{extra}]'"


def import_or_explain(module: str, extra: str, what: str | None = None) -> ModuleType:
    """Import ``module``; when a package of ``extra`` is missing, raise one clear line.

    Raises:
        MissingExtraError: the module needs a package of the extra that is not installed.
    """
    try:
        return import_module(module)
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".", 1)[0]
        if top not in EXTRAS.get(extra, ()):
            raise
        raise MissingExtraError(missing_extra_message(what or module, top, extra)) from e
