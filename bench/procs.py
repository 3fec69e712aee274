"""Real Odoo processes for the concurrency, fault and load scripts.

What the scripts of ``bench/`` share: a throwaway database, Odoo servers
started as separate processes (their own process group, their own log,
loopback ports), always stopped, their logs checked, a JSON-RPC client of
the web client's routes, an SMTP sink that counts the emails Odoo sends, an
Odoo environment in the script's own process to build the data through the
ORM and to read the database afterwards, and the frame of a script
(:func:`run_script`: its database, its checks, its exit status).

Environment:

- ``TEST_DB_PREFIX``: prefix of the throwaway databases (default
  ``subscription_close_test``);
- ``TEST_PORTS``: a range ``low-high`` of TCP ports to use on 127.0.0.1
  (default: any free port the system gives).
"""

import contextlib
import datetime
import logging
import os
import random
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections import namedtuple
from email.parser import BytesHeaderParser

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADDON = "subscription_close"
# Starting Odoo through this file (not ``python -m odoo``) lets a server in
# workers mode spawn its websocket process, which re-runs ``sys.argv[0]``.
LAUNCHER = os.path.join(REPO_ROOT, "bench", "odoo_cli.py")

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \d+ (?P<level>[A-Z]+) ")

# One check of a script: what was checked, whether it held, and the figures.
Check = namedtuple("Check", "label ok detail")


class ProofError(Exception):
    """The setup of a script failed (not one of its checks)."""


# ----------------------------------------------------------------------
# Names, ports
# ----------------------------------------------------------------------


def db_name(kind):
    prefix = os.environ.get("TEST_DB_PREFIX") or f"{ADDON}_test"
    return f"{prefix}_{kind}_{datetime.datetime.now():%Y%m%d%H%M%S}_{os.getpid()}"


_ports_taken = set()


def free_port():
    """A free TCP port on 127.0.0.1, in ``TEST_PORTS`` if set, never one
    this process handed out already."""
    spec = os.environ.get("TEST_PORTS")
    if spec:
        low, high = (int(part) for part in spec.split("-"))
        candidates = list(range(low, high + 1))
        random.shuffle(candidates)
    else:
        candidates = [0] * 20
    for port in candidates:
        if port in _ports_taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = sock.getsockname()[1]
        if port not in _ports_taken:
            _ports_taken.add(port)
            return port
    raise ProofError(f"no free port in {spec or 'the system range'}")


def odoo_addons_path():
    from odoo.tools import config

    paths = [REPO_ROOT, config.addons_base_dir, config.addons_community_dir]
    return ",".join(p for p in paths if p)


def odoo_command(*args):
    return [sys.executable, LAUNCHER, *args]


# ----------------------------------------------------------------------
# Logs
# ----------------------------------------------------------------------


def log_problems(path, tolerated=()):
    """``(problems, tolerated_lines)`` of an Odoo log: WARNING, ERROR and
    CRITICAL lines and tracebacks; the WARNING lines matching one of the
    regular expressions ``tolerated`` are returned apart."""
    problems, accepted = [], []
    if not os.path.exists(path):
        return problems, accepted
    with open(path, errors="replace") as log:
        for line in log:
            line = line.rstrip("\n")
            match = LOG_LINE.match(line)
            level = match and match.group("level")
            if level in ("WARNING", "ERROR", "CRITICAL"):
                if level == "WARNING" and any(re.search(rx, line) for rx in tolerated):
                    accepted.append(line)
                else:
                    problems.append(line)
            elif line.startswith("Traceback (most recent call last)"):
                problems.append(line)
    return problems, accepted


class LogCounter(logging.Handler):
    """Counts the WARNING (and worse) records logged in this process."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(self.format(record))


# ----------------------------------------------------------------------
# Databases
# ----------------------------------------------------------------------


def create_database(db, modules, log_path):
    """Create ``db`` with ``modules`` installed (no demo data), in a separate
    Odoo process; fail on any warning of the installation."""
    drop_database(db)
    command = odoo_command(
        "server",
        f"--database={db}",
        f"--addons-path={odoo_addons_path()}",
        f"--init={','.join(modules)}",
        "--stop-after-init",
        "--http-interface=127.0.0.1",
        f"--http-port={free_port()}",
        "--workers=0",
        "--max-cron-threads=0",
        "--log-level=info",
    )
    with open(log_path, "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    problems, _accepted = log_problems(log_path)
    if result.returncode or problems:
        raise ProofError(
            f"installing {modules} in {db} failed (exit {result.returncode}, log {log_path}):\n"
            + "\n".join(problems[:20])
        )


def drop_database(db):
    from odoo.modules.registry import Registry
    from odoo.sql_db import close_db

    Registry.delete(db)
    close_db(db)
    subprocess.run(["dropdb", "--if-exists", "--force", db], check=False, capture_output=True)
    from odoo.tools import config

    shutil.rmtree(os.path.join(config.filestore(db)), ignore_errors=True)


def stop_on_sigterm():
    """Turn SIGTERM (``timeout``, CI cancelling a job) into SystemExit, so
    that the ``finally`` clauses stop the servers and drop the database."""
    signal.signal(signal.SIGTERM, lambda *_args: sys.exit(143))


def setup_odoo():
    """Configure the Odoo of this process (addons path, warnings only) and
    count what it logs at WARNING or worse."""
    from odoo.tools import config

    config.parse_config(
        [f"--addons-path={odoo_addons_path()}", "--log-level=warn", "--http-interface=127.0.0.1"],
        setup_logging=True,
    )
    counter = LogCounter()
    counter.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(counter)
    return counter


@contextlib.contextmanager
def odoo_env(db, user="base.user_admin"):
    """An environment of ``user`` on ``db`` in this process, committed on
    exit (rolled back on error)."""
    from odoo import SUPERUSER_ID, api
    from odoo.modules.registry import Registry

    registry = Registry(db)
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        if user:
            record = env.ref(user)
            env = env(user=record, context=record.context_get())
        yield env


def process_group_pids(pgid):
    """The pids of the processes of the process group ``pgid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry))
    return pids


