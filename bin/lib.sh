# Shared helpers of bin/test and bin/demo. Source it, do not run it.
# shellcheck shell=bash

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ADDON=subscription_close

# The Python that runs Odoo: $ODOO_PYTHON, else the interpreter of the `odoo`
# command on PATH, else python3.
find_odoo_python() {
    if [ -n "${ODOO_PYTHON:-}" ]; then
        echo "$ODOO_PYTHON"
        return
    fi
    local odoo_cmd shebang interp
    if odoo_cmd=$(command -v odoo 2>/dev/null); then
        shebang=$(head -n 1 "$odoo_cmd" 2>/dev/null | sed -n 's/^#![[:space:]]*//p')
        interp=$(echo "$shebang" | awk '{print $1}')
        if [ "$(basename "$interp")" = "env" ]; then
            interp=$(command -v "$(echo "$shebang" | awk '{print $2}')" 2>/dev/null)
        fi
        if [ -n "$interp" ] && [ -x "$interp" ]; then
            echo "$interp"
            return
        fi
    fi
    echo python3
}

# True when $1 imports Odoo 19.
odoo_importable() {
    "$1" -c "import odoo.release as r; assert r.version_info[0] == 19" >/dev/null 2>&1
}

# Odoo's own addons folders, asked from the Odoo that was found.
odoo_addons_path() {
    "$1" - <<'PY'
from odoo.tools import config
paths = [config.addons_base_dir, config.addons_community_dir]
print(",".join(p for p in paths if p))
PY
}

# Start the local PostgreSQL when it does not answer, and give the current
# user a role when it has none.
ensure_postgres() {
    if ! pg_isready -q 2>/dev/null; then
        if command -v pg_lsclusters >/dev/null 2>&1; then
            echo "Starting PostgreSQL..."
            pg_lsclusters --no-header | while read -r version cluster _; do
                pg_ctlcluster "$version" "$cluster" start 2>/dev/null || true
            done
        fi
        for _ in $(seq 1 30); do
            pg_isready -q 2>/dev/null && break
            sleep 1
        done
    fi
    if ! pg_isready -q 2>/dev/null; then
        echo "PostgreSQL is not running and could not be started." >&2
        return 1
    fi
    local me
    me=$(id -un)
    if ! psql -d postgres -Atc "select 1" >/dev/null 2>&1; then
        if [ "$me" = "root" ] && id postgres >/dev/null 2>&1; then
            su postgres -c "psql -d postgres -qc 'CREATE ROLE \"$me\" SUPERUSER LOGIN'" >/dev/null 2>&1 || true
        elif command -v sudo >/dev/null 2>&1; then
            sudo -n -u postgres psql -d postgres -qc "CREATE ROLE \"$me\" CREATEDB LOGIN" >/dev/null 2>&1 || true
        fi
    fi
    if ! psql -d postgres -Atc "select 1" >/dev/null 2>&1; then
        echo "PostgreSQL has no role for user $me (createuser -s $me as postgres)." >&2
        return 1
    fi
}

# A free TCP port on 127.0.0.1: in the range $TEST_PORTS (e.g. 8400-8499)
# when set, else any port the system gives.
free_port() {
    "$1" - <<'PY'
import os, random, socket
spec = os.environ.get("TEST_PORTS")
ports = [0]
if spec:
    low, high = (int(part) for part in spec.split("-"))
    ports = random.sample(range(low, high + 1), high - low + 1)
for port in ports:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(sock.getsockname()[1])
        break
else:
    raise SystemExit(f"no free port in {spec}")
PY
}

# Name of a throwaway database: $TEST_DB_PREFIX (default <addon>_test), then
# $1, the time and the shell's pid.
test_db_name() {
    echo "${TEST_DB_PREFIX:-${ADDON}_test}_$1_$(date +%Y%m%d%H%M%S)_$$"
}
