"""docs/errors.md's fault matrix says what tests/hooks/test_fault_matrix.py asserts, row for row."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO
from tests.hooks.test_fault_matrix import MATRIX


def documented_rows() -> dict[str, list[str]]:
    text = (REPO / "docs" / "errors.md").read_text()
    table = text.split("## The fault matrix", 1)[1]
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([\w-]+)`", cells[0]) if line.startswith("|") else None
        if match:
            rows[match.group(1)] = cells
    return rows


ROWS = documented_rows()


def test_every_tested_fault_has_a_row():
    assert set(MATRIX) <= set(ROWS)
    assert set(ROWS) - set(MATRIX) == {"connect-timeout"}  # its own test: there is no server to count


@pytest.mark.parametrize("test_id", MATRIX)
def test_the_row_names_the_asserted_error_and_counts(test_id):
    row, cells = MATRIX[test_id], ROWS[test_id]
    _, _, outcome, requests, conversations = cells[:5]
    named = re.findall(r"`(Aidol\w+)`", outcome)
    if row.error is None:
        assert named == [], f"{test_id}: the request succeeds, the row says {outcome!r}"
        assert outcome.startswith("created")
    else:
        assert named == [row.error.__name__], f"{test_id}: {outcome!r}"
    assert int(requests) == row.requests
    assert int(conversations.split()[0]) == row.created
