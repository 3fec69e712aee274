"""Benchmark: closing N subscriptions with subscription_close, with the OCA
peer subscription_oca, and with raw SQL (the floor).

For each N it builds the subscriptions once in a throwaway database, then
closes them several times (each run rolled back to a savepoint so that every
run starts from the same data) and prints, per way of closing: the median
seconds, the SQL queries and the peak Python memory of one run.

Ways of closing:

- ``popup``: subscription_close's Close Reason popup on all N subscriptions
  (the batch action of the list), i.e. ``sale.order.close.action_close``;
- ``popup1``: the same popup, one subscription at a time (one request per
  subscription, as the peer is measured): where the speed of ``popup``
  comes from is batching, not a faster way of writing;
- ``cron``: subscription_close's scheduled action on N subscriptions whose
  end date has passed (each commit only runs what a commit runs, the flush
  and the chatter tracking, so that the run can be rolled back);
- ``oca``: OCA subscription_oca 19.0 (PyPI ``odoo-addon-subscription-oca``,
  downloaded into a temporary folder), closed through its close wizard one
  subscription at a time, as its user interface does;
- ``sql``: one UPDATE of the orders plus one multi-row INSERT of their
  chatter messages: what no implementation can beat.

Every way leaves one chatter entry per subscription; subscription_close's
ways write through the ORM (``write()`` and ``create()``). Run it with
``bench/run`` (see the README).
"""

import argparse
import contextlib
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
from unittest.mock import patch

PEER_REQUIREMENT = "odoo-addon-subscription-oca>=19.0,<19.1"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="comma-separated N")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measure")
    parser.add_argument(
        "--peer-runs", type=int, default=None, help="timed runs of the peer (default: --runs)"
    )
    parser.add_argument("--skip-peer", action="store_true", help="do not measure subscription_oca")
    parser.add_argument(
        "--one-by-one-max",
        type=int,
        default=1000,
        help="largest N closed one subscription at a time (popup1)",
    )
    parser.add_argument("--keep-db", action="store_true", help="keep the benchmark databases")
    parser.add_argument("--db-prefix", default="subscription_close_bench")
    return parser.parse_args()


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


def open_registry(db):
    from odoo.modules.registry import Registry

    return Registry(db)


# ----------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------


def measure(env, func, runs, warmup=True, memory=True, setup=None):
    """Run ``func`` ``runs`` times, each time rolled back; return the median
    seconds, the queries of one run and the peak Python memory of one run.
    ``warmup`` adds a first, unmeasured run that fills Odoo's caches;
    ``memory`` adds a run under tracemalloc (slow, so not timed); ``setup``
    runs before each run, inside its savepoint, and is not measured."""
    cr = env.cr
    seconds, queries = [], []
    warmups = 1 if warmup else 0
    for _run in range(runs + warmups):
        env.flush_all()
        cr.execute("SAVEPOINT bench")
        if setup:
            setup()
            env.flush_all()
        env.invalidate_all()
        start_count = cr.sql_log_count
        start = time.perf_counter()
        func()
        env.flush_all()
        cr.flush()  # run what Odoo runs at commit (the chatter tracking)
        elapsed = time.perf_counter() - start
        queries.append(cr.sql_log_count - start_count)
        seconds.append(elapsed)
        cr.execute("ROLLBACK TO SAVEPOINT bench")
        env.invalidate_all()
    result = {
        "seconds": statistics.median(seconds[warmups:]),
        "queries": statistics.median(queries[warmups:]),
        "peak_mib": None,
    }
    if not memory:
        return result
    # One more run for the memory: tracemalloc slows Python down, so it is
    # not timed.
    env.flush_all()
    cr.execute("SAVEPOINT bench")
    if setup:
        setup()
        env.flush_all()
    env.invalidate_all()
    tracemalloc.start()
    func()
    env.flush_all()
    cr.flush()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    cr.execute("ROLLBACK TO SAVEPOINT bench")
    env.invalidate_all()
    result["peak_mib"] = peak / 2**20
    return result


# ----------------------------------------------------------------------
# subscription_close
# ----------------------------------------------------------------------


