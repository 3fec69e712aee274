"""Benchmark: recurring invoicing of N due subscriptions with
subscription_close's scheduled action, and with the OCA peer subscription_oca.

Like with like, in the same run:

- ``draft``: subscription_close with a plan that leaves drafts, against the
  peer's "Draft" invoicing mode;
- ``posted``: subscription_close with a plan that posts its invoices (its
  emails switched off), against the peer's "Invoice" mode (post), whose
  PDF-and-email step (``account.move.send._generate_and_send_invoices``) is
  switched off too: it needs wkhtmltopdf to render a PDF per invoice, and an
  email step is not what is compared here.

For each N it builds the due subscriptions once per database, then runs each
scheduled action several times (each run rolled back to a savepoint, its
commits turned into no-ops) and prints the median seconds, the time and the
SQL queries per subscription, and the peak Python memory of one run. Run it
with ``bench/run invoice`` (see the README).
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
    print_header,
)
from procs import odoo_env


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000", help="comma-separated N")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measure")
    parser.add_argument(
        "--peer-runs", type=int, default=None, help="timed runs of the peer (default: --runs)"
    )
    parser.add_argument(
        "--peer-max", type=int, default=1000, help="largest N measured with the peer"
    )
    parser.add_argument("--skip-peer", action="store_true", help="do not measure subscription_oca")
    parser.add_argument("--keep-db", action="store_true", help="keep the benchmark databases")
    parser.add_argument("--db-prefix", default="subscription_close_bench_inv")
    return parser.parse_args()


def income_account(env):
    return env["account.account"].search(
        [("account_type", "=", "income"), ("company_ids", "in", env.company.id)], limit=1
    )


# ----------------------------------------------------------------------
# subscription_close
# ----------------------------------------------------------------------


def build_ours(env, count):
    plan = env["sale.subscription.plan"].create(
        {"name": "Bench monthly", "send_invoice_mail": False}
    )
    product = env["product.product"].create(
        {
            "name": "Bench subscription",
            "type": "service",
            "recurring_invoice": True,
            "list_price": 30.0,
            "property_account_income_id": income_account(env).id,
        }
    )
    return plan, create_subscriptions(env, plan, product, count)


def invoice_ours(env, plan, order_ids, mode):
    def setup():
        plan.write({"auto_post_invoices": mode == "posted"})
        # Only the N measured subscriptions are due.
        due = env["sale.order"].browse(order_ids)
        (env["sale.order"].search([("plan_id", "=", plan.id)]) - due).with_context(
            tracking_disable=True
        ).write({"next_invoice_date": datetime.date.today() + datetime.timedelta(days=365)})

    def run():
        IrCron = type(env["ir.cron"])
        with patch.object(IrCron, "_commit_progress", lambda *args, **kwargs: float("inf")):
            env["sale.order"]._cron_create_recurring_invoices()
        invoices = env["account.move"].search_count([("subscription_id", "in", order_ids)])
        assert invoices == len(order_ids), (invoices, len(order_ids))

    return setup, run


# ----------------------------------------------------------------------
# OCA subscription_oca
# ----------------------------------------------------------------------


def build_peer(env, count):
    from odoo.fields import Command

    template = env["sale.subscription.template"].create(
        {"name": "Bench monthly", "recurring_rule_boundary": "unlimited"}
    )
    product = env["product.product"].create(
        {
            "name": "Bench subscription",
            "type": "service",
            "list_price": 30.0,
            "property_account_income_id": income_account(env).id,
        }
    )
    values = {
        "recurring_next_date": datetime.date.today(),
        "sale_subscription_line_ids": [
            Command.create({"product_id": product.id, "price_unit": 30.0})
        ],
    }
    return template, create_peer_subscriptions(env, template, count, values)


def invoice_peer(env, template, subscription_ids, mode):
    def setup():
        template.invoicing_mode = "draft" if mode == "draft" else "invoice"
        due = env["sale.subscription"].browse(subscription_ids)
        (env["sale.subscription"].search([]) - due).write(
            {"recurring_next_date": datetime.date.today() + datetime.timedelta(days=365)}
        )

    def run():
        Send = type(env["account.move.send"])
        with patch.object(Send, "_generate_and_send_invoices", lambda *args, **kwargs: None):
            env["sale.subscription"].cron_subscription_management()
        invoices = env["account.move"].search_count([("subscription_id", "in", subscription_ids)])
        assert invoices == len(subscription_ids), (invoices, len(subscription_ids))

    return setup, run


# ----------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------


def main():
    args = parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    peer_runs = args.peer_runs or args.runs

    results = []
    with bench_databases(args) as (ours_db, peer_db, peer_wheel):
        for db, build, invoice, way in (
            (ours_db, build_ours, invoice_ours, "ours"),
            (peer_db, build_peer, invoice_peer, "oca"),
        ):
            if way == "oca" and args.skip_peer:
                continue
            with odoo_env(db) as env:
                largest = max(s for s in sizes if way == "ours" or s <= args.peer_max)
                print(f"  building {largest} due subscriptions ({way})...", flush=True)
                holder, records = build(env, largest)
                first = True
                for size in sizes:
                    if way == "oca" and size > args.peer_max:
                        continue
                    for mode in ("draft", "posted"):
                        print(f"  N={size} {way} {mode}...", flush=True)
                        setup, run = invoice(env, holder, records.ids[:size], mode)
                        result = measure(
                            env,
                            run,
                            peer_runs if way == "oca" else args.runs,
                            warmup=first,
                            memory=way == "ours" or size <= 100,
                            setup=setup,
                        )
                        first = False
                        results.append((size, way, mode, result))
                env.cr.rollback()
    report(results, sizes, peer_wheel, args)


def report(results, sizes, peer_wheel, args):
    by_key = {(size, way, mode): measure_ for size, way, mode, measure_ in results}
    labels = {
        ("ours", "draft"): "subscription_close, drafts",
        ("ours", "posted"): "subscription_close, posted",
        ("oca", "draft"): "OCA subscription_oca, Draft mode",
        ("oca", "posted"): "OCA subscription_oca, Invoice mode (no PDF/email)",
    }
    print_header(args, peer_wheel)
    print(
        "| N | way | seconds (median) | ms per subscription | queries | queries per "
        "subscription | peak MiB | vs OCA |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        for mode in ("draft", "posted"):
            peer = by_key.get((size, "oca", mode))
            for way in ("ours", "oca"):
                m = by_key.get((size, way, mode))
                if not m:
                    continue
                ratio = (
                    f"{peer['seconds'] / m['seconds']:.1f}x faster"
                    if peer and way == "ours"
                    else ""
                )
                peak = f"{m['peak_mib']:.1f}" if m["peak_mib"] is not None else "n/a"
                print(
                    f"| {size:,} | {labels[way, mode]} | {m['seconds']:.3f} | "
                    f"{1000 * m['seconds'] / size:.1f} | {m['queries']:.0f} | "
                    f"{m['queries'] / size:.1f} | {peak} | {ratio} |"
                )
    print()
    check_targets(by_key, sizes)


def check_targets(by_key, sizes):
    targets = Targets()
    check = targets.check
    for mode in ("draft", "posted"):
        ours, peer = by_key.get((1000, "ours", mode)), by_key.get((1000, "oca", mode))
        if ours and peer:
            speedup = peer["seconds"] / ours["seconds"]
            check(
                speedup >= 3.5,
                f"{mode}: N=1,000 invoiced {speedup:.1f}x faster than the peer (>= 3.5x)",
                f"{mode} speed",
            )
        small, large = (
            by_key.get((min(sizes), "ours", mode)),
            by_key.get((max(sizes), "ours", mode)),
        )
        if small and large and max(sizes) > min(sizes):
            per_small = small["seconds"] / min(sizes)
            per_large = large["seconds"] / max(sizes)
            check(
                per_large <= 1.5 * per_small,
                f"{mode}: {1000 * per_small:.1f} ms per subscription at N={min(sizes):,}, "
                f"{1000 * per_large:.1f} at N={max(sizes):,} (flat: <= 1.5x)",
                f"{mode} flat time",
            )
            q_small, q_large = small["queries"] / min(sizes), large["queries"] / max(sizes)
            check(
                q_large <= q_small and q_large <= 20,
                f"{mode}: {q_small:.1f} queries per subscription at N={min(sizes):,}, "
                f"{q_large:.1f} at N={max(sizes):,} (not growing with N, at most 20)",
                f"{mode} queries",
            )
    targets.exit_if_missed()


if __name__ == "__main__":
    main()
