#!/usr/bin/env bash
# Install what the benchmarks' PostGIS baseline needs: PostgreSQL server + PostGIS (Debian).
# Idempotent: does nothing when a PostgreSQL server with the PostGIS extension is present.
# Needs root (or sudo) and access to Debian's package repositories.
set -euo pipefail

have_postgis() {
    local bindir
    for bindir in /usr/lib/postgresql/*/bin; do
        [ -x "$bindir/pg_ctl" ] || continue
        local version
        version=$(basename "$(dirname "$bindir")")
        if [ -f "/usr/share/postgresql/$version/extension/postgis.control" ]; then
            return 0
        fi
    done
    return 1
}

if have_postgis; then
    echo "install-system-deps: PostgreSQL and PostGIS already installed."
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: apt-get not found; install PostgreSQL and PostGIS by hand" >&2
    echo "  (a PostgreSQL server with the postgis extension; see the top of bench/RESULTS.md)." >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-system-deps: run as root (or install sudo) to install postgresql and postgis." >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The metapackages pick the distribution's PostgreSQL major version and the matching PostGIS.
$SUDO apt-get install -y -qq --no-install-recommends postgresql postgis postgresql-postgis >/dev/null \
    || $SUDO apt-get install -y -qq postgresql postgis >/dev/null

if ! have_postgis; then
    echo "install-system-deps: installation finished but no PostgreSQL with PostGIS was found." >&2
    exit 1
fi
echo "install-system-deps: PostgreSQL and PostGIS installed."
