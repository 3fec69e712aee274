"""Concurrency test with real processes: the scheduled jobs of
subscription_close run at the same time in two Odoo servers on one database.

1. A throwaway database with the addon (and ``payment_demo`` for the
   charging job); each job of :data:`jobs.JOBS` creates its due records
   through the ORM (2,000 subscriptions whose end date has passed for the
   closing job, 2,000 whose next invoice date has come for the invoicing job,
   2,000 whose pause ends for the resume job, 300 with one open posted
   invoice and a saved demo card whose charges are done for the charging
   job, see ``ChargingJob.max_count``) and control records it must not
   touch.
2. Two Odoo servers on that database, each ``--workers=2
   --max-cron-threads=2`` (loopback, their own ports, their own log), and an
   SMTP sink on loopback that counts the emails they send.
3. At the same moment, for every job:

   - the script commits ``ir.cron._trigger()`` several times: the four cron
     workers of the two servers race for the job;
   - clients of each server press *Run Manually* (``method_direct_trigger``
     through the web client's JSON-RPC): Odoo runs it, or refuses because
     another process holds the job (``Job ... already executing``: Odoo
     locks the ``ir_cron`` row of a running job, so one cron never runs
     twice at once - those refusals are counted, and their WARNING is the
     only one tolerated in the logs);
   - clients of each server run the job's server action (``/web/action/run``,
     as *Run* on the server action does), which does NOT take the cron's
     lock: the job's method then really runs in several processes at once,
     and only its own locking (SKIP LOCKED) keeps two processes from
     processing the same record.

   A sampler reads ``pg_locks`` meanwhile and reports how many transactions
   of which server held subscriptions at the same time.
4. Once nothing is pending (the job's follow-up work, e.g. the closure
   emails, included) and the crons are idle, the servers are stopped and the
   script checks each job (``job.check``: every due record processed exactly
   once - for the charging job, one done transaction and one payment per
   invoice, every invoice paid - controls untouched) and both logs (no ERROR, CRITICAL, traceback or
   unexpected WARNING). The servers are stopped and the database dropped
   whatever happens.

Adding a job (recurring invoicing, resuming paused subscriptions) is adding
one class to ``bench/jobs.py`` (see its docstring) and to ``JOBS``: this
script sets it up, triggers its cron, runs its server action and checks it
with the others, at the same time.

Run it with ``bench/concurrency`` (``--count``, ``--jobs``, ``--clients``,
``--keep-db``). The charging job is the slowest per record: one process
charges at a time (its mutex), and each charge costs Odoo's payment and reconciliation
of one invoice (about 0.3 s on 2 CPUs), so its 300 charges take about 2
minutes of the run.
Exit status 0 when every check held.
"""

import argparse
import functools
import os
import re
import sys
import threading
import time
from collections import Counter

from jobs import default_jobs, modules_for, wait_done
from procs import (
    Check,
    OdooServer,
    RpcError,
    SmtpSink,
    WebClient,
    log_checks,
    odoo_env,
    pg_cursor,
    run_script,
    servers_stopped,
)

# Odoo's refusal to run a job that another process is running (a UserError
# answered to the client, logged as a WARNING by odoo.http).
ALREADY_RUNNING = r" odoo\.http: Job '.*' already executing\s*$"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--count",
        type=int,
        help="due records per job (default: 2,000; 300 for charging, see ChargingJob.max_count)",
    )
    parser.add_argument("--jobs", help="comma-separated job names (default: all)")
    parser.add_argument(
        "--clients", type=int, default=2, help="clients per server, per job and per way"
    )
    parser.add_argument("--triggers", type=int, default=5, help="ir.cron._trigger() per job")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds to wait for the work")
    parser.add_argument("--keep-db", action="store_true", default=bool(os.environ.get("KEEP_DB")))
    return parser.parse_args()


