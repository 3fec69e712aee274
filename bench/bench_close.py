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
import datetime
from unittest.mock import patch

from measure import (
    Targets,
    bench_databases,
    create_peer_subscriptions,
    create_subscriptions,
    measure,
    one_request_each,
    print_header,
)
from procs import odoo_env


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
# subscription_close
# ----------------------------------------------------------------------


def build_subscriptions(env, count):
    """``count`` In Progress subscriptions, created and confirmed in batches."""
    plan = env["sale.subscription.plan"].create({"name": "Bench monthly", "user_closable": True})
    product = env["product.product"].create(
        {"name": "Bench subscription", "type": "service", "recurring_invoice": True}
    )

    def invoiced(batch):
        # In progress, the current period invoiced: the next invoice is due
        # in a month (as after the invoicing job).
        batch.with_context(tracking_disable=True).write(
            {"next_invoice_date": datetime.date.today() + datetime.timedelta(days=30)}
        )

    return create_subscriptions(env, plan, product, count, confirmed=invoiced)


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

    def close_one(order_id):
        env["sale.order.close"].create(
            {"order_ids": [(6, 0, [order_id])], "close_reason_id": reason.id}
        ).action_close()

    def run():
        one_request_each(env, order_ids, close_one)

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
    template = env["sale.subscription.template"].create({"name": "Bench monthly"})
    return create_peer_subscriptions(env, template, count)


def close_with_peer_wizard(env, subscription_ids, reason):
    """One close per request, as a user does it in the peer's interface (see
    :func:`measure.one_request_each`): the peer does not pay for thousands
    of closes pending in one transaction."""

    def close_one(subscription_id):
        env["close.reason.wizard"].with_context(active_id=subscription_id).create(
            {"close_reason_id": reason.id}
        ).button_confirm()

    def run():
        one_request_each(env, subscription_ids, close_one)

    return run


# ----------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------


def compare(seconds, reference):
    """``"3.2x faster"`` or ``"1.4x slower"``: ``seconds`` against ``reference``."""
    if seconds <= reference:
        return f"{reference / seconds:.1f}x faster"
    return f"{seconds / reference:.1f}x slower"


def main():
    args = parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    peer_runs = args.peer_runs or args.runs

    results = []  # (N, way, measure)
    with bench_databases(args) as (ours_db, peer_db, peer_wheel):
        with odoo_env(ours_db) as env:
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
            env.cr.rollback()

        if not args.skip_peer:
            with odoo_env(peer_db) as env:
                print(f"  building {max(sizes)} subscriptions (subscription_oca)...", flush=True)
                all_ids = build_peer_subscriptions(env, max(sizes)).ids
                reason = env.ref("subscription_oca.close_reason_expensive")
                for index, size in enumerate(sizes):
                    print(f"  N={size} oca...", flush=True)
                    run = close_with_peer_wizard(env, all_ids[:size], reason)
                    # The peer closes one subscription at a time: its memory
                    # does not depend on N, and tracemalloc makes 10,000
                    # closes last for minutes, so it is measured up to 1,000.
                    result = measure(env, run, peer_runs, warmup=index == 0, memory=size <= 1000)
                    results.append((size, "oca", result))
                env.cr.rollback()

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
    print_header(args, peer_wheel)
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
    targets = Targets()
    check = targets.check
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
    targets.exit_if_missed()


if __name__ == "__main__":
    main()
