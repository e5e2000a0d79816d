"""A thread-safe ``cached_property``: the hook builds its settings, session and limiter once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, cast

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable


class _HasLazyLock(Protocol):
    """An owner of ``Lazy`` attributes: it holds the lock they are built under."""

    _lazy_lock: threading.RLock


_O = TypeVar("_O", bound=_HasLazyLock)
_T = TypeVar("_T")


class Lazy(Generic[_O, _T]):
    """Like ``functools.cached_property``, but built once even when threads ask at the same time."""

    def __init__(self, build: Callable[[_O], _T]) -> None:
        self._build = build
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, hook: _O, owner: type | None = None) -> _T:
        # Once built, the value sits in the instance dict, which Python reads before this method.
        with hook._lazy_lock:
            if self._name not in hook.__dict__:
                hook.__dict__[self._name] = self._build(hook)
            return cast("_T", hook.__dict__[self._name])
