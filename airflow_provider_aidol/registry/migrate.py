"""Move the conversations kept in Airflow Variables into a SQL registry.

Tasks cannot list Variables, so the move starts from Airflow's own export::

    airflow variables export variables.json
    python -m airflow_provider_aidol.registry.migrate variables.json --registry-conn-id my_db

Every ``aidol_conversation:…`` Variable becomes a row (other Variables are ignored); a pair the
registry has already keeps its row, and the report lists those whose id differs. The Variables
are left as they are. Running it again changes nothing.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from airflow_provider_aidol.registry import DEFAULT_TABLE, MAX_ID_LENGTH, Registration
from airflow_provider_aidol.registry.variables import KEY_PREFIX, variable_key

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

_SHA256 = re.compile(r"[0-9a-f]{64}")
_DESCRIPTION = re.compile(r"AI-DOL conversation of user (?P<user>.+) with agent (?P<agent>.+)", re.DOTALL)


@dataclass
class MigrationReport:
    """What a migration did.

    :param migrated: rows written to the registry.
    :param unchanged: pairs the registry already had with the same conversation id.
    :param conflicts: pairs the registry already had with another id (the registry's is kept):
        ``namespace``, ``user_id``, ``agent_id``, ``variable`` (its id), ``registry`` (the kept one).
    :param skipped: ``aidol_conversation:`` keys that could not be read, with the reason.
    """

    migrated: int = 0
    unchanged: int = 0
    conflicts: list[dict[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def parse_export(exported: Mapping[str, object]) -> tuple[dict[str, list[Registration]], list[str]]:
    """Return the conversations of an ``airflow variables export`` by namespace, and unreadable keys.

    The pair is read from the Variable's description, which names it (also for a key ending
    in a SHA-256, when the pair was too long for a key), or else from the key.
    """
    found: dict[str, list[Registration]] = defaultdict(list)
    skipped: list[str] = []
    for key, entry in exported.items():
        if not key.startswith(f"{KEY_PREFIX}:"):
            continue
        value, description = (
            (entry.get("value"), entry.get("description")) if isinstance(entry, dict) else (entry, None)
        )
        namespace = unquote(key.split(":")[1])
        pair = _pair_of(key, namespace, description)
        if pair is None:
            skipped.append(f"{key}: neither the key nor the description names a (user, agent) pair")
            continue
        user_id, agent_id = pair
        if value is None or not str(value).strip():
            skipped.append(f"{key}: empty value")
            continue
        if max(len(user_id), len(agent_id), len(str(value))) > MAX_ID_LENGTH:
            skipped.append(f"{key}: an id longer than the SQL registry keeps ({MAX_ID_LENGTH} characters)")
            continue
        found[namespace].append(Registration(user_id, agent_id, str(value)))
    return dict(found), skipped


def _pair_of(key: str, namespace: str, description: object) -> tuple[str, str] | None:
    """Return the pair whose Variable key is ``key``, read from the description or the key itself.

    The Task SDK sends keys in a URL path, so the stored key may be percent-decoded once.
    """
    candidates = [_pair_from_description(description)]
    parts = key.split(":")
    if len(parts) == 4 and not (parts[2] == "sha256" and _SHA256.fullmatch(parts[3])):
        candidates.append((unquote(parts[2]), unquote(parts[3])))
    for pair in candidates:
        if pair is not None and key in {
            variable_key(namespace, *pair),
            unquote(variable_key(namespace, *pair)),
        }:
            return pair
    return None


def _pair_from_description(description: object) -> tuple[str, str] | None:
    """Return the pair the provider's Variable description names, if it does."""
    match = _DESCRIPTION.fullmatch(description) if isinstance(description, str) else None
    if match is None:
        return None
    try:
        user_id, agent_id = ast.literal_eval(match["user"]), ast.literal_eval(match["agent"])
    except (ValueError, SyntaxError):
        return None
    return (user_id, agent_id) if isinstance(user_id, str) and isinstance(agent_id, str) else None


def migrate_variables(
    exported: Mapping[str, object],
    registry_conn_id: str,
    registry_table: str = DEFAULT_TABLE,
    *,
    namespaces: Collection[str] | None = None,
) -> MigrationReport:
    """Claim every conversation of an ``airflow variables export`` in the SQL registry.

    :param exported: the export's JSON, loaded.
    :param registry_conn_id: the registry's Airflow SQL connection.
    :param registry_table: its table.
    :param namespaces: only these AI-DOL connection ids (default: all found).
    """
    from airflow_provider_aidol.registry.sql import SqlRegistry

    by_namespace, skipped = parse_export(exported)
    report = MigrationReport(skipped=skipped)
    for namespace, registrations in sorted(by_namespace.items()):
        if namespaces is not None and namespace not in namespaces:
            continue
        with SqlRegistry(namespace, registry_conn_id, registry_table) as registry:
            existing = registry.lookup(mine.pair for mine in registrations)
            kept = {**existing, **registry.claim(r for r in registrations if r.pair not in existing)}
        for mine in registrations:
            winner = kept[mine.pair]
            if winner.conversation_id != mine.conversation_id:
                report.conflicts.append(
                    {
                        "namespace": namespace,
                        "user_id": mine.user_id,
                        "agent_id": mine.agent_id,
                        "variable": mine.conversation_id,
                        "registry": winner.conversation_id,
                    }
                )
            elif mine.pair in existing:
                report.unchanged += 1
            else:
                report.migrated += 1
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the migration from the command line and print its report as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_aidol.registry.migrate", description=__doc__
    )
    parser.add_argument("export", type=Path, help="the JSON file `airflow variables export` wrote")
    parser.add_argument("--registry-conn-id", required=True, help="the registry's Airflow SQL connection")
    parser.add_argument(
        "--registry-table", default=DEFAULT_TABLE, help=f"its table (default {DEFAULT_TABLE})"
    )
    parser.add_argument(
        "--namespace", action="append", help="only this AI-DOL connection id (repeatable; default all)"
    )
    args = parser.parse_args(argv)
    exported = json.loads(args.export.read_text())
    report = migrate_variables(
        exported, args.registry_conn_id, args.registry_table, namespaces=args.namespace
    )
    print(json.dumps(asdict(report), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
