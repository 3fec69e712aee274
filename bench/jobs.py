"""The scheduled jobs that the concurrency and fault scripts exercise.

A job is one small unit (a class) that the scripts drive without knowing
what it does:

- ``cron_xmlid``: the scheduled action (``ir.cron``) to trigger;
- ``follow_up_xmlids``: scheduled actions that finish what the job starts
  (e.g. the closure emails and the mail queue), triggered again while work
  is pending;
- ``batch_size``: the records the job processes per transaction;
- ``written_table``: the table a batch of the job writes (the fault script
  kills a process while its transaction holds writes on it);
- ``setup(env)``: create, through the ORM, the records the job must process
  (due now), and the control records it must leave alone;
- ``pending(env)``: how many of them are still to process (the scripts wait
  until it is 0), follow-up work that the job triggers included;
- ``invariant(env)``: checks that hold at ANY moment, even right after a
  process was killed in the middle of a batch (a batch is all or nothing);
- ``check(env, outbox)``: checks once the work is done: every record
  processed exactly once, the control records untouched; ``outbox`` is the
  list of ``(recipients, subject)`` of the emails the SMTP sink received (or
  None when no sink ran);
- ``figures(env)``: numbers to print;
- ``modules``: the modules the job needs besides the addon.

``env`` is an Odoo environment of the administrator in the script's process.
Checks read the database (SQL reading is fine); records are only written
through the ORM.

Four jobs: closing what is due (:class:`ClosingJob`), recurring invoicing
(:class:`InvoicingJob`), resuming paused subscriptions (:class:`ResumeJob`)
and charging the saved cards (:class:`ChargingJob`). Each works on its own
subscriptions; a job that needs more modules than the addon names them in
``modules`` (the scripts install them, see :func:`modules_for`). To add one: write
a class like them and add it to :data:`JOBS`; ``bench/concurrency.py`` and
``bench/faults.py`` then run it, at the same time as the other jobs.
"""

import datetime
import time

from procs import Check, odoo_env

# Email subject of the closure email (see data/mail_template_data.xml).
CLOSED_SUBJECT = "Your subscription {name} is closed"


def _count_by(rows):
    counts = {}
    for value in rows:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


def _all_or_nothing(label, summary, wrong, what="half-done or doubled"):
    """The check of a job's invariant: ``wrong`` are the records found
    half-done or doubled, ``summary`` says how far the job is."""
    return Check(
        label,
        not wrong,
        f"{summary}; {len(wrong)} {what}" + (f": {sorted(wrong)[:10]}" if wrong else ""),
    )


def _message_counts(env, ids):
    """``{order_id: messages}`` of the orders ``ids``."""
    env.cr.execute(
        """
        SELECT o.id, count(m.id) FROM sale_order o
          LEFT JOIN mail_message m ON m.model = 'sale.order' AND m.res_id = o.id
         WHERE o.id = ANY(%s) GROUP BY o.id
        """,
        (ids,),
    )
    return dict(env.cr.fetchall())


def _tracking_counts(env, ids, field_name, new_value_char=None, old_value_char=None):
    """``{order_id: messages}`` of the messages of the orders ``ids`` that
    track ``field_name`` (to ``new_value_char``, from ``old_value_char``)."""
    field = env["ir.model.fields"]._get("sale.order", field_name)
    env.cr.execute(
        """
        SELECT o.id, count(m.id)
          FROM sale_order o
          LEFT JOIN mail_message m
            ON m.model = 'sale.order' AND m.res_id = o.id
           AND EXISTS (SELECT 1 FROM mail_tracking_value t
                        WHERE t.mail_message_id = m.id AND t.field_id = %s
                          AND (%s IS NULL OR t.new_value_char = %s)
                          AND (%s IS NULL OR t.old_value_char = %s))
         WHERE o.id = ANY(%s)
         GROUP BY o.id
        """,
        (field.id, new_value_char, new_value_char, old_value_char, old_value_char, ids),
    )
    return dict(env.cr.fetchall())


def _state_label(env, state):
    selection = (
        env["sale.order"]
        .with_context(lang="en_US")
        .fields_get(["subscription_state"])["subscription_state"]["selection"]
    )
    return dict(selection)[state]


