# Shared helpers of bin/test and bin/demo. Source it, do not run it.
# shellcheck shell=bash

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ADDON=subscription_close
# The addons of the repository: the addon, and the demo of its card payments
# (auto-installed next to payment_demo).
ADDONS="subscription_close subscription_close_payment_demo"

# Where bin/test and bin/demo set Odoo up when no Odoo 19 is found: the
# source in .odoo/src, a virtualenv in .odoo/venv (ignored by git).
ODOO_DIR=$REPO_ROOT/.odoo
ODOO_BRANCH=19.0
ODOO_GIT_URL=https://github.com/odoo/odoo.git

# True when $1 imports Odoo 19.
odoo_importable() {
    "$1" -c "import odoo.release as r; assert r.version_info[0] == 19" >/dev/null 2>&1
}

# The interpreter of the `odoo` command on PATH (its shebang), if any.
odoo_command_python() {
    local odoo_cmd shebang interp
    odoo_cmd=$(command -v odoo 2>/dev/null) || return 1
    shebang=$(head -n 1 "$odoo_cmd" 2>/dev/null | sed -n 's/^#![[:space:]]*//p')
    interp=$(echo "$shebang" | awk '{print $1}')
    if [ "$(basename "$interp")" = "env" ]; then
        interp=$(command -v "$(echo "$shebang" | awk '{print $2}')" 2>/dev/null)
    fi
    [ -n "$interp" ] && [ -x "$interp" ] && echo "$interp"
}

# The Python that runs Odoo: $ODOO_PYTHON, else the interpreter of the `odoo`
# command on PATH, else python3, else the virtualenv of .odoo/ (each but
# $ODOO_PYTHON only if it imports Odoo 19). When none does, python3: the lint
# steps need no Odoo.
find_odoo_python() {
    if [ -n "${ODOO_PYTHON:-}" ]; then
        echo "$ODOO_PYTHON"
        return
    fi
    local candidate
    for candidate in "$(odoo_command_python)" python3 "$ODOO_DIR/venv/bin/python"; do
        if [ -n "$candidate" ] && odoo_importable "$candidate"; then
            echo "$candidate"
            return
        fi
    done
    echo python3
}

# The major version of the Odoo source folder $1 (0 when it is none).
odoo_source_major() {
    sed -n 's/^version_info = (\([0-9]*\),.*/\1/p' "$1/odoo/release.py" 2>/dev/null | grep . || echo 0
}

