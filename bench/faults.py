"""Fault test: an Odoo process killed with SIGKILL in the middle of a batch
of a scheduled job.

For each job of :data:`jobs.JOBS` (closing, invoicing, resume and charging
the saved cards) and each fault:

- ``worker``: SIGKILL to the cron worker whose transaction is writing a batch
  (what the kernel's OOM killer does); the server's master process starts a
  new worker;
- ``server``: SIGKILL to every process of the server (master, HTTP and cron
  workers) while one of them writes a batch (a crash of the machine or the
  container), then the server is started again;

the script:

1. creates the job's due records through the ORM (fresh ones per fault),
2. triggers the job's cron on an Odoo server in workers mode
   (``--workers=2 --max-cron-threads=2``, loopback),
3. once a first batch is committed, watches ``pg_locks`` until a backend of
   Odoo holds writes on the job's table (``written_table``, e.g. the UPDATE
   of ``sale_order`` of the next closing batch) in an open transaction, and
   kills the process(es) at once (the cron worker running the job is found
   from the log: ``Job '...' starting``),
4. waits until PostgreSQL has ended the killed backend, then checks the
   job's invariant (``job.invariant``: for closing, every subscription is
   either Churned with its one closing message or neither: the batch was
   applied fully or not at all; for charging, no invoice charged twice - at
   most one transaction that is not error/cancel - nor paid twice, and the
   charges of the killed batch left as drafts, committed before the provider
   was asked),
5. restarts what is needed, triggers the job again and checks that the next
   run finishes the work with nothing lost or doubled (``job.check``; for
   charging: the drafts flagged - the transaction in error, the subscription
   in payment exception - and never charged again, every other invoice paid
   once), and that the logs hold no ERROR, CRITICAL, traceback or WARNING.

The servers are stopped and the database dropped whatever happens. Adding a
job (invoicing, resume) to ``bench/jobs.py`` adds it here (see its
docstring). The closure emails are switched off on the plans of this test:
email delivery is at least once (as Odoo's mail queue), what this test
proves is the batch of the job.

Run it with ``bench/faults`` (``--count``, ``--jobs``, ``--keep-db``). Exit status 0 when
every check held.
"""

import argparse
import contextlib
import functools
import os
import re
import signal
import sys
import time

from jobs import default_jobs, modules_for, trigger_jobs, wait_done
from procs import (
    Check,
    OdooServer,
    log_checks,
    odoo_env,
    pg_cursor,
    run_script,
    servers_stopped,
    wait_for,
)

FAULTS = ("worker", "server")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--count", type=int, default=None, help="due records per job and fault (3 batches)"
    )
    parser.add_argument("--jobs", help="comma-separated job names (default: all)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds to wait for the work")
    parser.add_argument("--keep-db", action="store_true", default=bool(os.environ.get("KEEP_DB")))
    return parser.parse_args()


def catch_batch(db, table, timeout=120):
    """Wait until a backend of Odoo holds writes on ``table`` in an open
    transaction; return ``(backend pid, state, query)``.

    (The backend's ``application_name`` does not tell which Odoo process
    opened it: workers inherit it from the master; see
    :func:`running_job_pids`.)"""
    with pg_cursor(db) as cr:

        def writer():
            cr.execute(
                """
                SELECT a.pid, a.state, left(a.query, 100)
                  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.relation = %s::regclass AND l.mode = 'RowExclusiveLock'
                   AND l.granted AND a.datname = %s AND a.xact_start IS NOT NULL
                   AND a.application_name LIKE 'odoo-%%'
                """,
                (table, db),
            )
            return cr.fetchone()

        return wait_for(writer, timeout, 0.005)


def wait_pending_below(db, job, count, timeout=120):
    """Wait until ``job`` has less than ``count`` records pending (a batch
    committed)."""

    def below():
        with odoo_env(db) as env:
            return job.pending(env) < count

    return wait_for(below, timeout, 0.02)


