"""The backend registry: an object filled by explicit registration and entry points."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from invbench.backends.base import Backend
from invbench.core.spec import Kind

ENTRY_POINT_GROUP = "invbench.backends"


class UnknownBackendError(ValueError):
    pass


@dataclass
class Registry:
    _backends: dict[str, Backend] = field(default_factory=dict)
    load_errors: dict[str, str] = field(default_factory=dict)

    def register(self, backend: Backend) -> Backend:
        if not isinstance(backend, Backend):
            raise TypeError(f"expected a Backend instance, got {backend!r}")
        if backend.name in self._backends:
            raise ValueError(f"a backend named {backend.name!r} is already registered")
        self._backends[backend.name] = backend
        return backend

    def unregister(self, name: str) -> None:
        self._backends.pop(name, None)

    def get(self, name: str) -> Backend:
        try:
            return self._backends[name]
        except KeyError:
            known = ", ".join(sorted(self._backends))
            raise UnknownBackendError(f"unknown backend {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._backends

    def __iter__(self) -> Iterator[Backend]:
        return iter(self._backends.values())

    def names(self, kind: Kind | None = None) -> list[str]:
        return [b.name for b in self._backends.values() if kind is None or b.kind is kind]

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register third-party backends; a broken one is kept in load_errors, not raised."""
        for ep in entry_points(group=group):
            try:
                obj = ep.load()
                if isinstance(obj, type) and issubclass(obj, Backend):
                    self.register(obj())
                elif isinstance(obj, Backend):
                    self.register(obj)
                elif callable(obj):
                    hook: Callable[[Registry], object] = obj
                    hook(self)
                else:
                    raise TypeError(f"{obj!r} is not a Backend, Backend class or hook")
            except Exception as exc:  # a plug-in must never break the harness
                self.load_errors[ep.name] = f"{type(exc).__name__}: {exc}"


def builtin_registry() -> Registry:
    """A fresh registry holding only the built-in backends."""
    from invbench.backends import register_builtins

    registry = Registry()
    register_builtins(registry)
    return registry


@functools.cache
def default_registry() -> Registry:
    """The process-wide registry: built-ins plus entry-point plug-ins, created on first use."""
    registry = builtin_registry()
    registry.load_entry_points()
    return registry
