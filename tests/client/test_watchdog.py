"""The watchdog ends a requests exchange at its deadline by shutting its socket down, and only then."""

from __future__ import annotations

import socket
import time

from airflow_provider_aidol.client.limits import Deadline
from airflow_provider_aidol.client.watchdog import Exchange


def test_a_read_blocked_past_the_deadline_is_ended():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        started = time.monotonic()
        with Exchange(Deadline(0.2)) as exchange:
            exchange.attach(ours)
            received = ours.recv(10)  # the other end never sends
        assert received == b""
        assert exchange.expired
        assert 0.15 < time.monotonic() - started < 2


def test_an_exchange_that_ends_in_time_leaves_its_socket_alone():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        with Exchange(Deadline(0.1)) as exchange:
            exchange.attach(ours)
            theirs.sendall(b"answer")
            assert ours.recv(10) == b"answer"
        time.sleep(0.3)  # past the deadline: the ended exchange is not expired
        assert not exchange.expired
        theirs.sendall(b"next")
        assert ours.recv(10) == b"next"


def test_a_socket_attached_after_the_deadline_is_shut_down_at_once():
    ours, theirs = socket.socketpair()
    with ours, theirs, Exchange(Deadline(0.05)) as exchange:
        time.sleep(0.3)
        assert exchange.expired
        exchange.attach(ours)
        assert ours.recv(10) == b""


def test_many_ended_exchanges_do_not_pile_up():
    from airflow_provider_aidol.client.watchdog import _WATCHDOG

    for _ in range(1000):
        with Exchange(Deadline(60)):
            pass
    assert len(_WATCHDOG._heap) < 200
