"""A tiny decorator registry shared by models, datasets, attacks and objectives.

Every registry fails on an unknown name with the list of the known ones, so a typo in a
config or on the command line tells the user what they could have written.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


def _norm(name: str) -> str:
    return name.lower().replace("-", "_")


class UnknownNameError(KeyError, ValueError):
    """An unknown name was looked up in a registry (also a ValueError for callers)."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Maps lower-case names to objects (usually constructors).

    Args:
        kind: what is registered, for error messages ("model", "dataset", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lookup: dict[str, str] = {}  # normalised name -> registered name

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name`` (default: its __name__)."""

        def deco(obj: T) -> T:
            key = str(name or getattr(obj, "__name__", "")).lower()
            if not key:
                raise ValueError(f"cannot register an unnamed {self.kind}; pass name=")
            if _norm(key) in self._lookup:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._items[key] = obj
            self._lookup[_norm(key)] = key
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` under ``name`` without a decorator."""
        self.register(name)(obj)

    def get(self, name: str) -> T:
        """Return the object registered as ``name`` (case-insensitive, '-' == '_')."""
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} name must be a string, got {type(name).__name__}")
        key = self._lookup.get(_norm(name))
        if key is not None:
            return self._items[key]
        known = ", ".join(sorted(self._items))
        close = difflib.get_close_matches(name.lower(), list(self._items), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(f"unknown {self.kind} {name!r}.{hint} Known: {known}")

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _norm(name) in self._lookup

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
