#!/usr/bin/env bash
# Install Debian's Redis server when it is missing. `make e2e-distributed` starts a throwaway
# redis-server of it on loopback (the Celery broker, e2e/distributed/redis_server.py).
# Needs root (CI runs as root); elsewhere it only says what to run.
set -euo pipefail
if command -v redis-server >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "Redis server missing: run 'sudo apt-get install redis-server'" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends redis-server >/dev/null
command -v redis-server >/dev/null