class LockSampler(threading.Thread):
    """Samples which Odoo processes hold locks on subscriptions (row locks
    or writes of ``sale_order`` in an open transaction)."""

    def __init__(self, db, servers):
        super().__init__(daemon=True)
        self.db, self.servers = db, servers
        self.stop_event = threading.Event()
        self.max_backends = 0
        self.both_servers = 0
        self.samples = 0

    def run(self):
        with pg_cursor(self.db) as cr:
            while not self.stop_event.wait(0.05):
                cr.execute(
                    """
                    SELECT DISTINCT a.pid, a.application_name
                      FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                     WHERE l.relation = 'sale_order'::regclass
                       AND l.mode IN ('RowShareLock', 'RowExclusiveLock')
                       AND a.datname = %s AND a.pid <> pg_backend_pid()
                    """,
                    (self.db,),
                )
                rows = cr.fetchall()
                self.samples += 1
                self.max_backends = max(self.max_backends, len(rows))
                owners = {self.owner(app) for _pid, app in rows} - {None}
                if len(owners) > 1:
                    self.both_servers += 1

    def owner(self, application_name):
        match = re.fullmatch(r"odoo-(\d+)", application_name or "")
        if not match:
            return None
        pid = int(match.group(1))
        return next((s.name for s in self.servers if pid in s.pids()), None)


def fire(db, servers, jobs, args):
    """Trigger every job from every side at once; return the outcomes."""
    with odoo_env(db) as env:
        crons = {job.name: env.ref(job.cron_xmlid) for job in jobs}
        cron_ids = {name: cron.id for name, cron in crons.items()}
        action_ids = {name: cron.ir_actions_server_id.id for name, cron in crons.items()}
    outcomes = Counter()
    lock = threading.Lock()
    errors = []

    def record(key):
        with lock:
            outcomes[key] += 1

    clients = []
    for server in servers:
        for job in jobs:
            for _i in range(args.clients):
                for way in ("direct", "action"):
                    # A server action runs the whole job in its request.
                    client = WebClient(server.url, timeout=args.timeout)
                    client.authenticate(db, "admin", "admin")
                    clients.append((server, job, way, client))
    barrier = threading.Barrier(len(clients) + 2)

    def client_run(server, job, way, client):
        barrier.wait()
        try:
            if way == "direct":
                client.call_button("ir.cron", "method_direct_trigger", [cron_ids[job.name]])
                record((job.name, "Run Manually: ran"))
            else:
                client.run_server_action(action_ids[job.name])
                record((job.name, "server action: ran"))
        except RpcError as error:
            if way == "direct" and "already executing" in str(error):
                record((job.name, "Run Manually: refused, running elsewhere"))
            else:
                errors.append(f"{server.name} {job.name} {way}: {error}")
        except Exception as error:  # noqa: BLE001 - reported as a failed check
            errors.append(f"{server.name} {job.name} {way}: {error!r}")

    def trigger_run():
        barrier.wait()
        for _round in range(args.triggers):
            with odoo_env(db) as env:
                for job in jobs:
                    env.ref(job.cron_xmlid)._trigger()
            for job in jobs:
                record((job.name, "ir.cron._trigger() committed"))
            time.sleep(0.3)

    threads = [threading.Thread(target=client_run, args=item) for item in clients]
    threads.append(threading.Thread(target=trigger_run))
    for thread in threads:
        thread.start()
    barrier.wait()
    return threads, outcomes, errors


