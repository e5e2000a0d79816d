"""The typed errors: every one survives the trip through a trigger event, found by introspection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_aidol import exceptions
from airflow_provider_aidol._compat import AirflowFailException
from airflow_provider_aidol.exceptions import AidolError
from airflow_provider_aidol.outcomes import ItemOutcome, ItemStatus

# A value for every keyword argument any error's payload keeps.
SAMPLE_FIELDS: dict[str, Any] = {
    "http_status": 502,
    "code": 10500,
    "trace_id": "trace-1",
    "method": "POST",
    "path": "/v1/chat/image",
    "retry_after": 3.0,
    "clock_skew": -900.0,
    "retryable": False,
    "request_sent": False,
    "base_url": "https://api.example.com",
    "registry": "table aidol_conversations of connection 'aidol_registry'",
    "max_requests": 5,
    "failures": [ItemOutcome(0, "a", "u", ItemStatus.FAILED, error="Agent not found", error_class="E")],
    "total": 3,
    "kind": "requests",
    "cap": 500,
    "day": "2026-12-03",
    "ledger": "table aidol_usage_ledger of connection 'aidol_registry'",
}


def all_subclasses(cls: type[AidolError]) -> list[type[AidolError]]:
    found = []
    for subclass in cls.__subclasses__():
        found += [subclass, *all_subclasses(subclass)]
    return found


ERROR_CLASSES = [AidolError, *all_subclasses(AidolError)]


def test_the_introspection_finds_every_error_the_module_exports():
    exported = {getattr(exceptions, name) for name in exceptions.__all__}
    expected = {cls for cls in exported if isinstance(cls, type) and issubclass(cls, AidolError)}
    assert expected <= set(ERROR_CLASSES)
    assert len(expected) >= 12


@pytest.mark.parametrize("error_class", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_survives_the_trip_through_a_trigger_event(error_class: type[AidolError]):
    fields = {name: SAMPLE_FIELDS[name] for name in error_class._payload_fields}
    error = error_class("something went wrong", **fields)

    rebuilt = AidolError.from_payload(json.loads(json.dumps(error.to_payload())))

    assert type(rebuilt) is error_class
    assert (str(rebuilt), vars(rebuilt)) == (str(error), vars(error))
    assert isinstance(rebuilt, AirflowFailException) == isinstance(error, AirflowFailException)


def test_a_class_defined_later_is_registered_too():
    class AidolLaterError(AidolError):
        pass

    rebuilt = AidolError.from_payload(AidolLaterError("later").to_payload())
    assert type(rebuilt) is AidolLaterError


def test_an_unknown_class_name_comes_back_as_a_plain_aidol_error():
    payload = {**AidolError("gone").to_payload(), "error_class": "AidolRemovedError"}
    assert type(AidolError.from_payload(payload)) is AidolError


# --- one tree --------------------------------------------------------------------------------


def test_every_provider_error_is_an_aidol_error():
    exported = [getattr(exceptions, name) for name in exceptions.__all__]
    assert all(issubclass(cls, AidolError) for cls in exported)
    assert issubclass(exceptions.AidolBatchError, AidolError)


def test_only_request_errors_carry_http_fields():
    registry_error = exceptions.AidolRegistryError("table gone", registry="table t")
    batch_error = exceptions.AidolBatchError(failures=[], total=0)
    for error in (registry_error, batch_error):
        assert not isinstance(error, exceptions.AidolRequestError)
        assert not hasattr(error, "http_status")
        assert not hasattr(error, "trace_id")
    assert issubclass(exceptions.AidolAuthError, exceptions.AidolRequestError)


@pytest.mark.parametrize("error_class", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_fatal_is_what_the_airflow_fail_exception_base_says(error_class: type[AidolError]):
    assert error_class.fatal is issubclass(error_class, AirflowFailException)


def test_a_class_cannot_say_fatal_without_the_fail_exception_base():
    with pytest.raises(TypeError, match="derives from AirflowFailException"):

        class AidolSaysFatalError(AidolError):
            fatal = True


def test_a_configuration_error_is_a_value_error_that_is_not_retried():
    for error_class in (exceptions.AidolConfigurationError, exceptions.AidolRegistryConfigError):
        assert issubclass(error_class, ValueError)
        assert issubclass(error_class, exceptions.AidolConfigurationError)
        assert error_class.fatal
    assert issubclass(exceptions.AidolRegistryConfigError, exceptions.AidolRegistryError)
