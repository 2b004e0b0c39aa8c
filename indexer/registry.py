"""One small registry class shared by every kind of plug-in (expert, text embedder, backbone,
generator).

Adding a plug-in is one file that defines a class decorated with ``@REGISTRY.register("name")``
and one import line in the package's ``__init__``. A plug-in from another package needs neither:
it is named by where it is, ``package.module:Class`` (the index records that name, so the
package must be importable wherever the index is opened).
"""

from __future__ import annotations

import functools
import importlib
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
        """The factory (the plug-in's class) called ``name``, or at ``package.module:Class``;
        unknown names get a message listing the known ones."""
        if ":" in name:
            return self._imported(name)
        try:
            return self._factories[name]
        except KeyError:
            raise MoairError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self._factories)}") from None

    def _imported(self, path: str) -> Callable[..., T]:
        module_name, _, attribute = path.partition(":")
        if not module_name or not attribute:
            raise MoairError(f"{path!r} is neither a known {self.kind} nor package.module:Class")
        try:
            module = importlib.import_module(module_name)
        except Exception as e:  # a third party's module: any error at import is theirs to fix
            raise MoairError(f"the {self.kind} {path!r} cannot be imported ({type(e).__name__}: {e})") from None
        try:
            factory = functools.reduce(getattr, attribute.split("."), module)
        except AttributeError:
            raise MoairError(f"the {self.kind} {path!r}: {module_name} has no {attribute}") from None
        if not callable(factory):
            raise MoairError(f"the {self.kind} {path!r} is a {type(factory).__name__}, not a class")
        return factory

    def create(self, name: str, **kwargs) -> T:
        """Build the plug-in called ``name``."""
        return self.get(name)(**kwargs)