# odoo_get_source DEST LOG: bring an Odoo 19.0 source folder to DEST, from
# $ODOO_SRC (a folder, linked; an archive .tar.gz/.tgz/.zip, extracted) or
# else a shallow clone of Odoo's repository.
odoo_get_source() {
    local dest=$1 log=$2 tmp top
    tmp="$dest.partial"
    rm -rf "$tmp"
    if [ -n "${ODOO_SRC:-}" ]; then
        if [ -d "$ODOO_SRC" ]; then
            if [ "$(odoo_source_major "$ODOO_SRC")" != 19 ]; then
                echo "ODOO_SRC=$ODOO_SRC is not an Odoo 19.0 source folder (no odoo/release.py of 19.0)." >&2
                return 1
            fi
            echo "  source: linking .odoo/src to ODOO_SRC=$ODOO_SRC"
            ln -s "$(cd "$ODOO_SRC" && pwd)" "$dest"
            return
        fi
        if [ ! -f "$ODOO_SRC" ]; then
            echo "ODOO_SRC=$ODOO_SRC does not exist." >&2
            return 1
        fi
        case "$ODOO_SRC" in
        *.zip | *.tar.gz | *.tgz | *.tar) ;;
        *)
            echo "ODOO_SRC=$ODOO_SRC is neither a folder nor a .tar.gz, .tgz or .zip archive." >&2
            return 1
            ;;
        esac
        echo "  source: extracting ODOO_SRC=$ODOO_SRC into .odoo/src"
        mkdir -p "$tmp"
        case "$ODOO_SRC" in
        *.zip) python3 -m zipfile -e "$ODOO_SRC" "$tmp" >>"$log" 2>&1 ;;
        *) tar -xf "$ODOO_SRC" -C "$tmp" >>"$log" 2>&1 ;;
        esac || {
            rm -rf "$tmp"
            echo "Could not extract ODOO_SRC=$ODOO_SRC (see .odoo/setup.log)." >&2
            return 1
        }
        # The archive holds the source itself or one folder with it (as
        # GitHub's odoo-19.0/).
        for top in "$tmp" "$tmp"/*/; do
            if [ "$(odoo_source_major "$top")" = 19 ]; then
                top=$(cd "$top" && pwd)
                break
            fi
            top=
        done
        if [ -z "$top" ]; then
            echo "ODOO_SRC=$ODOO_SRC holds no Odoo 19.0 source (no odoo/release.py of 19.0)." >&2
            rm -rf "$tmp"
            return 1
        fi
        if [ "$top" = "$(cd "$tmp" && pwd)" ]; then
            mv "$tmp" "$dest"
        else
            mv "$top" "$dest" && rm -rf "$tmp"
        fi
        return
    fi
    if ! command -v git >/dev/null 2>&1; then
        echo "git is not installed (apt-get install git), and ODOO_SRC is not set." >&2
        return 1
    fi
    echo "  source: cloning Odoo $ODOO_BRANCH from $ODOO_GIT_URL (shallow) into .odoo/src"
    if ! git clone --quiet --depth 1 --branch "$ODOO_BRANCH" "$ODOO_GIT_URL" "$tmp" >>"$log" 2>&1; then
        tail -n 3 "$log" | sed 's/^/    /' >&2
        echo "Could not clone Odoo $ODOO_BRANCH (no network?): set ODOO_SRC to an Odoo 19.0" \
            "source folder or archive (.tar.gz or .zip), then run this again." >&2
        rm -rf "$tmp"
        return 1
    fi
    mv "$tmp" "$dest"
}

# setup_odoo: set Odoo 19.0 up in .odoo/ and set PY to its Python; what a
# previous run left there is reused. The virtualenv comes first, so that the
# lint steps can still use it when the source cannot be had. It gets Odoo's
# requirements.txt (but python-ldap) and the project's, and the source on its
# path through a .pth file, written last: a virtualenv that imports Odoo is
# complete. (Not `pip install -e`: its import hook makes Odoo log a warning
# at every start.)
setup_odoo() {
    local log=$ODOO_DIR/setup.log venv=$ODOO_DIR/venv base_py site reqs
    echo "Setting up Odoo $ODOO_BRANCH in .odoo/ (first run only, about 10 minutes; log in .odoo/setup.log)..."
    mkdir -p "$ODOO_DIR"
    : >"$log"
    if [ ! -x "$venv/bin/python" ]; then
        base_py=$(command -v python3) || {
            echo "python3 is not installed (apt-get install python3 python3-venv)." >&2
            return 1
        }
        if ! "$base_py" -c "import sys; sys.exit(sys.version_info < (3, 10))"; then
            echo "Odoo 19 needs Python 3.10 or later; $base_py is $("$base_py" -V 2>&1)." >&2
            return 1
        fi
        echo "  virtualenv: .odoo/venv ($("$base_py" -V 2>&1), $base_py)"
        if ! "$base_py" -m venv "$venv" >>"$log" 2>&1; then
            rm -rf "$venv"
            echo "Could not create a virtualenv with $base_py (Debian/Ubuntu: apt-get install python3-venv)." >&2
            return 1
        fi
    else
        echo "  virtualenv: .odoo/venv, from an earlier run"
    fi
    if [ "$(odoo_source_major "$ODOO_DIR/src")" = 19 ]; then
        echo "  source: .odoo/src, from an earlier run"
    else
        rm -rf "$ODOO_DIR/src"
        odoo_get_source "$ODOO_DIR/src" "$log" || return 1
    fi
    echo "  installing Odoo's requirements.txt (python-ldap skipped: it needs the system's LDAP" \
        "headers, and only the auth_ldap addon uses it) and the project's requirements.txt..."
    reqs=$ODOO_DIR/odoo-requirements.txt
    grep -viE '^[[:space:]]*python-ldap([^a-z0-9_.-]|$)' "$ODOO_DIR/src/requirements.txt" >"$reqs"
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check \
        -r "$reqs" -r "$REPO_ROOT/requirements.txt" >>"$log" 2>&1; then
        tail -n 15 "$log" | sed 's/^/    /' >&2
        echo "Could not install the requirements into .odoo/venv (see .odoo/setup.log). Building" \
            "psycopg2 needs a C compiler and the headers of Python and libpq (Debian/Ubuntu:" \
            "apt-get install build-essential python3-dev libpq-dev)." >&2
        return 1
    fi
    site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    echo "  putting .odoo/src on the virtualenv's path ($(basename "$site")/odoo.pth)"
    echo "$ODOO_DIR/src" >"$site/odoo.pth"
    if ! odoo_importable "$venv/bin/python"; then
        echo "The virtualenv of .odoo/ does not import Odoo 19 (see .odoo/setup.log)." >&2
        return 1
    fi
    PY=$venv/bin/python
    echo "Odoo $ODOO_BRANCH is set up in .odoo/ (the next runs reuse it; rm -rf .odoo to set it up again)."
}

# use_odoo: set PY to the Python that runs Odoo 19 (find_odoo_python), or
# set Odoo up in .odoo/ when none is found and ODOO_PYTHON is not set. Fails
# with a message saying why when there is no Odoo 19.
use_odoo() {
    PY=$(find_odoo_python)
    if odoo_importable "$PY"; then
        if [ "$PY" = "$ODOO_DIR/venv/bin/python" ]; then
            echo "Odoo 19.0: the one set up in .odoo/ ($PY)"
        fi
        return 0
    fi
    if [ -n "${ODOO_PYTHON:-}" ]; then
        echo "Odoo 19 is not importable by ODOO_PYTHON=$ODOO_PYTHON." >&2
        return 1
    fi
    setup_odoo
}

# Odoo's own addons folders, asked from the Odoo that was found.
odoo_addons_path() {
    "$1" - <<'PY'
from odoo.tools import config
paths = [config.addons_base_dir, config.addons_community_dir]
print(",".join(p for p in paths if p))
PY
}

# Start the local PostgreSQL when it does not answer (a cluster that is down
# is started, as the system would at boot), and check that the current user
# has a role that may create databases. Nothing is installed and no role is
# created: what is missing is said, with the command that brings it.
ensure_postgres() {
    local me sudo='' down version cluster _rest error
    me=$(id -un)
    [ "$me" = root ] || sudo="sudo "
    if ! command -v pg_isready >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
        echo "PostgreSQL is not installed. Install it (Debian/Ubuntu: ${sudo}apt-get install postgresql), then run this again." >&2
        return 1
    fi
    if ! pg_isready -q 2>/dev/null && command -v pg_lsclusters >/dev/null 2>&1; then
        down=$(pg_lsclusters --no-header 2>/dev/null | awk '$4 != "online" {print $1, $2}')
        if [ -z "$(pg_lsclusters --no-header 2>/dev/null)" ]; then
            echo "PostgreSQL's client is installed but no server: ${sudo}apt-get install postgresql" >&2
            return 1
        fi
        while read -r version cluster _rest; do
            [ -n "$version" ] || continue
            echo "Starting PostgreSQL (pg_ctlcluster $version $cluster start)..."
            pg_ctlcluster "$version" "$cluster" start >/dev/null 2>&1 || true
        done <<<"$down"
        for _ in $(seq 1 30); do
            pg_isready -q 2>/dev/null && break
            sleep 1
        done
    fi
    if ! pg_isready -q 2>/dev/null; then
        if [ -n "${down:-}" ]; then
            echo "PostgreSQL is down and could not be started: run" >&2
            while read -r version cluster _rest; do
                echo "    ${sudo}pg_ctlcluster $version $cluster start" >&2
            done <<<"$down"
        else
            echo "PostgreSQL does not answer (pg_isready): start it, then run this again." >&2
        fi
        return 1
    fi
    if ! error=$(psql -d postgres -XAtc "select 1" 2>&1 >/dev/null); then
        if [[ "$error" == *"role \"$me\" does not exist"* ]]; then
            echo "PostgreSQL has no role for the user $me. Create one that may create databases:" >&2
            if [ "$me" = root ]; then
                echo "    su postgres -c \"createuser --createdb root\"" >&2
            else
                echo "    sudo -u postgres createuser --createdb $me" >&2
            fi
        else
            echo "Cannot connect to PostgreSQL as $me: $error" >&2
        fi
        return 1
    fi
    if [ "$(psql -d postgres -XAtc "select rolcreatedb or rolsuper from pg_roles where rolname = current_user")" != t ]; then
        echo "The PostgreSQL role $me may not create databases: run" >&2
        if [ "$me" = root ]; then
            echo "    su postgres -c \"psql -c 'ALTER ROLE root CREATEDB'\"" >&2
        else
            echo "    sudo -u postgres psql -c 'ALTER ROLE \"$me\" CREATEDB'" >&2
        fi
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
