"""One registration mechanism for everything chosen by name on the command line.

Models (``--model``), trainers (``--trainer``), data sets (``--set``), layer types
(``--conv-type``/``--bn-type``), schedules (``--lr-policy``) and optimizers (``--optimizer``) each
live in a :class:`Registry`: entries register with a decorator, and :meth:`Registry.get` fails
with a :class:`~subspaces.utils.errors.UserError` that lists the valid names. Families of names with a
parameter (``SimplexConv<n>``) register a pattern and a factory.
"""
from __future__ import annotations

import re
from typing import Callable, Dict, Generic, Iterator, List, Optional, Tuple, TypeVar

from subspaces.utils.errors import unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, e.g. ``TRAINERS = Registry("trainer", "--trainer")``."""

    def __init__(self, kind: str, flag: str = "") -> None:
        self.kind, self.flag = kind, flag
        self._entries: Dict[str, T] = {}
        self._patterns: List[Tuple[re.Pattern, Callable[[re.Match], Optional[T]], str]] = []

    def register(self, obj: Optional[T] = None, *, name: Optional[str] = None):
        """Decorator (``@REG.register`` or ``@REG.register(name="x")``) or call (``REG.register(obj)``).

        The name defaults to the object's ``name`` attribute when it is a string, else its
        ``__name__``. Registering another object under a taken name is a programming error.
        """

        def add(o: T) -> T:
            key = name or (o.name if isinstance(getattr(o, "name", None), str) else o.__name__)  # type: ignore[attr-defined]
            if key in self._entries and self._entries[key] is not o:
                raise ValueError(f"{self.kind} {key!r} is registered twice ({self._entries[key]!r} and {o!r})")
            self._entries[key] = o
            return o

        return add if obj is None else add(obj)

    def register_pattern(self, pattern: str, factory: Callable[[re.Match], Optional[T]], display: str) -> None:
        """Names matching the regex ``pattern`` are made by ``factory(match)`` (None: not valid);
        ``display`` is how the family appears in the list of valid names, e.g. ``SimplexConv<n> (n >= 2)``."""
        self._patterns.append((re.compile(pattern), factory, display))

    def find(self, name: str) -> Optional[T]:
        """The entry called ``name``, or None."""
        if name in self._entries:
            return self._entries[name]
        for regex, factory, _ in self._patterns:
            m = regex.fullmatch(name)
            if m:
                found = factory(m)
                if found is not None:
                    return found
        return None

    def get(self, name: str) -> T:
        """The entry called ``name``; a UserError naming the valid names otherwise."""
        found = self.find(name)
        if found is None:
            raise unknown_name(self.kind, name, self.names(), self.flag)
        return found

    def names(self) -> List[str]:
        """The valid names: the registered ones, then the pattern families."""
        return list(self._entries) + [display for _, _, display in self._patterns]

    def items(self) -> Iterator[Tuple[str, T]]:
        """The registered ``(name, entry)`` pairs (not the pattern families)."""
        return iter(list(self._entries.items()))

    def __iter__(self) -> Iterator[str]:
        """The registered names (not the pattern families)."""
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"
