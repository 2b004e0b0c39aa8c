"""One small registry class shared by every kind of plug-in (expert, text embedder, backbone).

Adding a plug-in is one file that defines a class decorated with ``@REGISTRY.register("name")``
and one import line in the package's ``__init__``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from indexer.errors import MoairError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> factory map for one kind of plug-in, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return add

    def names(self) -> list[str]:
        return list(self._factories)

    def get(self, name: str) -> Callable[..., T]:
        """The factory (the plug-in's class) called ``name``; unknown names get a message listing the known ones."""
        try:
            return self._factories[name]
        except KeyError:
            raise MoairError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self._factories)}") from None

    def create(self, name: str, **kwargs) -> T:
        """Build the plug-in called ``name``."""
        return self.get(name)(**kwargs)
