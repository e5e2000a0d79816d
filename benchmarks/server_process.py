"""The benchmark's server process: an AidolServer driven over stdin/stdout.

Run as ``python -m benchmarks.server_process '<json settings>'``. It starts the embedded
AI-DOL server (uvicorn in a thread of this process), prints one JSON line with its URL and the
Airflow connection, then answers one command per stdin line, one JSON line each:

- ``stats``: request counts by envelope code and HTTP status, the conversations created
  (total, distinct ``(agent, user)`` pairs, the most conversations any pair got, and a SHA-256
  of the sorted pairs so the client can check they are exactly the ones it asked for), and the
  image generations started (conversation, X-Request-ID, start as a Unix timestamp);
- ``conversations``: every conversation created, as ``[conversation id, X-Request-ID]`` pairs;
- ``reset``: forget requests, conversations, rate buckets (``{"ok": true}``);
- ``stop`` or end of input: stop the server and exit.

The inspection API of AidolServer only exists in the process that runs it; this keeps it
reachable while the measured client runs in another process. The process also stops itself
after ``max_seconds`` so nothing outlives a crashed benchmark.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import Counter
from typing import Any

from airflow_provider_aidol.testing.server import AidolServer
from benchmarks.common import pairs_digest


def stats(server: AidolServer) -> dict[str, Any]:
    """Summarise what the server received and created."""
    records = server.requests
    conversations = server.conversations
    per_pair = Counter((c.agent_id, c.user_id) for c in conversations)
    return {
        "requests": len(records),
        "codes": {str(code): n for code, n in Counter(r.code for r in records).items()},
        "http_statuses": {str(status): n for status, n in Counter(r.http_status for r in records).items()},
        "conversations": len(conversations),
        "distinct_pairs": len(per_pair),
        "max_per_pair": max(per_pair.values(), default=0),
        "pairs_sha256": pairs_digest(list(per_pair.elements())),
        "images": [
            {
                "conversation_id": image.conversation_id,
                "request_id": image.request_id,
                "started_at": image.started_at.timestamp(),
            }
            for image in server.images
        ],
    }


def main() -> int:
    settings: dict[str, Any] = json.loads(sys.argv[1])
    max_seconds = float(settings.pop("max_seconds", 1800))
    server = AidolServer(**settings)
    server.start()
    # A watchdog: never outlive the benchmark by more than max_seconds.
    timer = threading.Timer(max_seconds, lambda: os._exit(3))
    timer.daemon = True
    timer.start()
    try:
        print(json.dumps({"url": server.url, "connection": server.connection_json()}), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                answer: dict[str, Any] = stats(server)
            elif command == "conversations":
                answer = {"conversations": [[c.conversation_id, c.request_id] for c in server.conversations]}
            elif command == "reset":
                server.reset()
                answer = {"ok": True}
            elif command == "stop":
                break
            else:
                answer = {"error": f"unknown command {command!r}"}
            print(json.dumps(answer), flush=True)
    finally:
        server.stop()
        timer.cancel()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
