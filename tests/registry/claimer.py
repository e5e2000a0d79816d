"""One side of the race test: ``python -m tests.registry.claimer CONN TABLE LABEL COUNT BATCH``.

It opens the registry (connection and table checked), prints ``ready``, waits for ``go`` on
stdin, then claims COUNT pairs with conversation ids ``<LABEL>-<n>`` in claims of BATCH pairs
each, and prints what the registry kept as JSON: ``{"user\\tagent": conversation id}``.
"""

from __future__ import annotations

import json
import sys

from airflow_provider_aidol.registry import Origin
from airflow_provider_aidol.registry.sql import SqlRegistry

NAMESPACE = "aidol_race"


def pairs(count: int) -> list[tuple[str, str]]:
    """The pairs both sides claim."""
    return [(f"user-{n:05d}", f"agent-{n % 7}") for n in range(count)]


def main(conn_id: str, table: str, label: str, count: int, batch: int) -> None:
    origin = Origin("race", label, "claim", -1)
    mine = [origin.registration(user, agent, f"{label}-{n}") for n, (user, agent) in enumerate(pairs(count))]
    if label == "B":
        mine.reverse()  # the other side walks the pairs the other way
    with SqlRegistry(NAMESPACE, conn_id, table) as registry:
        registry.check()
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            raise SystemExit("no go")
        kept = {}
        for start in range(0, len(mine), batch):
            kept.update(registry.claim(mine[start : start + batch]))
    print(json.dumps({f"{user}\t{agent}": row.conversation_id for (user, agent), row in kept.items()}))


if __name__ == "__main__":
    conn, table_name, side, how_many, per_claim = sys.argv[1:]
    main(conn, table_name, side, int(how_many), int(per_claim))
