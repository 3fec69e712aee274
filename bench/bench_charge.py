"""Benchmark: charging the saved cards of N due subscriptions with
subscription_close's scheduled action, against the plain path an integrator
would write without the addon.

N monthly subscriptions of a product with a 10% tax, each with its own
``payment_demo`` card (a ``payment.token`` whose ``demo_simulated_state`` is
``done``), are invoiced once by the invoicing job (committed: each has one
posted, open invoice). Then, like with like on the same invoices, each run
rolled back to a savepoint (see ``measure.py``):

- ``ours``: ``sale.order._cron_charge_subscriptions()`` run as the scheduled
  action runs it: the cron's user, the context the scheduler gives
  (``cron_id`` and a real ``ir.cron.progress`` record in
  ``ir_cron_progress_id``, created before each run), so that
  ``account.move._subscription_charge`` takes the same path as in production
  (its charges committed before the provider is asked). Only the COMMIT is
  taken out: ``ir.cron._commit_progress`` runs as Odoo's, its progress
  written, but with the cursor's ``commit`` turned into ``flush`` (what a
  commit runs before COMMIT: the ORM's pending writes and the precommit
  hooks, e.g. the chatter tracking), so that the run can be rolled back;
- ``plain``: for the same invoices, one ``payment.transaction`` created per
  invoice (``operation='offline'``, the subscription's token, the invoice),
  then ``tx._charge_with_token()`` and ``tx._post_process()``, one
  transaction at a time, flushed after each: what an integrator writes
  without the addon;
- ``end to end``: the invoicing job then the charging job (both as above) on
  N other subscriptions, due to be invoiced.

Each run checks that every invoice was paid by exactly one done transaction.
Prints the median seconds, the time and queries per subscription and the
peak Python memory of one run, and exits 1 when a target is missed. Run it
with ``bench/run charge`` (see the README).
"""

import argparse
import datetime
from unittest.mock import patch

from measure import Targets, bench_databases, create_subscriptions, measure, print_header
from procs import odoo_env

CHARGE_CRON = "subscription_close.ir_cron_charge_subscriptions"
INVOICE_CRON = "subscription_close.ir_cron_create_recurring_invoices"
WAYS = ("ours", "plain", "end to end")
LABELS = {
    "ours": "subscription_close, charging job",
    "plain": "plain path, one transaction at a time",
    "end to end": "subscription_close, invoicing + charging jobs",
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000", help="comma-separated N")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measure")
    parser.add_argument("--keep-db", action="store_true", help="keep the benchmark database")
    parser.add_argument("--db-prefix", default="subscription_close_bench_chg")
    args = parser.parse_args()
    args.skip_peer = True  # the plain path runs in the same database
    return args


# ----------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------


def income_account(env):
    return env["account.account"].search(
        [("account_type", "=", "income"), ("company_ids", "in", env.company.id)], limit=1
    )


def build(env, count):
    """``2 * count`` monthly subscriptions with a done demo card each: the
    first ``count`` invoiced (one posted open invoice each, committed), the
    others not invoiced yet, their next invoice date a year away (the end to
    end measure makes them due). Returns both."""
    from odoo.fields import Command

    provider = env.ref("payment.payment_provider_demo")
    provider.write({"state": "test", "allow_tokenization": True})
    method = env.ref("payment_demo.payment_method_demo")
    tax = env["account.tax"].create(
        {"name": "Bench VAT 10%", "amount": 10.0, "type_tax_use": "sale"}
    )
    plan = env["sale.subscription.plan"].create(
        {
            "name": "Bench monthly",
            "billing_period_unit": "month",
            "auto_post_invoices": True,
            "send_invoice_mail": False,
            "charge_saved_card": True,
        }
    )
    product = env["product.product"].create(
        {
            "name": "Bench subscription",
            "type": "service",
            "recurring_invoice": True,
            "list_price": 30.0,
            "taxes_id": [Command.set(tax.ids)],
            "property_account_income_id": income_account(env).id,
        }
    )

    def with_cards(batch):
        tokens = env["payment.token"].create(
            [
                {
                    "provider_id": provider.id,
                    "payment_method_id": method.id,
                    "payment_details": "4242",
                    "partner_id": order.partner_id.id,
                    "provider_ref": f"bench-{order.id}",
                    "demo_simulated_state": "done",
                }
                for order in batch
            ]
        )
        for order, token in zip(batch, tokens, strict=True):
            order.with_context(tracking_disable=True).payment_token_id = token

    charged = create_subscriptions(env, plan, product, count, with_cards)
    later = create_subscriptions(env, plan, product, count, with_cards)
    later.with_context(tracking_disable=True).write(
        {"next_invoice_date": datetime.date.today() + datetime.timedelta(days=365)}
    )
    env.cr.commit()
    print(f"  invoicing the {count} subscriptions to charge...", flush=True)
    env["sale.order"]._cron_create_recurring_invoices()  # commits its batches
    env.cr.execute(
        """
        SELECT count(*), count(DISTINCT subscription_id) FROM account_move
         WHERE subscription_id = ANY(%s) AND move_type = 'out_invoice' AND state = 'posted'
           AND payment_state = 'not_paid' AND amount_total = 33.0
        """,
        (charged.ids,),
    )
    invoices, subscriptions = env.cr.fetchone()
    assert invoices == subscriptions == count, (invoices, subscriptions, count)
    env.cr.execute(
        "SELECT count(*) FROM account_move WHERE subscription_id = ANY(%s)", (later.ids,)
    )
    assert not env.cr.fetchone()[0]
    env.cr.commit()
    return charged, later


