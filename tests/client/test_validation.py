"""The shared input checks: one helper per rule, the same message wherever the rule applies."""

from __future__ import annotations

import math

import pytest

from airflow_provider_aidol.client.validation import (
    MAX_ID_LENGTH,
    require_id,
    require_positive_number,
    require_rate,
    require_seconds,
    require_whole_number,
)


@pytest.mark.parametrize("value", [0.001, 1, 2.5, 1e9])
def test_a_finite_number_above_zero_is_accepted(value):
    assert require_positive_number("timeout", value) == value


@pytest.mark.parametrize("value", [0, -1, math.inf, math.nan, True, "3", None])
def test_anything_else_is_refused_naming_the_field(value):
    with pytest.raises(ValueError, match=r"^timeout must be a number of seconds > 0, got "):
        require_positive_number("timeout", value, unit=" of seconds")


@pytest.mark.parametrize("value", [1, 4, 64])
def test_a_whole_number_from_the_minimum_is_accepted(value):
    assert require_whole_number("max_workers", value) == value


@pytest.mark.parametrize("value", [0, -2, 1.0, True, "4", None])
def test_a_whole_number_below_the_minimum_or_of_another_type_is_refused(value):
    with pytest.raises(ValueError, match=r"^max_workers must be a whole number >= 1, got "):
        require_whole_number("max_workers", value)


@pytest.mark.parametrize("value", [0.5, 30, 86_400])
def test_seconds_up_to_a_day_are_accepted(value):
    assert require_seconds("timeout", value) == value


@pytest.mark.parametrize("value", [1e308, 86_400.5, math.inf, 0, -1, True])
def test_seconds_beyond_a_day_or_not_above_zero_are_refused_naming_the_field(value):
    with pytest.raises(ValueError, match=r"^timeout must be a number of seconds > 0 and at most 86400, got "):
        require_seconds("timeout", value)


def test_a_rate_slower_than_one_request_a_day_is_refused():
    assert require_rate("requests_per_second", 1 / 86_400) == 1 / 86_400
    with pytest.raises(
        ValueError, match=r"^requests_per_second must be at least 1/86400 \(one request a day"
    ):
        require_rate("requests_per_second", 1e-300)


@pytest.mark.parametrize("value", ["agent-1", "用户-7", "a" * MAX_ID_LENGTH, " agent-1"])
def test_an_id_any_store_can_keep_is_accepted(value):
    assert require_id("agent_id", value) == value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("agent-\ud800", "holds a lone surrogate ('\\ud800' at position 6)"),
        ("\udcff-agent", "holds a lone surrogate"),
        ("agent\x00", "holds a control character ('\\x00' at position 5)"),
        ("agent-1\n", "holds a control character ('\\n' at position 7)"),
        ("a\x85b", "holds a control character"),
        (
            "a" * (MAX_ID_LENGTH + 1),
            f"is {MAX_ID_LENGTH + 1} characters long; ids may have at most {MAX_ID_LENGTH}",
        ),
        ("   ", "must be a non-empty string"),
        (None, "must be a non-empty string"),
    ],
)
def test_an_id_no_store_can_keep_is_refused_naming_the_field_and_the_problem(value, problem):
    with pytest.raises(ValueError, match=r"^items\[3\]\.agent_id ") as caught:
        require_id("items[3].agent_id", value)
    assert problem in str(caught.value)


def test_the_length_bound_can_be_lifted_for_a_store_without_one():
    assert require_id("user_id", "u" * 1000, max_length=None) == "u" * 1000
