"""What the benchmarks of ``bench/run`` (bench_close.py, bench_invoice.py,
bench_charge.py) share: the OCA peer downloaded into a temporary folder, their throwaway
databases, the subscriptions they build, one measure (seconds, queries and
peak memory of runs rolled back to a savepoint), the header of their report
and their targets.
"""

import contextlib
import copy
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zipfile

from procs import REPO_ROOT, cpu_model

PEER_REQUIREMENT = "odoo-addon-subscription-oca>=19.0,<19.1"


# ----------------------------------------------------------------------
# Setup: peer download, databases
# ----------------------------------------------------------------------


def download_peer(folder):
    """Download the OCA wheel into ``folder`` and unpack it; return the addons
    folder that holds ``subscription_oca``."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "--dest",
            folder,
            PEER_REQUIREMENT,
        ],
        check=True,
    )
    wheel = next(name for name in os.listdir(folder) if name.endswith(".whl"))
    with zipfile.ZipFile(os.path.join(folder, wheel)) as archive:
        archive.extractall(os.path.join(folder, "unpacked"))
    addons = os.path.join(folder, "unpacked", "odoo", "addons")
    assert os.path.isdir(os.path.join(addons, "subscription_oca")), addons
    return addons, wheel


def odoo_addons_path(extra):
    from odoo.tools import config

    return ",".join([REPO_ROOT, *extra, config.addons_base_dir, config.addons_community_dir])


def create_database(db, addons_path, module):
    subprocess.run(["dropdb", "--if-exists", db], check=True)
    print(f"  installing {module} in a fresh database {db}...", flush=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "odoo",
            "server",
            f"--database={db}",
            f"--addons-path={addons_path}",
            f"--init={module}",
            "--stop-after-init",
            "--http-interface=127.0.0.1",
            "--log-level=warn",
        ],
        check=True,
    )


@contextlib.contextmanager
def bench_databases(args, modules="subscription_close"):
    """The two databases of a benchmark, installed fresh: ``<--db-prefix>_ours``
    with ``modules`` (comma-separated, default subscription_close) and,
    unless ``--skip-peer``, ``<--db-prefix>_oca`` with the peer (downloaded
    into a temporary folder); this process's Odoo
    configured for them. Yields ``(ours_db, peer_db, peer_wheel)``
    (``peer_wheel`` is None without the peer); on exit the databases are
    closed and, unless ``--keep-db``, dropped."""
    from odoo.tools import config

    with tempfile.TemporaryDirectory(prefix="subscription_close_bench_") as tmp:
        extra, peer_wheel = [], None
        if not args.skip_peer:
            print("Downloading the peer (OCA subscription_oca)...", flush=True)
            peer_addons, peer_wheel = download_peer(tmp)
            extra.append(peer_addons)
        addons_path = odoo_addons_path(extra)
        ours_db, peer_db = f"{args.db_prefix}_ours", f"{args.db_prefix}_oca"
        create_database(ours_db, addons_path, modules)
        if not args.skip_peer:
            create_database(peer_db, addons_path, "subscription_oca")
        config.parse_config(
            [f"--addons-path={addons_path}", "--log-level=warn", "--http-interface=127.0.0.1"],
            setup_logging=True,
        )
        try:
            yield ours_db, peer_db, peer_wheel
        finally:
            from odoo.modules.registry import Registry
            from odoo.sql_db import close_db

            for db in (ours_db, peer_db):
                Registry.delete(db)
                close_db(db)
                if not args.keep_db:
                    subprocess.run(["dropdb", "--if-exists", db], check=False)


# ----------------------------------------------------------------------
# Subscriptions
# ----------------------------------------------------------------------


def bench_customer(env):
    return env["res.partner"].create({"name": "Bench customer", "email": "bench@example.com"})


def create_subscriptions(env, plan, product, count, confirmed=None):
    """``count`` subscriptions of ``plan`` with one line of ``product``,
    created and confirmed by batches of 1,000 (each batch then given to
    ``confirmed``), the cache emptied after each batch."""
    from odoo.fields import Command

    partner = bench_customer(env)
    orders = env["sale.order"]
    for start in range(0, count, 1000):
        batch = env["sale.order"].create(
            [
                {
                    "partner_id": partner.id,
                    "plan_id": plan.id,
                    "order_line": [Command.create({"product_id": product.id})],
                }
                for _i in range(min(1000, count - start))
            ]
        )
        batch.action_confirm()
        if confirmed:
            confirmed(batch)
        orders |= batch
        env.flush_all()
        env.invalidate_all()
    return orders


def create_peer_subscriptions(env, template, count, values=None):
    """``count`` In Progress subscriptions of the peer on ``template``,
    started today, with ``values`` on each (copied per subscription),
    created by batches of 1,000, the cache emptied after each batch."""
    stage = env.ref("subscription_oca.subscription_stage_in_progress")
    partner = bench_customer(env)
    pricelist = env["product.pricelist"].search([], limit=1) or env["product.pricelist"].create(
        {"name": "Bench"}
    )
    subscriptions = env["sale.subscription"]
    for start in range(0, count, 1000):
        subscriptions |= env["sale.subscription"].create(
            [
                {
                    "partner_id": partner.id,
                    "template_id": template.id,
                    "pricelist_id": pricelist.id,
                    "stage_id": stage.id,
                    "in_progress": True,
                    "date_start": datetime.date.today(),
                    **copy.deepcopy(values or {}),
                }
                for _i in range(min(1000, count - start))
            ]
        )
        env.flush_all()
        env.invalidate_all()
    return subscriptions


def one_request_each(env, ids, func):
    """Call ``func(id)`` for each of ``ids`` as a user does it through the
    interface, one request each: flushed, its chatter tracking run (what Odoo
    does at the end of a request) and the cache cleared after each, so that
    thousands of changes are not left pending in one transaction."""
    for record_id in ids:
        func(record_id)
        env.flush_all()
        env.cr.flush()
        env.invalidate_all()


# ----------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------


@contextlib.contextmanager
def _rolled_back(env, setup):
    """One run, inside a savepoint rolled back after it; ``setup`` runs first,
    inside the savepoint, its writes flushed and the cache cleared."""
    env.flush_all()
    env.cr.execute("SAVEPOINT bench")
    if setup:
        setup()
        env.flush_all()
    env.invalidate_all()
    yield
    env.cr.execute("ROLLBACK TO SAVEPOINT bench")
    env.invalidate_all()


def _run(env, func):
    func()
    env.flush_all()
    env.cr.flush()  # run what Odoo runs at commit (the chatter tracking)


def measure(env, func, runs, warmup=True, memory=True, setup=None):
    """Run ``func`` ``runs`` times, each time rolled back; return the median
    seconds, the queries of one run and the peak Python memory of one run.
    ``warmup`` adds a first, unmeasured run that fills Odoo's caches;
    ``memory`` adds a run under tracemalloc (slow, so not timed); ``setup``
    runs before each run, inside its savepoint, and is not measured."""
    cr = env.cr
    seconds, queries = [], []
    warmups = 1 if warmup else 0
    for _run_index in range(runs + warmups):
        with _rolled_back(env, setup):
            start_count = cr.sql_log_count
            start = time.perf_counter()
            _run(env, func)
            elapsed = time.perf_counter() - start
            queries.append(cr.sql_log_count - start_count)
            seconds.append(elapsed)
    result = {
        "seconds": statistics.median(seconds[warmups:]),
        "queries": statistics.median(queries[warmups:]),
        "peak_mib": None,
    }
    if not memory:
        return result
    # One more run for the memory: tracemalloc slows Python down, so it is
    # not timed.
    with _rolled_back(env, setup):
        tracemalloc.start()
        _run(env, func)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    result["peak_mib"] = peak / 2**20
    return result


# ----------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------


def machine_name():
    cpu = cpu_model(platform.processor() or platform.machine())
    return f"{platform.node()} ({cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()})"


def print_header(args, peer_wheel):
    print()
    print(f"Machine: {machine_name()}")
    print(f"Date: {datetime.datetime.now():%Y-%m-%d %H:%M}, runs per measure: {args.runs}")
    if peer_wheel:
        print(f"Peer: {peer_wheel}")
    print()


class Targets:
    """The targets of a benchmark, each printed with whether this run meets
    it; :meth:`exit_if_missed` exits 1 when one is missed."""

    def __init__(self):
        self.failures = []

    def check(self, ok, text, name):
        print(f"[{'ok' if ok else 'FAIL'}] {text}")
        if not ok:
            self.failures.append(name)

    def exit_if_missed(self):
        if self.failures:
            print(f"Targets missed: {', '.join(self.failures)}")
            sys.exit(1)
