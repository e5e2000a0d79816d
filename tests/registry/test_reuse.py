"""ConversationReuse: the outcome of each pair, created, reused or orphaned, is explicit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_aidol.registry import Origin, Pair, Registration
from airflow_provider_aidol.registry.reuse import ConversationReuse, ReuseOutcome, Settled

if TYPE_CHECKING:
    from collections.abc import Iterable

ORIGIN = Origin("dag", "run", "task", -1)


class Registry:
    """Keeps the first entry claimed per pair, like every store; counts the claims."""

    namespace = "aidol_default"
    statements = 0
    seconds = 0.0
    description = "a dict"

    def __init__(self, *kept: Registration) -> None:
        self.kept = {row.pair: row for row in kept}
        self.claims: list[list[Registration]] = []

    def check(self) -> None:
        """Nothing to check."""

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def lookup(self, pairs: Iterable[Pair]) -> dict[Pair, Registration]:
        return {pair: self.kept[pair] for pair in pairs if pair in self.kept}

    def claim(self, registrations: Iterable[Registration]) -> dict[Pair, Registration]:
        rows = list(registrations)
        self.claims.append(rows)
        return {row.pair: self.kept.setdefault(row.pair, row) for row in rows}


def never_called() -> Registration:
    raise AssertionError("nothing may be created")


def test_a_pair_the_registry_keeps_is_reused_without_creating():
    registry = Registry(Registration("u", "a", "kept"))
    settled = ConversationReuse(registry).reuse_or_create("u", "a", create=never_called)
    assert settled == Settled(ReuseOutcome.REUSED, "kept")
    assert settled.reused
    assert registry.claims == []


def test_a_new_pair_is_created_and_registered_with_its_origin():
    registry = Registry()
    settled = ConversationReuse(registry).reuse_or_create(
        "u", "a", create=lambda: ORIGIN.registration("u", "a", "new", "trace")
    )
    assert settled == Settled(ReuseOutcome.CREATED, "new", "trace")
    assert not settled.reused
    [[row]] = registry.claims
    assert (row.conversation_id, row.trace_id, row.dag_id, row.task_id) == ("new", "trace", "dag", "task")


def test_a_pair_another_task_claimed_first_is_orphaned_on_its_conversation():
    registry = Registry()
    reuse = ConversationReuse(registry)
    assert reuse.lookup([("u", "a")]) == {}
    registry.kept[("u", "a")] = Registration("u", "a", "theirs")  # the other task wins the race
    settled = reuse.register(
        [ORIGIN.registration("u", "a", "mine", "trace"), ORIGIN.registration("v", "a", "v1")]
    )
    assert settled == [
        Settled(ReuseOutcome.ORPHANED, "theirs", orphaned_conversation_id="mine"),
        Settled(ReuseOutcome.CREATED, "v1"),
    ]
    assert settled[0].reused
    assert len(registry.claims) == 1, "one claim per wave"


def test_without_a_registry_every_new_conversation_is_created():
    reuse = ConversationReuse(None)
    assert reuse.lookup([("u", "a")]) == {}
    assert reuse.register([ORIGIN.registration("u", "a", "c1"), ORIGIN.registration("u", "a", "c2")]) == [
        Settled(ReuseOutcome.CREATED, "c1"),
        Settled(ReuseOutcome.CREATED, "c2"),
    ]
    assert reuse.register([]) == []
