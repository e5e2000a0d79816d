#!/usr/bin/env bash
# Install Debian's MariaDB server when it is missing, and the client library's headers that
# mysqlclient (the MySQL provider's default driver) compiles against when pip builds it. The
# tests start a throwaway server of it on loopback (tests/mariadb_server.py) and stop it when
# they end. Needs root (CI runs as root); elsewhere it only says what to run, and those tests skip.
set -euo pipefail
have() {
    command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ]
}
if have && pkg-config --exists libmariadb 2>/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "MariaDB server or headers missing: run 'sudo apt-get install mariadb-server libmariadb-dev pkg-config'" \
        "(the MySQL tests skip until then)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends mariadb-server libmariadb-dev pkg-config >/dev/null
have