def invoices_of(env, orders):
    """The open invoice of each of ``orders``, in their order."""
    env.cr.execute(
        "SELECT subscription_id, id FROM account_move WHERE subscription_id = ANY(%s)",
        (orders.ids,),
    )
    by_order = dict(env.cr.fetchall())
    return [by_order[order_id] for order_id in orders.ids]


def check_charged(env, invoice_ids):
    """Every invoice of ``invoice_ids`` paid, by exactly one done
    transaction."""
    env.flush_all()
    env.cr.execute(
        """
        SELECT count(*) FILTER (WHERE m.payment_state IN ('paid', 'in_payment')),
               (SELECT count(*) FROM account_invoice_transaction_rel r
                  JOIN payment_transaction t ON t.id = r.transaction_id
                 WHERE r.invoice_id = ANY(%s) AND t.state = 'done')
          FROM account_move m WHERE m.id = ANY(%s)
        """,
        (invoice_ids, invoice_ids),
    )
    paid, done = env.cr.fetchone()
    assert paid == done == len(invoice_ids), (paid, done, len(invoice_ids))


# ----------------------------------------------------------------------
# Running a job as the scheduler does, without its commits
# ----------------------------------------------------------------------


def cron_env(env, xmlid):
    """``(env, progress)``: an environment of the scheduled action ``xmlid``
    as the scheduler gives it to the job (the cron's user, ``cron_id``, a
    new ``ir.cron.progress`` in ``ir_cron_progress_id``)."""
    cron = env.ref(xmlid).sudo()
    cron, progress = cron._add_progress()
    job_env = env(user=cron.user_id, context={**cron.env.context, "cron_id": cron.id})
    return job_env, progress


def run_without_commit(env, func):
    """Run ``func()`` with Odoo's ``ir.cron._commit_progress`` (progress
    written, time left computed) whose COMMIT is replaced by ``flush``: the
    pending writes and precommit hooks run where a commit runs them, and the
    run stays in the transaction, to be rolled back."""
    IrCron = type(env["ir.cron"])
    original = IrCron._commit_progress

    def commit_progress(self, *args, **kwargs):
        cursor_class = type(self.env.cr)
        with patch.object(cursor_class, "commit", cursor_class.flush):
            return original(self, *args, **kwargs)

    with patch.object(IrCron, "_commit_progress", commit_progress):
        func()


def charge_setup(env, charged_invoice_ids, all_invoice_ids, later, holder, end_to_end=False):
    """Before a run (in its savepoint): only the invoices ``charged_invoice_ids``
    are due to be charged (the others of the benchmark wait for a retry a
    year away); for the end to end run, only the first subscriptions of
    ``later`` in ``holder['due']`` are due to be invoiced. The job
    environments (with their progress records) are made here."""

    def setup():
        others = sorted(set(all_invoice_ids) - set(charged_invoice_ids))
        env["account.move"].browse(others).with_context(tracking_disable=True).write(
            {
                "subscription_charge_attempts": 1,
                "subscription_next_charge_date": datetime.date.today()
                + datetime.timedelta(days=365),
            }
        )
        if end_to_end:
            due = later[: holder["size"]]
            later.with_context(tracking_disable=True).write(
                {"next_invoice_date": datetime.date.today() + datetime.timedelta(days=365)}
            )
            due.with_context(tracking_disable=True).write(
                {"next_invoice_date": datetime.date.today()}
            )
            holder["invoice_env"] = cron_env(env, INVOICE_CRON)[0]
        holder["charge_env"] = cron_env(env, CHARGE_CRON)[0]

    return setup


def run_ours(env, invoice_ids, holder):
    def run():
        run_without_commit(env, holder["charge_env"]["sale.order"]._cron_charge_subscriptions)
        check_charged(env, invoice_ids)

    return run


def run_end_to_end(env, later, holder):
    def run():
        due = later[: holder["size"]]
        run_without_commit(env, holder["invoice_env"]["sale.order"]._cron_create_recurring_invoices)
        run_without_commit(env, holder["charge_env"]["sale.order"]._cron_charge_subscriptions)
        check_charged(env, invoices_of(env, due))

    return run