@contextlib.contextmanager
def pg_cursor(db):
    """A cursor on a connection of its own to ``db``, in autocommit: each
    query sees what other transactions have committed (and PostgreSQL's
    views of locks and backends as they are now)."""
    import psycopg2

    connection = psycopg2.connect(dbname=db)
    connection.autocommit = True
    try:
        with connection.cursor() as cr:
            yield cr
    finally:
        connection.close()


def wait_for(condition, timeout, interval):
    """Call ``condition()`` every ``interval`` seconds until it returns a
    true value or ``timeout`` seconds have passed; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


# ----------------------------------------------------------------------
# Odoo servers
# ----------------------------------------------------------------------


class OdooServer:
    """An Odoo server process on ``db`` (loopback only), in its own process
    group; ``stop()`` or ``kill()`` ends the whole group. Use it as a
    context manager, or call ``stop()`` in a ``finally``."""

    def __init__(
        self, name, db, log_dir, workers=2, cron_threads=2, smtp_port=None, extra=(), env=None
    ):
        self.name, self.db, self.log_dir = name, db, log_dir
        self.workers, self.cron_threads = workers, cron_threads
        self.smtp_port, self.extra, self.env = smtp_port, list(extra), env
        self.proc = None
        self.logs = []
        self.port = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self):
        return self.logs[-1]

    def start(self, timeout=180):
        self.port = free_port()
        log_path = os.path.join(self.log_dir, f"{self.name}-{len(self.logs) + 1}.log")
        self.logs.append(log_path)
        command = odoo_command(
            "server",
            f"--database={self.db}",
            f"--db-filter=^{re.escape(self.db)}$",
            f"--addons-path={odoo_addons_path()}",
            "--http-interface=127.0.0.1",
            f"--http-port={self.port}",
            f"--gevent-port={free_port()}",
            f"--workers={self.workers}",
            f"--max-cron-threads={self.cron_threads}",
            "--no-database-list",
            "--log-level=info",
            *(["--smtp=127.0.0.1", f"--smtp-port={self.smtp_port}"] if self.smtp_port else []),
            *self.extra,
        )
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(os.environ, **(self.env or {})),
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout):
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ProofError(f"{self.name} exited with {self.proc.returncode}: {self.log}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/web/health", timeout=5).status_code == 200:
                    return
            time.sleep(0.5)
        raise ProofError(f"{self.name} did not answer within {timeout}s: {self.log}")

    def pids(self):
        """The pids of the server: its master, HTTP and cron workers and
        websocket process."""
        return process_group_pids(self.proc.pid) if self.proc else []

    def alive(self):
        return bool(self.proc) and self.proc.poll() is None

    def kill(self):
        """SIGKILL to every process of the server at once (a crash)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._reap_group()

    def stop(self, timeout=60):
        """Stop the server gracefully (SIGTERM), then kill what is left."""
        if not self.proc:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reap_group()

    def _reap_group(self):
        """Workers outlive a killed master for a moment: kill them too and
        wait until the group is empty."""
        deadline = time.monotonic() + 30
        while (pids := process_group_pids(self.proc.pid)) and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            time.sleep(0.2)
        if pids:
            raise ProofError(f"{self.name}: processes {pids} survived SIGKILL")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@contextlib.contextmanager
def servers_stopped(servers):
    """Stop every server of ``servers`` on exit, whatever happens."""
    try:
        yield servers
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                server.stop()


# ----------------------------------------------------------------------
# Clients
# ----------------------------------------------------------------------


class RpcError(Exception):
    def __init__(self, error):
        data = error.get("data") or {}
        super().__init__(data.get("message") or error.get("message"))
        self.name = data.get("name", "")


