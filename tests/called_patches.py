"""Patches a test means to be called: one never called fails the test (fixture ``must_call``).

A patch whose target the code no longer calls makes a test pass for nothing (a crash it
simulates never happens); ``must_call`` turns that into a failure at the test's teardown.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable


class CalledPatches:
    """``monkeypatch.setattr`` for replacements that must be called before the test ends.

    :param monkeypatch: the test's ``monkeypatch``, which undoes the patches.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self._calls: dict[str, int] = {}

    def setattr(self, target: object, name: str, replacement: Callable[..., Any]) -> None:
        """Replace ``target.name`` with ``replacement``, counting its calls."""
        label = f"{getattr(target, '__name__', type(target).__name__)}.{name}"
        self._calls[label] = 0

        @functools.wraps(replacement)
        def counted(*args: Any, **kwargs: Any) -> Any:
            self._calls[label] += 1
            return replacement(*args, **kwargs)

        self._monkeypatch.setattr(target, name, counted)

    def check(self) -> None:
        """Fail naming every patched target that was never called."""
        never = [label for label, calls in self._calls.items() if not calls]
        if never:
            pytest.fail(
                f"patched but never called: {', '.join(never)}; the code under test does not go "
                "through it (any more), so the test proves nothing",
                pytrace=False,
            )