def wait_idle(db, jobs, timeout=300):
    """Wait until no process runs one of the jobs' crons and none is due."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:
        with odoo_env(db) as env:
            ids = [env.ref(x).id for job in jobs for x in (job.cron_xmlid, *job.follow_up_xmlids)]
            env.cr.execute(
                "SELECT id FROM ir_cron WHERE id = ANY(%s) FOR NO KEY UPDATE SKIP LOCKED", (ids,)
            )
            free = len(env.cr.fetchall())
            env.cr.execute(
                "SELECT count(*) FROM ir_cron_trigger WHERE cron_id = ANY(%s) "
                "AND call_at <= (now() AT TIME ZONE 'UTC')",
                (ids,),
            )
            due = env.cr.fetchone()[0]
            env.cr.rollback()
        quiet = quiet + 1 if free == len(ids) and not due else 0
        time.sleep(1)
    return quiet >= 3


def cron_figures(db, jobs, servers):
    """Runs of each job's cron: from ir_cron_progress and, per server, from
    the 'Job ... done N' lines of its log."""
    figures = {}
    with odoo_env(db) as env:
        for job in jobs:
            cron = env.ref(job.cron_xmlid)
            env.cr.execute(
                "SELECT count(*), coalesce(sum(done), 0) FROM ir_cron_progress WHERE cron_id = %s",
                (cron.id,),
            )
            runs, done = env.cr.fetchone()
            per_server = {}
            pattern = re.compile(rf"Job '{re.escape(cron.cron_name)}' \({cron.id}\) .*done (\d+);")
            for server in servers:
                total = 0
                for path in server.logs:
                    with open(path, errors="replace") as log:
                        total += sum(int(m.group(1)) for m in map(pattern.search, log) if m)
                per_server[server.name] = total
            figures[job.name] = (runs, done, per_server)
    return figures


def run(args, db, log_dir, started, checks):
    """The test on the database ``db`` (see :func:`procs.run_script`)."""
    jobs = default_jobs(
        args.count or 2000, only=args.jobs and args.jobs.split(","), cap=not args.count
    )
    with odoo_env(db) as env:
        for job in jobs:
            job.setup(env)
    print(f"  setup: {time.monotonic() - started:.0f}s", flush=True)
    for job in jobs:
        print(f"  job {job.name}: {job.figures(None)}")

    with SmtpSink() as sink:
        servers = [
            OdooServer(
                name,
                db,
                log_dir,
                workers=2,
                cron_threads=2,
                smtp_port=sink.port,
                # A server action runs a whole job in one HTTP request:
                # invoicing thousands of periods or charging thousands of
                # cards (one at a time, the charging job's mutex) outlasts
                # Odoo's default limits per request (60 s of CPU, 120 s in
                # all); a real setup leaves such work to the scheduled action.
                extra=[
                    f"--limit-time-cpu={args.timeout}",
                    f"--limit-time-real={args.timeout}",
                ],
            )
            for name in ("A", "B")
        ]
        with servers_stopped(servers):
            for server in servers:
                server.start()
                print(f"  server {server.name}: {server.url}, pids {server.pids()}")
            sampler = LockSampler(db, servers)
            sampler.start()
            t1 = time.monotonic()
            threads, outcomes, errors = fire(db, servers, jobs, args)
            waited, pending = wait_done(db, jobs, args.timeout)
            for thread in threads:
                thread.join(args.timeout)
            idle = wait_idle(db, jobs)
            elapsed = time.monotonic() - t1
            sampler.stop_event.set()
            sampler.join()
        # The servers are stopped: their logs are complete.
        outbox = sink.outbox()

    print(f"\n  all work done in {elapsed:.1f}s after the first trigger ({waited:.1f}s)")
    for (job_name, way), count in sorted(outcomes.items()):
        print(f"  {job_name}: {way} x{count}")
    for job_name, (runs, done, per_server) in cron_figures(db, jobs, servers).items():
        print(
            f"  {job_name}: cron runs {runs} (records done in cron runs: {done}; "
            f"per server log: {per_server})"
        )
    print(
        f"  lock sampler: {sampler.samples} samples, at most {sampler.max_backends} "
        f"transactions holding subscriptions at once, both servers at once in "
        f"{sampler.both_servers} samples"
    )
    print(f"  emails received by the SMTP sink: {len(outbox)}\n")

    checks.append(Check("no work left", not any(pending.values()), f"pending {pending}"))
    checks.append(Check("crons idle at the end", idle, "no cron running nor due"))
    checks.append(Check("every client call answered", not errors, "; ".join(errors[:5]) or "yes"))
    checks.append(
        Check(
            "processes stopped",
            not any(server.alive() or server.pids() for server in servers),
            "all processes of both servers ended",
        )
    )
    with odoo_env(db) as env:
        for job in jobs:
            checks += job.check(env, outbox)
    checks += log_checks(servers, tolerated=[ALREADY_RUNNING])


def main():
    args = parse_args()
    return run_script(
        "Concurrency test",
        "concurrency",
        args.keep_db,
        functools.partial(run, args),
        modules=modules_for(args.jobs and args.jobs.split(",")),
    )


if __name__ == "__main__":
    sys.exit(main())