def build_subscriptions(env, count):
    """``count`` In Progress subscriptions, created and confirmed in batches."""
    from odoo.fields import Command

    plan = env["sale.subscription.plan"].create({"name": "Bench monthly", "user_closable": True})
    product = env["product.product"].create(
        {"name": "Bench subscription", "type": "service", "recurring_invoice": True}
    )
    partner = env["res.partner"].create({"name": "Bench customer", "email": "bench@example.com"})
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
        # In progress, the current period invoiced: the next invoice is due
        # in a month (as after the invoicing job).
        batch.with_context(tracking_disable=True).write(
            {"next_invoice_date": datetime.date.today() + datetime.timedelta(days=30)}
        )
        orders |= batch
        env.flush_all()
        env.invalidate_all()
    return orders


def close_with_popup(env, order_ids, reason):
    def run():
        wizard = env["sale.order.close"].create(
            {"order_ids": [(6, 0, order_ids)], "close_reason_id": reason.id}
        )
        wizard.action_close()

    return None, run


def close_with_popup_one_by_one(env, order_ids, reason):
    """The same popup, one subscription per request: flushed, its tracking
    run and the cache cleared after each, as the peer is measured."""

    def run():
        Wizard = env["sale.order.close"]
        for order_id in order_ids:
            Wizard.create(
                {"order_ids": [(6, 0, [order_id])], "close_reason_id": reason.id}
            ).action_close()
            env.flush_all()
            env.cr.flush()
            env.invalidate_all()

    return None, run


def close_with_cron(env, order_ids, reason):
    yesterday = datetime.date.today() - datetime.timedelta(days=1)

    def setup():
        # The subscriptions' closing was scheduled in an earlier transaction
        # and their end date has passed (written through the ORM, untracked:
        # not a cost of the scheduled action).
        env["sale.order"].browse(order_ids).with_context(tracking_disable=True).write(
            {"end_date": yesterday, "close_reason_id": reason.id}
        )

    def commit_progress(cron, *args, **kwargs):
        # What a commit runs, without committing: the run is rolled back.
        cron.env.flush_all()
        cron.env.cr.flush()  # the chatter tracking of the batch
        return float("inf")

    def run():
        IrCron = type(env["ir.cron"])
        with patch.object(IrCron, "_commit_progress", commit_progress):
            env["sale.order"]._cron_close_expired()

    return setup, run


def close_with_sql(env, order_ids, reason):
    def run():
        cr = env.cr
        cr.execute(
            """UPDATE sale_order
                  SET subscription_state = '6_churn', end_date = CURRENT_DATE,
                      close_reason_id = %s, write_uid = %s, write_date = now()
                WHERE id = ANY(%s)""",
            (reason.id, env.uid, order_ids),
        )
        cr.execute(
            """INSERT INTO mail_message (model, res_id, body, message_type, is_internal,
                                         author_id, date, create_uid, create_date)
               SELECT 'sale.order', id, %s, 'notification', TRUE, %s, now(), %s, now()
                 FROM unnest(%s::int[]) AS id""",
            ("Subscription closed.", env.user.partner_id.id, env.uid, order_ids),
        )

    return None, run


# ----------------------------------------------------------------------
# OCA subscription_oca
# ----------------------------------------------------------------------


def build_peer_subscriptions(env, count):
    stage = env.ref("subscription_oca.subscription_stage_in_progress")
    template = env["sale.subscription.template"].create({"name": "Bench monthly"})
    partner = env["res.partner"].create({"name": "Bench customer", "email": "bench@example.com"})
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
                }
                for _i in range(min(1000, count - start))
            ]
        )
        env.flush_all()
        env.invalidate_all()
    return subscriptions


def close_with_peer_wizard(env, subscription_ids, reason):
    """One close per request, as a user does it in the peer's interface: each
    close is flushed and its chatter tracking run (what Odoo does at the end
    of a request), and the cache is cleared, so that the peer does not pay
    for thousands of closes pending in one transaction."""

    def run():
        Wizard = env["close.reason.wizard"]
        for subscription_id in subscription_ids:
            Wizard.with_context(active_id=subscription_id).create(
                {"close_reason_id": reason.id}
            ).button_confirm()
            env.flush_all()
            env.cr.flush()
            env.invalidate_all()

    return run