def _subscriptions(env, tag, count, plan_vals=None, product_vals=None):
    """``count`` confirmed monthly subscriptions of 100 customers, created
    through the ORM by batches of 500 (at the current, maybe frozen, date)."""
    from odoo.fields import Command

    plan = env["sale.subscription.plan"].create(
        {"name": f"{tag} monthly", "billing_period_unit": "month", **(plan_vals or {})}
    )
    product = env["product.product"].create(
        {
            "name": f"{tag} product",
            "type": "service",
            "recurring_invoice": True,
            "list_price": 20,
            **(product_vals or {}),
        }
    )
    partners = env["res.partner"].create(
        [{"name": f"{tag} customer {i}", "email": f"{tag}.{i}@example.com"} for i in range(100)]
    )
    orders = env["sale.order"]
    for start in range(0, count, 500):
        batch = env["sale.order"].create(
            [
                {
                    "partner_id": partners[i % len(partners)].id,
                    "plan_id": plan.id,
                    "order_line": [Command.create({"product_id": product.id})],
                }
                for i in range(start, min(start + 500, count))
            ]
        )
        batch.action_confirm()
        orders |= batch
    return orders


class ClosingJob:
    """Subscriptions whose end date has passed, closed by the scheduled action
    ``_cron_close_expired``: each is Churned once, with one closing message
    and (when the plan sends them) one closure email."""

    name = "closing"
    batch_size = 1000  # CLOSE_CHUNK_SIZE
    cron_xmlid = "subscription_close.ir_cron_close_expired"
    written_table = "sale_order"
    # Crons that finish what this job starts; the scripts wait for them too.
    follow_up_xmlids = (
        "subscription_close.ir_cron_send_close_mails",
        "mail.ir_cron_mail_scheduler_action",
    )

    def __init__(self, count, send_mail=True, controls=50, tag="proof"):
        self.count, self.send_mail, self.controls, self.tag = count, send_mail, controls, tag
        self.due_ids, self.later_ids, self.open_ids = [], [], []
        self.names, self.emails = {}, {}
        self.control_messages = None

    # ------------------------------------------------------------------
    # setup
    # ------------------------------------------------------------------

    def setup(self, env):
        """``count`` In Progress subscriptions whose closing was scheduled
        (through the closing API, ten days ago) for three days ago, with two
        close reasons; ``controls`` whose closing is scheduled in the future
        and ``controls`` without closing, that the job must not touch."""
        from freezegun import freeze_time

        today = datetime.date.today()
        reasons = [
            env.ref("subscription_close.close_reason_too_expensive"),
            env.ref("subscription_close.close_reason_not_needed"),
        ]
        with freeze_time(today - datetime.timedelta(days=10)):
            # Emails are switched on once the closings are scheduled: only the
            # closure emails of the job are counted, not the scheduling ones.
            orders = _subscriptions(
                env,
                self.tag,
                self.count + 2 * self.controls,
                {"user_closable": True, "send_close_mail": False},
            )
            plan = orders.plan_id
            # Already invoiced for this month: this job is about closing (the
            # invoicing job has its own subscriptions).
            orders.write({"next_invoice_date": today + datetime.timedelta(days=20)})
            due = orders[: self.count]
            later = orders[self.count : self.count + self.controls]
            self.open_ids = orders[self.count + self.controls :].ids
            for index, reason in enumerate(reasons):
                group = due[index :: len(reasons)]
                group._action_close(reason, dict.fromkeys(group.ids, today - datetime.timedelta(3)))
            later._action_close(
                reasons[0], dict.fromkeys(later.ids, today + datetime.timedelta(20))
            )
        plan.send_close_mail = self.send_mail
        self.due_ids, self.later_ids = due.ids, later.ids
        self.names = {order.id: order.name for order in orders}
        self.emails = {order.id: order.partner_id.email for order in orders}
        # Committed first: the tracking of the setup is logged at commit.
        env.cr.commit()
        self.control_messages = _message_counts(env, self.later_ids + self.open_ids)

    # ------------------------------------------------------------------
    # reading the database
    # ------------------------------------------------------------------

    def _closing_messages(self, env, ids):
        """``{order_id: (state, closing messages)}``: a closing message is
        one that tracks the status going to Churned. (Odoo's cursor reads
        both queries from one snapshot of the database.)"""
        closing = _tracking_counts(
            env, ids, "subscription_state", new_value_char=_state_label(env, "6_churn")
        )
        env.cr.execute("SELECT id, subscription_state FROM sale_order WHERE id = ANY(%s)", (ids,))
        return {order_id: (state, closing[order_id]) for order_id, state in env.cr.fetchall()}

    def pending(self, env):
        env.cr.execute(
            """
            SELECT count(*) FILTER (WHERE subscription_state = '3_progress'),
                   count(*) FILTER (WHERE close_mail_to_send IS NOT NULL)
              FROM sale_order WHERE id = ANY(%s)
            """,
            (self.due_ids,),
        )
        to_close, mails = env.cr.fetchone()
        env.cr.execute(
            """
            SELECT count(*) FROM mail_mail mm JOIN mail_message m ON m.id = mm.mail_message_id
             WHERE m.model = 'sale.order' AND m.res_id = ANY(%s) AND mm.state = 'outgoing'
            """,
            (self.due_ids,),
        )
        return to_close + mails + env.cr.fetchone()[0]

    # ------------------------------------------------------------------
    # checks
    # ------------------------------------------------------------------

    def invariant(self, env):
        rows = self._closing_messages(env, self.due_ids)
        half = [
            order_id
            for order_id, (state, count) in rows.items()
            if (state == "6_churn") != (count == 1) or count > 1
        ]
        closed = sum(1 for state, _count in rows.values() if state == "6_churn")
        return [
            _all_or_nothing(
                f"{self.name}: each subscription Churned with its one closing message, or neither",
                f"{closed} of {len(self.due_ids)} closed",
                half,
            )
        ]

    def check(self, env, outbox=None):
        rows = self._closing_messages(env, self.due_ids)
        states = _count_by(state for state, _count in rows.values())
        messages = _count_by(count for _state, count in rows.values())
        checks = [
            Check(
                f"{self.name}: every due subscription closed",
                states == {"6_churn": len(self.due_ids)},
                f"states {states}",
            ),
            Check(
                f"{self.name}: exactly one closing message each",
                messages == {1: len(self.due_ids)},
                f"closing messages per subscription {messages}",
            ),
        ]
        env.cr.execute(
            """
            SELECT count(*) FROM sale_order
             WHERE id = ANY(%s) AND (end_date IS NULL OR end_date >= CURRENT_DATE
                                     OR close_reason_id IS NULL)
            """,
            (self.due_ids,),
        )
        checks.append(
            Check(
                f"{self.name}: end date and close reason kept",
                not env.cr.fetchone()[0],
                "closed on their scheduled end date with their reason",
            )
        )
        env.cr.execute(
            """
            SELECT count(*) FILTER (WHERE id = ANY(%s) AND subscription_state = '3_progress'
                                     AND end_date > CURRENT_DATE),
                   count(*) FILTER (WHERE id = ANY(%s) AND subscription_state = '3_progress'
                                     AND end_date IS NULL)
              FROM sale_order
            """,
            (self.later_ids, self.open_ids),
        )
        later, open_ = env.cr.fetchone()
        untouched = _message_counts(env, self.later_ids + self.open_ids)
        checks.append(
            Check(
                f"{self.name}: subscriptions not due left alone",
                later == len(self.later_ids)
                and open_ == len(self.open_ids)
                and untouched == self.control_messages,
                f"{later}/{len(self.later_ids)} still closing later, "
                f"{open_}/{len(self.open_ids)} still open, no new message: "
                f"{untouched == self.control_messages}",
            )
        )
        if self.send_mail and outbox is not None:
            # The emails to the customer (the followers of the order, e.g. its
            # salesperson, get their own copy).
            sent = _count_by(
                (recipient, subject) for recipients, subject in outbox for recipient in recipients
            )

            def emails(order_id):
                subject = CLOSED_SUBJECT.format(name=self.names[order_id])
                return sent.get((self.emails[order_id], subject), 0)

            per_order = _count_by(emails(order_id) for order_id in self.due_ids)
            stray = sum(emails(order_id) for order_id in self.later_ids + self.open_ids)
            checks.append(
                Check(
                    f"{self.name}: exactly one closure email each",
                    per_order == {1: len(self.due_ids)} and not stray,
                    f"emails to the customer per subscription {per_order}, "
                    f"for subscriptions not due: {stray}",
                )
            )
        return checks

    def figures(self, env):
        return {
            "due": len(self.due_ids),
            "controls": len(self.later_ids) + len(self.open_ids),
            "closure emails": self.send_mail,
        }


