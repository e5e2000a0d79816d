"""A test's patched target that is never called fails the test (``must_call``), suite-wide."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.called_patches import CalledPatches

TESTS = Path(__file__).resolve().parent
# Ways to patch a callable without counting its calls; a line that must do so says why after
# "# never called:".
UNCOUNTED = re.compile(r"monkeypatch\.setattr\(|mock\.patch|\bpatch\.object\(|@patch\(")


class Target:
    @staticmethod
    def step() -> str:
        return "real"


def test_a_patch_that_is_never_called_fails_the_test(monkeypatch):
    patches = CalledPatches(monkeypatch)
    patches.setattr(Target, "step", lambda: "patched")
    with pytest.raises(pytest.fail.Exception, match=r"patched but never called: Target\.step"):
        patches.check()


def test_a_patch_that_is_called_passes_and_is_undone(must_call):
    must_call.setattr(Target, "step", lambda: "patched")
    assert Target.step() == "patched"


def test_the_suite_patches_callables_only_through_must_call():
    uncounted = [
        f"{path.relative_to(TESTS)}:{number}: {text.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.name not in {"called_patches.py", Path(__file__).name}
        for number, text in enumerate(path.read_text().splitlines(), start=1)
        if UNCOUNTED.search(text) and "# never called:" not in text
    ]
    assert not uncounted, f"patch with the must_call fixture, so an uncalled patch fails: {uncounted}"
