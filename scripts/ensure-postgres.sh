#!/usr/bin/env bash
# Install Debian's PostgreSQL server when it is missing. The tests and the benchmarks start a
# throwaway cluster of it on loopback (tests/postgres_server.py) and stop it when they end.
# Needs root (CI runs as root); elsewhere it only says what to run, and those tests skip.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "PostgreSQL server missing: run 'sudo apt-get install postgresql' (its tests skip until then)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