def run_plain(env, invoice_ids, holder):
    """One transaction per invoice, charged and post-processed one at a time,
    flushed after each (no lock, no look for an existing charge, no batch)."""

    def run():
        job_env = holder["charge_env"]
        Transaction = job_env["payment.transaction"].sudo()
        for invoice in job_env["account.move"].browse(invoice_ids):
            token = invoice.subscription_id.payment_token_id.sudo()
            tx = Transaction.create(
                {
                    "provider_id": token.provider_id.id,
                    "payment_method_id": token.payment_method_id.id,
                    "token_id": token.id,
                    "amount": invoice.amount_residual,
                    "currency_id": invoice.currency_id.id,
                    "partner_id": invoice.partner_id.id,
                    "operation": "offline",
                    "invoice_ids": [(6, 0, invoice.ids)],
                }
            )
            tx._charge_with_token()
            tx._post_process()
            job_env.flush_all()
        check_charged(env, invoice_ids)

    return run


# ----------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------


def main():
    args = parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    results = {}
    modules = "subscription_close,payment_demo"
    with bench_databases(args, modules=modules) as (db, _peer, _wheel), odoo_env(db) as env:
        largest = max(sizes)
        print(f"  building 2 x {largest} subscriptions with a card...", flush=True)
        charged, later = build(env, largest)
        all_invoice_ids = invoices_of(env, charged)
        first = True
        for size in sizes:
            invoice_ids = all_invoice_ids[:size]
            holder = {"size": size}
            for way in WAYS:
                print(f"  N={size} {way}...", flush=True)
                setup = charge_setup(
                    env,
                    [] if way == "end to end" else invoice_ids,
                    all_invoice_ids,
                    later,
                    holder,
                    end_to_end=way == "end to end",
                )
                if way == "ours":
                    run = run_ours(env, invoice_ids, holder)
                elif way == "plain":
                    run = run_plain(env, invoice_ids, holder)
                else:
                    run = run_end_to_end(env, later, holder)
                # The plain path's memory is not a target: measured (under
                # tracemalloc, slow) only for the smaller sizes.
                results[size, way] = measure(
                    env,
                    run,
                    args.runs,
                    warmup=first,
                    memory=way != "plain" or size <= 100,
                    setup=setup,
                )
                first = False
        env.cr.rollback()
    report(results, sizes, args)


def report(results, sizes, args):
    print_header(args, None)
    print(
        "| N | way | seconds (median) | ms per subscription | queries | queries per "
        "subscription | peak MiB | ours vs plain |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        plain = results.get((size, "plain"))
        for way in WAYS:
            m = results.get((size, way))
            if not m:
                continue
            ratio = ""
            if way == "ours" and plain:
                speedup = plain["seconds"] / m["seconds"]
                ratio = f"{speedup:.2f}x faster" if speedup >= 1 else f"{1 / speedup:.2f}x slower"
            peak = f"{m['peak_mib']:.1f}" if m["peak_mib"] is not None else "n/a"
            print(
                f"| {size:,} | {LABELS[way]} | {m['seconds']:.3f} | "
                f"{1000 * m['seconds'] / size:.1f} | {m['queries']:.0f} | "
                f"{m['queries'] / size:.1f} | {peak} | {ratio} |"
            )
    print()
    check_targets(results, sizes)


def check_targets(results, sizes):
    targets = Targets()
    check = targets.check
    small, large = min(sizes), max(sizes)
    ours, plain = results.get((large, "ours")), results.get((large, "plain"))
    if ours and plain:
        speedup = plain["seconds"] / ours["seconds"]
        check(
            speedup >= 3,
            f"N={large:,} charged {speedup:.2f}x as fast as the plain path (target: >= 3x)",
            "speed",
        )
    if large > small:
        for way in ("ours", "end to end"):
            s, m = results[small, way], results[large, way]
            per_small, per_large = s["seconds"] / small, m["seconds"] / large
            check(
                per_large <= 1.5 * per_small,
                f"{way}: {1000 * per_small:.1f} ms per subscription at N={small:,}, "
                f"{1000 * per_large:.1f} at N={large:,} (flat: <= 1.5x)",
                f"{way} flat time",
            )
            # A batch of the charging job is 50 invoices (100 for the
            # invoicing): N = 100 already holds two of them, so bounded by a
            # batch means no more memory at N = 1,000 than at N = 100
            # (with room for noise).
            check(
                m["peak_mib"] <= 1.5 * s["peak_mib"],
                f"{way}: peak {s['peak_mib']:.1f} MiB at N={small:,}, {m['peak_mib']:.1f} at "
                f"N={large:,} (bounded by a batch: <= 1.5x)",
                f"{way} memory",
            )
    targets.exit_if_missed()


if __name__ == "__main__":
    main()