# ----------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------


def compare(seconds, reference):
    """``"3.2x faster"`` or ``"1.4x slower"``: ``seconds`` against ``reference``."""
    if seconds <= reference:
        return f"{reference / seconds:.1f}x faster"
    return f"{seconds / reference:.1f}x slower"


def machine_name():
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{platform.node()} ({cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()})"


def main():
    args = parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    peer_runs = args.peer_runs or args.runs

    import odoo
    from odoo.tools import config

    results = []  # (N, way, measure)
    with tempfile.TemporaryDirectory(prefix="subscription_close_bench_") as tmp:
        extra, peer_wheel = [], None
        if not args.skip_peer:
            print("Downloading the peer (OCA subscription_oca)...", flush=True)
            peer_addons, peer_wheel = download_peer(tmp)
            extra.append(peer_addons)
        addons_path = odoo_addons_path(extra)
        ours_db = f"{args.db_prefix}_ours"
        peer_db = f"{args.db_prefix}_oca"
        create_database(ours_db, addons_path, "subscription_close")
        if not args.skip_peer:
            create_database(peer_db, addons_path, "subscription_oca")

        config.parse_config(
            [f"--addons-path={addons_path}", "--log-level=warn", "--http-interface=127.0.0.1"],
            setup_logging=True,
        )
        from odoo import api

        try:
            registry = open_registry(ours_db)
            with registry.cursor() as cr:
                env = api.Environment(cr, odoo.SUPERUSER_ID, {})
                admin = env.ref("base.user_admin")
                env = env(user=admin, context=admin.context_get())
                print(f"  building {max(sizes)} subscriptions (subscription_close)...", flush=True)
                all_ids = build_subscriptions(env, max(sizes)).ids
                reason = env.ref("subscription_close.close_reason_too_expensive")
                for index, size in enumerate(sizes):
                    ids = all_ids[:size]
                    for way, factory in (
                        ("popup", close_with_popup),
                        ("popup1", close_with_popup_one_by_one),
                        ("cron", close_with_cron),
                        ("sql", close_with_sql),
                    ):
                        if way == "popup1" and size > args.one_by_one_max:
                            continue
                        print(f"  N={size} {way}...", flush=True)
                        setup, run = factory(env, ids, reason)
                        # One subscription at a time, memory does not depend on N.
                        result = measure(
                            env,
                            run,
                            args.runs,
                            warmup=index == 0,
                            memory=way != "popup1",
                            setup=setup,
                        )
                        results.append((size, way, result))
                cr.rollback()

            if not args.skip_peer:
                registry = open_registry(peer_db)
                with registry.cursor() as cr:
                    env = api.Environment(cr, odoo.SUPERUSER_ID, {})
                    admin = env.ref("base.user_admin")
                    env = env(user=admin, context=admin.context_get())
                    print(
                        f"  building {max(sizes)} subscriptions (subscription_oca)...", flush=True
                    )
                    all_ids = build_peer_subscriptions(env, max(sizes)).ids
                    reason = env.ref("subscription_oca.close_reason_expensive")
                    for index, size in enumerate(sizes):
                        print(f"  N={size} oca...", flush=True)
                        run = close_with_peer_wizard(env, all_ids[:size], reason)
                        # The peer closes one subscription at a time: its memory
                        # does not depend on N, and tracemalloc makes 10,000
                        # closes last for minutes, so it is measured up to 1,000.
                        result = measure(
                            env, run, peer_runs, warmup=index == 0, memory=size <= 1000
                        )
                        results.append((size, "oca", result))
                    cr.rollback()
        finally:
            from odoo.modules.registry import Registry
            from odoo.sql_db import close_db

            for db in (ours_db, peer_db):
                Registry.delete(db)
                close_db(db)
                if not args.keep_db:
                    subprocess.run(["dropdb", "--if-exists", db], check=False)

    report(results, sizes, peer_wheel, args)