class InvoicingJob:
    """In Progress subscriptions whose next invoice date has come, invoiced by
    the scheduled action ``_cron_create_recurring_invoices``: every period
    invoiced exactly once (one posted invoice, one chatter message), the
    next invoice date moved one period per invoice. Half of them missed two
    periods (one invoice each, two runs of the batch loop)."""

    name = "invoicing"
    batch_size = 100  # INVOICE_BATCH_SIZE
    cron_xmlid = "subscription_close.ir_cron_create_recurring_invoices"
    written_table = "account_move"
    follow_up_xmlids = ()

    def __init__(self, count, send_mail=True, controls=50, tag="proof"):
        # Invoice emails need a PDF (wkhtmltopdf): not part of this job.
        self.count, self.controls, self.tag = count, controls, f"{tag} invoicing"
        self.due_ids, self.control_ids = [], []
        self.expected = {}
        self.tracking_before = {}
        self.control_messages = None

    def setup(self, env):
        """``count`` subscriptions started 40 days ago (two periods due) or 10
        days ago (one period due), never invoiced; as controls, ``controls``
        already invoiced up to next month and ``controls`` closed before
        their first invoice, that the job must leave alone."""
        from freezegun import freeze_time

        today = datetime.date.today()
        plan_vals = {
            "auto_post_invoices": True,
            "send_invoice_mail": False,
            "send_close_mail": False,
        }
        due = env["sale.order"]
        for days, count in ((40, self.count // 2), (10, self.count - self.count // 2)):
            with freeze_time(today - datetime.timedelta(days=days)):
                due |= _subscriptions(env, f"{self.tag} {days}", count, plan_vals)
        with freeze_time(today - datetime.timedelta(days=10)):
            controls = _subscriptions(env, f"{self.tag} controls", 2 * self.controls, plan_vals)
            invoiced, closed = controls[: self.controls], controls[self.controls :]
            invoiced.write({"next_invoice_date": today + datetime.timedelta(days=20)})
            reason = env.ref("subscription_close.close_reason_not_needed")
            closed._action_close(reason, dict.fromkeys(closed.ids, datetime.date.today()))
        self.due_ids, self.control_ids = due.ids, controls.ids
        for order in due:
            periods, start = [], order.next_invoice_date
            while start <= today:
                periods.append(start)
                start = order._get_next_period_start(start)
            self.expected[order.id] = (periods, start)
        env.cr.commit()
        self.tracking_before = _tracking_counts(env, self.due_ids, "next_invoice_date")
        self.control_messages = _message_counts(env, self.control_ids)

    def _invoices(self, env, ids):
        """``{order_id: [(period start, state, name)]}`` of the customer
        invoices of the orders ``ids``, cancelled ones left out."""
        env.cr.execute(
            """
            SELECT subscription_id, subscription_period_start, state, name
              FROM account_move
             WHERE subscription_id = ANY(%s) AND move_type = 'out_invoice' AND state != 'cancel'
             ORDER BY subscription_id, subscription_period_start
            """,
            (ids,),
        )
        invoices = {}
        for order_id, period_start, state, name in env.cr.fetchall():
            invoices.setdefault(order_id, []).append((period_start, state, name))
        return invoices

    def _next_dates(self, env, ids):
        env.cr.execute("SELECT id, next_invoice_date FROM sale_order WHERE id = ANY(%s)", (ids,))
        return dict(env.cr.fetchall())

    def pending(self, env):
        env.cr.execute(
            "SELECT count(*) FROM sale_order WHERE id = ANY(%s) AND next_invoice_date <= %s",
            (self.due_ids, datetime.date.today()),
        )
        return env.cr.fetchone()[0]

    def invariant(self, env):
        """Each subscription's invoices are exactly the periods before its
        next invoice date, each with its chatter message: an invoice and the
        move of the date are committed together or not at all."""
        invoices = self._invoices(env, self.due_ids)
        next_dates = self._next_dates(env, self.due_ids)
        tracking = _tracking_counts(env, self.due_ids, "next_invoice_date")
        wrong = []
        for order_id in self.due_ids:
            periods, _end = self.expected[order_id]
            done = [p for p in periods if p < next_dates[order_id]]
            own = invoices.get(order_id, [])
            if [start for start, _state, _name in own] != done or tracking[
                order_id
            ] - self.tracking_before[order_id] != len(done):
                wrong.append(order_id)
        total = sum(len(own) for own in invoices.values())
        return [
            _all_or_nothing(
                f"{self.name}: invoices match the next invoice date, one message each",
                f"{total} invoices so far",
                wrong,
                what="subscriptions half-done or doubled",
            )
        ]

    def check(self, env, outbox=None):
        invoices = self._invoices(env, self.due_ids)
        next_dates = self._next_dates(env, self.due_ids)
        tracking = _tracking_counts(env, self.due_ids, "next_invoice_date")
        per_order = _count_by(len(invoices.get(order_id, [])) for order_id in self.due_ids)
        expected = _count_by(len(periods) for periods, _end in self.expected.values())
        wrong = [
            order_id
            for order_id in self.due_ids
            if [start for start, _s, _n in invoices.get(order_id, [])] != self.expected[order_id][0]
            or next_dates[order_id] != self.expected[order_id][1]
            or tracking[order_id] - self.tracking_before[order_id]
            != len(self.expected[order_id][0])
        ]
        all_invoices = [row for own in invoices.values() for row in own]
        states = _count_by(state for _start, state, _name in all_invoices)
        names = {name for _start, _state, name in all_invoices}
        controls = self._invoices(env, self.control_ids)
        untouched = _message_counts(env, self.control_ids)
        return [
            Check(
                f"{self.name}: every period invoiced exactly once",
                not wrong and per_order == expected,
                f"invoices per subscription {per_order} (expected {expected}); "
                f"{len(wrong)} wrong" + (f": {sorted(wrong)[:10]}" if wrong else ""),
            ),
            Check(
                f"{self.name}: invoices posted, each with its own number",
                states == {"posted": len(all_invoices)} and len(names) == len(all_invoices),
                f"states {states}, {len(names)} distinct numbers for {len(all_invoices)}",
            ),
            Check(
                f"{self.name}: subscriptions not due left alone",
                not controls and untouched == self.control_messages,
                f"invoices of controls: {sum(map(len, controls.values()))}, no new message: "
                f"{untouched == self.control_messages}",
            ),
        ]

    def figures(self, env):
        return {
            "due": len(self.due_ids),
            "periods due": sum(len(periods) for periods, _end in self.expected.values()),
            "controls": len(self.control_ids),
        }


class ResumeJob:
    """Paused subscriptions whose resume date has come, resumed by the
    scheduled action ``_cron_resume_paused``: each In Progress again once,
    with one message, its next invoice date moved once by the days paused."""

    name = "resume"
    batch_size = 1000  # CLOSE_CHUNK_SIZE
    cron_xmlid = "subscription_close.ir_cron_resume_paused"
    written_table = "sale_order"
    follow_up_xmlids = ()
    paused_days = 7

    def __init__(self, count, send_mail=True, controls=50, tag="proof"):
        self.count, self.controls, self.tag = count, controls, f"{tag} resume"
        self.due_ids, self.later_ids, self.manual_ids = [], [], []
        self.next_dates = {}
        self.control_messages = None

    def setup(self, env):
        """``count`` subscriptions paused ten days ago until three days ago;
        ``controls`` paused until a later day and ``controls`` paused until
        resumed by hand, that the job must leave alone."""
        from freezegun import freeze_time

        today = datetime.date.today()
        with freeze_time(today - datetime.timedelta(days=10)):
            orders = _subscriptions(env, self.tag, self.count + 2 * self.controls)
            # Invoiced until next month: this job is about resuming.
            orders.write({"next_invoice_date": today + datetime.timedelta(days=20)})
            due = orders[: self.count]
            later = orders[self.count : self.count + self.controls]
            manual = orders[self.count + self.controls :]
            resume = today - datetime.timedelta(days=10 - self.paused_days)
            due._action_pause(dict.fromkeys(due.ids, resume), reason="Holidays")
            later._action_pause(dict.fromkeys(later.ids, today + datetime.timedelta(days=5)))
            manual._action_pause(dict.fromkeys(manual.ids, False))
        self.due_ids, self.later_ids, self.manual_ids = due.ids, later.ids, manual.ids
        self.next_dates = {order.id: order.next_invoice_date for order in orders}
        env.cr.commit()
        self.control_messages = _message_counts(env, self.later_ids + self.manual_ids)

    def _rows(self, env):
        """``{order_id: (state, resume messages, days the next invoice date moved)}``."""
        resumed = _tracking_counts(
            env,
            self.due_ids,
            "subscription_state",
            new_value_char=_state_label(env, "3_progress"),
            old_value_char=_state_label(env, "4_paused"),
        )
        env.cr.execute(
            "SELECT id, subscription_state, next_invoice_date FROM sale_order WHERE id = ANY(%s)",
            (self.due_ids,),
        )
        return {
            order_id: (state, resumed[order_id], (day - self.next_dates[order_id]).days)
            for order_id, state, day in env.cr.fetchall()
        }

    def pending(self, env):
        env.cr.execute(
            "SELECT count(*) FROM sale_order"
            " WHERE id = ANY(%s) AND subscription_state = '4_paused'",
            (self.due_ids,),
        )
        return env.cr.fetchone()[0]

    def invariant(self, env):
        rows = self._rows(env)
        done = {"3_progress": (1, self.paused_days), "4_paused": (0, 0)}
        wrong = [
            order_id for order_id, (state, *rest) in rows.items() if done.get(state) != tuple(rest)
        ]
        resumed = sum(1 for state, *_rest in rows.values() if state == "3_progress")
        return [
            _all_or_nothing(
                f"{self.name}: each subscription resumed with its one message and its next "
                "invoice date moved once, or none of them",
                f"{resumed} of {len(self.due_ids)} resumed",
                wrong,
            )
        ]

    def check(self, env, outbox=None):
        rows = self._rows(env)
        outcome = _count_by(rows.values())
        env.cr.execute(
            "SELECT count(*) FROM sale_order"
            " WHERE id = ANY(%s) AND subscription_state = '4_paused'",
            (self.later_ids + self.manual_ids,),
        )
        still_paused = env.cr.fetchone()[0]
        untouched = _message_counts(env, self.later_ids + self.manual_ids)
        return [
            Check(
                f"{self.name}: every due subscription resumed exactly once",
                outcome == {("3_progress", 1, self.paused_days): len(self.due_ids)},
                f"(state, resume messages, days moved): {outcome}",
            ),
            Check(
                f"{self.name}: subscriptions not due left alone",
                still_paused == len(self.later_ids) + len(self.manual_ids)
                and untouched == self.control_messages,
                f"{still_paused}/{len(self.later_ids) + len(self.manual_ids)} still paused, "
                f"no new message: {untouched == self.control_messages}",
            ),
        ]

    def figures(self, env):
        return {
            "due": len(self.due_ids),
            "controls": len(self.later_ids) + len(self.manual_ids),
        }


class ChargingJob:
    """Open posted invoices of subscriptions with a saved card (a
    ``payment_demo`` token whose charges are done), charged by the scheduled
    action ``_cron_charge_subscriptions``: exactly one done transaction and
    one payment per invoice, every invoice paid. A charge that a killed
    process left as a draft (:meth:`invariant` notes them) must be flagged at
    the next run (the transaction in error, the subscription in payment
    exception) and never charged again."""

    name = "charging"
    batch_size = 50  # CHARGE_BATCH_SIZE
    cron_xmlid = "subscription_close.ir_cron_charge_subscriptions"
    # Written only once the drafts of the batch are committed, while the
    # provider's answers are posted (the payments): a kill then leaves the
    # batch's charges as drafts.
    written_table = "account_payment"
    follow_up_xmlids = ()
    modules = ("payment_demo",)
    # One process charges at a time (the job's mutex) and each charge costs
    # payment's and account's work on one invoice: 300 charges (six batches)
    # prove "once" under two servers without making the run last.
    max_count = 300

    def __init__(self, count, send_mail=True, controls=50, tag="proof"):
        self.count, self.controls, self.tag = count, controls, f"{tag} charging"
        self.due_ids, self.control_ids = [], []
        self.invoice_of, self.control_invoice_ids = {}, []
        self.control_messages = None
        # Charges left as drafts by a kill: {invoice_id: transaction_id}.
        self.interrupted = {}

    def setup(self, env):
        """``count`` subscriptions each with its own card (done) and one
        posted open invoice (20 + 10% tax); as controls, ``controls``
        invoiced without a card and ``controls`` with a card on a plan that
        does not charge it."""
        from odoo.fields import Command

        provider = env.ref("payment.payment_provider_demo")
        provider.write({"state": "test", "allow_tokenization": True})
        method = env.ref("payment_demo.payment_method_demo")
        tax = env["account.tax"].create(
            {"name": f"{self.tag} VAT 10%", "amount": 10.0, "type_tax_use": "sale"}
        )
        plan_vals = {
            "auto_post_invoices": True,
            "send_invoice_mail": False,
            "send_close_mail": False,
        }
        taxed = {"taxes_id": [Command.set(tax.ids)]}
        due = _subscriptions(env, self.tag, self.count, plan_vals, taxed)
        no_card = _subscriptions(env, f"{self.tag} no card", self.controls, plan_vals, taxed)
        not_charged = _subscriptions(
            env, f"{self.tag} off", self.controls, {**plan_vals, "charge_saved_card": False}, taxed
        )
        orders = due | no_card | not_charged
        carded = due | not_charged
        tokens = env["payment.token"].create(
            [
                {
                    "provider_id": provider.id,
                    "payment_method_id": method.id,
                    "payment_details": "4242",
                    "partner_id": order.partner_id.id,
                    "provider_ref": f"{self.tag}-{order.id}",
                    "demo_simulated_state": "done",
                }
                for order in carded
            ]
        )
        for order, token in zip(carded, tokens, strict=True):
            order.with_context(tracking_disable=True).payment_token_id = token
        # One posted invoice each, through the invoicing of the addon (not
        # its job: the invoicing job has its own subscriptions to invoice).
        for start in range(0, len(orders), 100):
            orders[start : start + 100]._create_recurring_invoices_batch()
            env.flush_all()
            env.invalidate_all()
        env.cr.commit()
        self.due_ids, self.control_ids = due.ids, (no_card | not_charged).ids
        env.cr.execute(
            """
            SELECT subscription_id, id FROM account_move
             WHERE subscription_id = ANY(%s) AND move_type = 'out_invoice' AND state = 'posted'
               AND payment_state = 'not_paid' AND amount_total = 22.0
            """,
            (orders.ids,),
        )
        rows = env.cr.fetchall()
        by_order = dict(rows)
        if len(rows) != len(orders) or len(by_order) != len(orders):
            raise AssertionError(f"{len(rows)} open invoices for {len(orders)} subscriptions")
        self.invoice_of = {order_id: by_order[order_id] for order_id in self.due_ids}
        self.control_invoice_ids = [by_order[order_id] for order_id in self.control_ids]
        self.control_messages = _message_counts(env, self.control_ids)

    # ------------------------------------------------------------------
    # reading the database
    # ------------------------------------------------------------------

    def _rows(self, env, invoice_ids):
        """``{invoice_id: (payment_state, [transaction states], payments,
        subscription in payment exception)}``; payments are the payments not
        cancelled matched to the invoice."""
        env.cr.execute(
            """
            SELECT m.id, m.payment_state, o.payment_exception,
                   coalesce((SELECT array_agg(t.state::text ORDER BY t.id)
                               FROM account_invoice_transaction_rel r
                               JOIN payment_transaction t ON t.id = r.transaction_id
                              WHERE r.invoice_id = m.id), '{}'),
                   (SELECT count(*) FROM account_move__account_payment ap
                      JOIN account_payment p ON p.id = ap.payment_id
                     WHERE ap.invoice_id = m.id AND p.state NOT IN ('canceled', 'rejected'))
              FROM account_move m JOIN sale_order o ON o.id = m.subscription_id
             WHERE m.id = ANY(%s)
            """,
            (invoice_ids,),
        )
        return {
            invoice_id: (payment_state, list(states), payments, bool(exception))
            for invoice_id, payment_state, exception, states, payments in env.cr.fetchall()
        }

    def pending(self, env):
        """Invoices neither paid nor flagged (a payment exception waits for
        the salesperson, not for the job)."""
        env.cr.execute(
            """
            SELECT count(*) FROM account_move m JOIN sale_order o ON o.id = m.subscription_id
             WHERE m.id = ANY(%s) AND m.payment_state NOT IN ('paid', 'in_payment')
               AND NOT coalesce(o.payment_exception, false)
            """,
            (list(self.invoice_of.values()),),
        )
        return env.cr.fetchone()[0]

    # ------------------------------------------------------------------
    # checks
    # ------------------------------------------------------------------

    @staticmethod
    def _paid(payment_state):
        return payment_state in ("paid", "in_payment")

    def invariant(self, env):
        """At any moment: no invoice charged twice (at most one transaction
        that is not error/cancel), none paid twice (at most one payment), a
        paid invoice paid by its one done charge. The drafts found are the
        charges the kill interrupted: the next run must flag them."""
        rows = self._rows(env, list(self.invoice_of.values()))
        twice, wrong = [], []
        for invoice_id, (payment_state, states, payments, _exception) in rows.items():
            live = [state for state in states if state not in ("error", "cancel")]
            if len(live) > 1 or payments > 1:
                twice.append(invoice_id)
            elif self._paid(payment_state) != (live == ["done"] and payments == 1):
                wrong.append(invoice_id)
            if live == ["draft"]:
                env.cr.execute(
                    "SELECT transaction_id FROM account_invoice_transaction_rel"
                    " WHERE invoice_id = %s",
                    (invoice_id,),
                )
                self.interrupted[invoice_id] = max(row[0] for row in env.cr.fetchall())
        paid = sum(1 for row in rows.values() if self._paid(row[0]))
        return [
            _all_or_nothing(
                f"{self.name}: no invoice charged or paid twice",
                f"{paid} of {len(rows)} paid, {len(self.interrupted)} charges left as drafts",
                twice,
                what="charged or paid twice",
            ),
            _all_or_nothing(
                f"{self.name}: each paid invoice paid by its one done charge and one payment",
                f"{paid} paid",
                wrong,
                what="paid without a done charge or done without payment",
            ),
        ]

    def check(self, env, outbox=None):
        rows = self._rows(env, list(self.invoice_of.values()))
        outcome = _count_by(
            (
                "paid" if self._paid(payment_state) else payment_state,
                "/".join(states),
                payments,
                "exception" if exception else "",
            )
            for payment_state, states, payments, exception in rows.values()
        )
        flagged_ok = {
            invoice_id
            for invoice_id in self.interrupted
            if rows[invoice_id][1] == ["error"] and rows[invoice_id][3]
        }
        others = [invoice_id for invoice_id in rows if invoice_id not in self.interrupted]
        paid_once = [
            invoice_id
            for invoice_id in others
            if self._paid(rows[invoice_id][0])
            and rows[invoice_id][1] == ["done"]
            and rows[invoice_id][2] == 1
            and not rows[invoice_id][3]
        ]
        env.cr.execute(
            """
            SELECT count(*) FROM account_invoice_transaction_rel r
             WHERE r.invoice_id = ANY(%s)
            """,
            (self.control_invoice_ids,),
        )
        control_charges = env.cr.fetchone()[0]
        env.cr.execute(
            "SELECT count(*) FROM account_move WHERE id = ANY(%s) AND payment_state = 'not_paid'",
            (self.control_invoice_ids,),
        )
        control_open = env.cr.fetchone()[0]
        untouched = _message_counts(env, self.control_ids)
        checks = [
            Check(
                f"{self.name}: every invoice paid by exactly one done charge and one payment",
                len(paid_once) == len(others),
                f"{len(paid_once)} of {len(others)}; (state, charges, payments, exception): "
                f"{outcome}",
            ),
            Check(
                f"{self.name}: subscriptions not due left alone",
                not control_charges
                and control_open == len(self.control_invoice_ids)
                and untouched == self.control_messages,
                f"charges of controls: {control_charges}, {control_open}/"
                f"{len(self.control_invoice_ids)} invoices still open, no new message: "
                f"{untouched == self.control_messages}",
            ),
        ]
        if self.interrupted:
            checks.append(
                Check(
                    f"{self.name}: charges interrupted by the kill flagged, never charged again",
                    flagged_ok == set(self.interrupted),
                    f"{len(flagged_ok)} of {len(self.interrupted)} left as drafts now in error "
                    "with their subscription in payment exception and no other charge, "
                    "their invoices unpaid",
                )
            )
        return checks

    def figures(self, env):
        return {
            "due": len(self.due_ids),
            "controls": len(self.control_ids),
        }


def trigger_jobs(db, jobs, follow_ups=False):
    """Commit ``ir.cron._trigger()`` of each job (and of its follow-ups)."""
    with odoo_env(db) as env:
        for job in jobs:
            for xmlid in (job.cron_xmlid, *(job.follow_up_xmlids if follow_ups else ())):
                env.ref(xmlid)._trigger()


def wait_done(db, jobs, timeout, retrigger=20):
    """Wait until no job has pending work; trigger the jobs and their
    follow-ups again every ``retrigger`` seconds meanwhile (the next run
    finishes what is left). Return the seconds waited and what is still
    pending by job."""
    start = last_trigger = time.monotonic()
    while True:
        with odoo_env(db) as env:
            pending = {job.name: job.pending(env) for job in jobs}
        if not any(pending.values()) or time.monotonic() - start > timeout:
            return time.monotonic() - start, pending
        if time.monotonic() - last_trigger > retrigger:
            trigger_jobs(db, jobs, follow_ups=True)
            last_trigger = time.monotonic()
        time.sleep(0.5)


def default_jobs(count=None, send_mail=True, tag="proof", only=None, cap=True):
    """The jobs the scripts run: one instance of each job class (of the
    names in ``only`` when given), ``count`` due records each (by default
    three batches of the job), with ``cap`` at most the job's ``max_count``
    when it has one."""
    jobs = []
    for job_class in JOBS:
        if only and job_class.name not in only:
            continue
        job_count = count or 3 * job_class.batch_size
        if cap and getattr(job_class, "max_count", None):
            job_count = min(job_count, job_class.max_count)
        jobs.append(job_class(job_count, send_mail=send_mail, tag=tag))
    return jobs


def modules_for(only=None):
    """The modules to install for the jobs (of the names in ``only`` when
    given): the addon and what each job needs besides."""
    from procs import ADDON

    extra = {
        module
        for job_class in JOBS
        if not only or job_class.name in only
        for module in getattr(job_class, "modules", ())
    }
    return [ADDON, *sorted(extra)]


# The jobs run together by bench/concurrency.py and bench/faults.py.
# Charging first: the invoicing job triggers the charging job, which would
# otherwise charge the fault test's invoices before their turn, leaving no
# batch to kill.
JOBS = [ChargingJob, ClosingJob, InvoicingJob, ResumeJob]