def running_job_pids(server, cron_name):
    """The processes of ``server`` running the cron job ``cron_name``: those
    whose last line about it in the log is ``Job '...' (id) starting``."""
    pattern = re.compile(
        r"^\S+ \S+ (\d+) INFO \S+ odoo\.addons\.base\.models\.ir_cron: "
        rf"Job '{re.escape(cron_name)}' \(\d+\) (starting|.*)"
    )
    state = {}
    with open(server.log, errors="replace") as log:
        for line in log:
            match = pattern.match(line)
            if match:
                state[int(match.group(1))] = match.group(2) == "starting"
    alive = set(server.pids())
    return [pid for pid, running in state.items() if running and pid in alive]


def wait_backend_gone(db, backend, timeout=60):
    """Wait until PostgreSQL has ended the backend ``backend`` (and rolled
    back its transaction)."""
    with pg_cursor(db) as cr:

        def gone():
            cr.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (backend,))
            return not cr.fetchone()[0]

        return wait_for(gone, timeout, 0.05)


def run_fault(fault, db, server, args, log):
    """One fault on fresh due records; return the checks."""
    jobs = default_jobs(
        args.count, send_mail=False, tag=f"fault {fault}", only=args.jobs and args.jobs.split(",")
    )
    checks = []
    with odoo_env(db) as env:
        for job in jobs:
            job.setup(env)
        cron_names = {job.name: env.ref(job.cron_xmlid).cron_name for job in jobs}
    for job in jobs:
        if not server.alive():
            server.start()
        with odoo_env(db) as env:
            before = job.pending(env)
        trigger_jobs(db, [job])
        # Let the first batch commit, then kill the process writing the next:
        # the check below then sees one batch fully applied, one not at all.
        first_batch = wait_pending_below(db, job, before)
        caught = first_batch and catch_batch(db, job.written_table)
        if not caught:
            checks.append(Check(f"{fault}: a {job.name} batch caught in progress", False, "none"))
            continue
        backend, state, query = caught
        killed_at = time.monotonic()
        if fault == "worker":
            worker = running_job_pids(server, cron_names[job.name])
            if len(worker) != 1 or worker[0] == server.proc.pid:
                checks.append(Check(f"{fault}: the worker running the job found", False, worker))
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker[0], signal.SIGKILL)
            victim = f"cron worker {worker[0]}"
        else:
            server.kill()
            victim = f"server {server.name} (all its processes)"
        gone = wait_backend_gone(db, backend)
        log(
            f"  {fault}: killed {victim} while its transaction wrote a batch of the {job.name} job "
            f"(backend {backend}, {state}: {' '.join(query.split())[:60]}...)"
        )
        checks.append(
            Check(
                f"{fault}: the killed transaction ended by PostgreSQL",
                gone,
                f"backend {backend} gone {time.monotonic() - killed_at:.2f}s after SIGKILL",
            )
        )
        with odoo_env(db) as env:
            checks += [
                check._replace(label=f"{fault}, right after the kill: {check.label}")
                for check in job.invariant(env)
            ]
        if fault == "server":
            server.start()
            log(f"  {fault}: server {server.name} started again, pids {server.pids()}")
        trigger_jobs(db, [job])
        _waited, pending = wait_done(db, [job], args.timeout)
        checks.append(
            Check(
                f"{fault}: the next run finished the work",
                not pending[job.name],
                f"in {time.monotonic() - killed_at:.1f}s after the kill, pending {pending}",
            )
        )
        with odoo_env(db) as env:
            checks += [
                check._replace(label=f"{fault}, at the end: {check.label}")
                for check in job.check(env)
            ]
    return checks


def run(args, db, log_dir, started, checks):
    """The test on the database ``db`` (see :func:`procs.run_script`)."""
    server = OdooServer("A", db, log_dir, workers=2, cron_threads=2)
    with servers_stopped([server]):
        for fault in FAULTS:
            checks += run_fault(fault, db, server, args, lambda text: print(text, flush=True))
    checks.append(
        Check(
            "processes stopped",
            not (server.alive() or server.pids()),
            "all processes of the server ended",
        )
    )
    checks += log_checks([server])
    print()


def main():
    args = parse_args()
    return run_script(
        "Fault test",
        "faults",
        args.keep_db,
        functools.partial(run, args),
        modules=modules_for(args.jobs and args.jobs.split(",")),
    )


if __name__ == "__main__":
    sys.exit(main())
