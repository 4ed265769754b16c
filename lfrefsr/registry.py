"""One registry for everything found by name: methods, matchers, models, trainers.

A name is registered once. A second, different object under a name already taken is refused (``ValueError``), so two
classes that declare the same ``name`` cannot silently replace each other, whichever module is imported last. An
entry may be given lazily as ``"package.module:attribute"`` and is imported on first use, which keeps heavy modules
(trainers, networks) out of the import of the registry's users.
"""

from __future__ import annotations

import importlib
from typing import Any, Generic, TypeVar

from lfrefsr.errors import LfrefsrError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> objects of one ``kind`` ("method", "matcher", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T | str] = {}

    def add(self, name: str, entry: T | str) -> None:
        """Register ``entry`` (an object, or a lazy ``"module:attribute"``) under ``name``; refuses a second one."""
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is registered twice ({self._describe(self._entries[name])} and "
                             f"{self._describe(entry)})")
        self._entries[name] = entry

    def register(self, cls: type) -> type:
        """Class decorator: registers ``cls`` under its ``name`` attribute."""
        self.add(cls.name, cls)
        return cls

    def get(self, name: str) -> T:
        """The entry named ``name`` (imported if lazy); one line naming what exists when there is none."""
        try:
            entry = self._entries[name]
        except KeyError:
            raise LfrefsrError(f"unknown {self.kind} {name!r} (available: {', '.join(self.names())})") from None
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), attribute)
        return entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    @staticmethod
    def _describe(entry: Any) -> str:
        return entry if isinstance(entry, str) else f"{entry.__module__}.{getattr(entry, '__qualname__', entry)}"