def report(results, sizes, peer_wheel, args):
    by_key = {(size, way): measure for size, way, measure in results}
    labels = {
        "popup": "subscription_close, Close popup",
        "popup1": "subscription_close, same popup, one at a time",
        "cron": "subscription_close, scheduled action",
        "oca": "OCA subscription_oca, close wizard",
        "sql": "raw SQL floor",
    }
    print()
    print(f"Machine: {machine_name()}")
    print(f"Date: {datetime.datetime.now():%Y-%m-%d %H:%M}, runs per measure: {args.runs}")
    if peer_wheel:
        print(f"Peer: {peer_wheel}")
    print()
    header = "| N | way | seconds (median) | SQL queries | peak MiB | vs OCA | vs SQL floor |"
    print(header)
    print("|---:|---|---:|---:|---:|---:|---:|")
    for size in sizes:
        peer = by_key.get((size, "oca"))
        floor = by_key.get((size, "sql"))
        for way in ("popup", "popup1", "cron", "oca", "sql"):
            measure_ = by_key.get((size, way))
            if not measure_:
                continue
            vs_peer = compare(measure_["seconds"], peer["seconds"]) if peer and way != "oca" else ""
            vs_floor = (
                f"{measure_['seconds'] / floor['seconds']:.1f}x slower"
                if floor and way != "sql"
                else ""
            )
            peak = measure_["peak_mib"]
            peak = f"{peak:.1f}" if peak is not None else "n/a"
            print(
                f"| {size:,} | {labels[way]} | {measure_['seconds']:.3f} | "
                f"{measure_['queries']:.0f} | {peak} | {vs_peer} | {vs_floor} |"
            )
    print()
    check_targets(by_key, sizes)


def check_targets(by_key, sizes):
    """Print the targets and whether this run meets them; exit 1 if not."""
    failures = []

    def check(ok, text, name):
        print(f"[{'ok' if ok else 'FAIL'}] {text}")
        if not ok:
            failures.append(name)

    popup_1000 = by_key.get((1000, "popup"))
    if popup_1000:
        queries = popup_1000["queries"]
        check(queries <= 80, f"N=1,000 closes in {queries:.0f} queries (<= 80)", "queries")
        peer = by_key.get((1000, "oca"))
        if peer:
            speedup = peer["seconds"] / popup_1000["seconds"]
            check(
                speedup >= 10,
                f"N=1,000 is {speedup:.1f}x faster than the peer in this run (>= 10x)",
                "speed",
            )
        one_by_one = by_key.get((1000, "popup1"))
        if one_by_one:
            print(
                f"[info] one at a time, the same popup takes {one_by_one['seconds']:.2f} s "
                f"for N=1,000: batching makes it "
                f"{one_by_one['seconds'] / popup_1000['seconds']:.1f}x faster"
            )
    for way in ("popup", "cron"):
        small, large = by_key.get((min(sizes), way)), by_key.get((max(sizes), way))
        if not (small and large and max(sizes) > min(sizes)):
            continue
        # The ORM writes and inserts 100 rows per query: the cost may step
        # with N/100, never with N. Per 100 more subscriptions, a closing
        # writes one UPDATE, one INSERT of notes and up to three of tracking
        # values (plus, for the cron, its search and lock per batch).
        per_hundred = (large["queries"] - small["queries"]) / ((max(sizes) - min(sizes)) / 100)
        check(
            per_hundred <= 6,
            f"{way}: {small['queries']:.0f} queries for N={min(sizes):,}, "
            f"{large['queries']:.0f} for N={max(sizes):,} = {per_hundred:.2f} more per 100 "
            "subscriptions (<= 6, the ORM's batching)",
            f"{way} per 100",
        )
        mib_small = by_key.get((1000, way), small)["peak_mib"]
        check(
            large["peak_mib"] <= 2 * mib_small,
            f"{way}: peak memory {large['peak_mib']:.1f} MiB for N={max(sizes):,} vs "
            f"{mib_small:.1f} MiB for one batch (<= 2x)",
            f"{way} memory",
        )
    if failures:
        print(f"Targets missed: {', '.join(failures)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
