"""Named registries for the parts that vary: encoders, projectors, decoders, templates, presets."""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → factory table whose lookup errors list what is available.

    Args:
        kind: what the registry holds, used in error messages ("decoder", "preset", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name``.

        Raises:
            ValueError: if ``name`` is already taken.
        """

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` under ``name`` (non-decorator form)."""
        self.register(name)(obj)

    def get(self, name: str) -> T:
        """Look up ``name``.

        Raises:
            KeyError: naming the unknown entry and listing the available ones.
        """
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; available: {sorted(self._items)}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))


ENCODERS: Registry = Registry("encoder")
PROJECTORS: Registry = Registry("projector")
DECODERS: Registry = Registry("decoder")
TEMPLATES: Registry = Registry("template")
PRESETS: Registry = Registry("preset")