class WebClient:
    """The JSON-RPC routes of Odoo's web client (what the browser calls)."""

    def __init__(self, base_url, timeout=600):
        import requests

        self.base_url, self.timeout = base_url, timeout
        self.session = requests.Session()

    def call(self, route, **params):
        response = self.session.post(
            f"{self.base_url}{route}",
            json={"jsonrpc": "2.0", "method": "call", "id": 1, "params": params},
            timeout=self.timeout,
        )
        response.raise_for_status()
        payload = response.json()
        if "error" in payload:
            raise RpcError(payload["error"])
        return payload["result"]

    def authenticate(self, db, login, password):
        return self.call("/web/session/authenticate", db=db, login=login, password=password)

    def call_button(self, model, method, ids):
        return self.call(
            f"/web/dataset/call_button/{model}/{method}",
            model=model,
            method=method,
            args=[ids],
            kwargs={},
        )

    def run_server_action(self, action_id):
        return self.call("/web/action/run", action_id=action_id)


# ----------------------------------------------------------------------
# SMTP sink
# ----------------------------------------------------------------------


class SmtpSink:
    """A minimal SMTP server on 127.0.0.1 that accepts every email and
    keeps its recipients and subject, so that a script can count what Odoo
    sent. Use it as a context manager."""

    def __init__(self):
        self.messages = []  # (recipients, subject)
        self.lock = threading.Lock()
        self.port = free_port()
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, text):
                self.wfile.write(f"{text}\r\n".encode())

            def handle(self):
                self.reply("220 sink")
                recipients, data = [], None
                while line := self.rfile.readline():
                    if data is not None:
                        if line in (b".\r\n", b".\n"):
                            headers = BytesHeaderParser().parsebytes(b"".join(data))
                            with sink.lock:
                                sink.messages.append((recipients, str(headers["Subject"])))
                            recipients, data = [], None
                            self.reply("250 queued")
                        else:
                            data.append(line[1:] if line.startswith(b"..") else line)
                        continue
                    verb = line.strip().split(b" ", 1)[0].upper()
                    if verb in (b"EHLO", b"HELO"):
                        self.reply("250 sink")
                    elif verb == b"RCPT":
                        recipients.append(line.split(b":", 1)[1].strip(b" <>\r\n").decode())
                        self.reply("250 ok")
                    elif verb == b"DATA":
                        data = []
                        self.reply("354 go on")
                    elif verb == b"QUIT":
                        self.reply("221 bye")
                        return
                    else:  # MAIL, RSET, NOOP
                        self.reply("250 ok")

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def outbox(self):
        """``[(recipients, subject)]`` of the emails received so far."""
        with self.lock:
            return list(self.messages)


# ----------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------


def print_checks(checks):
    """Print the checks; return True when all held."""
    width = max((len(check.label) for check in checks), default=0)
    for check in checks:
        mark = "ok  " if check.ok else "FAIL"
        print(f"  [{mark}] {check.label.ljust(width)}  {check.detail}")
    return all(check.ok for check in checks)


def log_checks(servers, tolerated=()):
    """One check per server log: no ERROR, CRITICAL, traceback, nor WARNING
    other than ``tolerated`` (regular expressions)."""
    checks = []
    for server in servers:
        for path in server.logs:
            problems, accepted = log_problems(path, tolerated)
            detail = f"{os.path.basename(path)}: {len(problems)} problem line(s)"
            if accepted:
                detail += f", {len(accepted)} tolerated warning(s)"
            for line in problems[:10]:
                detail += f"\n        {line[:300]}"
            checks.append(Check(f"log of {server.name} clean", not problems, detail))
    return checks


def cpu_model(default=""):
    """The processor's model name (from /proc/cpuinfo), else ``default``."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return default


def machine():
    return f"{socket.gethostname()} ({cpu_model()}, {os.cpu_count()} CPUs)"


def run_script(title, kind, keep_db, body, modules=(ADDON,)):
    """The frame of a script: a throwaway database ``db_name(kind)`` with the addon
    (``modules``: the modules installed) and a folder for the logs;
    ``body(db, log_dir, started, checks)`` does the work and adds its checks
    to the list ``checks`` as they come (``started``: ``time.monotonic()``
    before the database was created), so that an error of the body keeps the
    checks made before it, and is one more, failed. The warnings this
    process's Odoo logged are a check too, and the database is dropped
    whatever happens (unless ``keep_db``). Prints the checks and returns the
    exit status: 0 when all held.
    """
    stop_on_sigterm()
    harness_log = setup_odoo()
    db = db_name(kind)
    log_dir = tempfile.mkdtemp(prefix=f"{ADDON}-{kind.replace('_', '-')}-")
    checks = []
    print(f"{title} on {machine()}: database {db}, logs in {log_dir}", flush=True)
    try:
        started = time.monotonic()
        create_database(db, list(modules), f"{log_dir}/install.log")
        body(db, log_dir, started, checks)
        checks.append(
            Check(
                "no warning in this script's own Odoo",
                not harness_log.records,
                "; ".join(harness_log.records[:3]) or "none",
            )
        )
    except Exception as error:  # noqa: BLE001 - reported as a failed check
        import traceback

        traceback.print_exc()
        checks.append(Check("the test ran to its end", False, repr(error)))
    finally:
        if not keep_db:
            with contextlib.suppress(Exception):
                drop_database(db)
    ok = print_checks(checks)
    print(f"\n{title}: " + ("all checks passed." if ok else "FAILED."))
    return 0 if ok else 1
