"""The scheduled jobs that the concurrency and fault scripts exercise.

A job is one small unit (a class) that the scripts drive without knowing
what it does:

- ``cron_xmlid``: the scheduled action (``ir.cron``) to trigger;
- ``follow_up_xmlids``: scheduled actions that finish what the job starts
  (e.g. the closure emails and the mail queue), triggered again while work
  is pending;
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
- ``figures(env)``: numbers to print.

``env`` is an Odoo environment of the administrator in the script's process.
Checks read the database (SQL reading is fine); records are only written
through the ORM.

To add a job (recurring invoicing, resuming paused subscriptions): write a
class like :class:`ClosingJob` with its ``cron_xmlid``
(``subscription_close.ir_cron_create_recurring_invoices``,
``subscription_close.ir_cron_resume_paused``), its setup of due records and
its checks (e.g. one invoice per subscription and period; one resume
message), and add it to :data:`JOBS`. ``bench/concurrency.py`` and
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


class ClosingJob:
    """Subscriptions whose end date has passed, closed by the scheduled action
    ``_cron_close_expired``: each is Churned once, with one closing message
    and (when the plan sends them) one closure email."""

    name = "closing"
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

        from odoo.fields import Command

        today = datetime.date.today()
        reasons = [
            env.ref("subscription_close.close_reason_too_expensive"),
            env.ref("subscription_close.close_reason_not_needed"),
        ]
        with freeze_time(today - datetime.timedelta(days=10)):
            # Emails are switched on once the closings are scheduled: only the
            # closure emails of the job are counted, not the scheduling ones.
            plan = env["sale.subscription.plan"].create(
                {
                    "name": f"{self.tag} monthly",
                    "billing_period_unit": "month",
                    "user_closable": True,
                    "send_close_mail": False,
                }
            )
            product = env["product.product"].create(
                {
                    "name": f"{self.tag} subscription",
                    "type": "service",
                    "recurring_invoice": True,
                    "list_price": 20.0,
                }
            )
            partners = env["res.partner"].create(
                [
                    {"name": f"{self.tag} customer {i}", "email": f"{self.tag}.{i}@example.com"}
                    for i in range(100)
                ]
            )
            total = self.count + 2 * self.controls
            orders = env["sale.order"]
            for start in range(0, total, 500):
                batch = env["sale.order"].create(
                    [
                        {
                            "partner_id": partners[i % len(partners)].id,
                            "plan_id": plan.id,
                            "order_line": [Command.create({"product_id": product.id})],
                        }
                        for i in range(start, min(start + 500, total))
                    ]
                )
                batch.action_confirm()
                orders |= batch
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
        self.control_messages = self._message_counts(env, self.later_ids + self.open_ids)

    # ------------------------------------------------------------------
    # reading the database
    # ------------------------------------------------------------------

    def _closing_messages(self, env, ids):
        """``{order_id: (state, closing messages)}``: a closing message is
        one that tracks the status going to Churned."""
        field = env["ir.model.fields"]._get("sale.order", "subscription_state")
        selection = (
            env["sale.order"]
            .with_context(lang="en_US")
            .fields_get(["subscription_state"])["subscription_state"]["selection"]
        )
        churned = dict(selection)["6_churn"]
        env.cr.execute(
            """
            SELECT o.id, o.subscription_state, count(m.id)
              FROM sale_order o
              LEFT JOIN mail_message m
                ON m.model = 'sale.order' AND m.res_id = o.id
               AND EXISTS (SELECT 1 FROM mail_tracking_value t
                            WHERE t.mail_message_id = m.id AND t.field_id = %s
                              AND t.new_value_char = %s)
             WHERE o.id = ANY(%s)
             GROUP BY o.id, o.subscription_state
            """,
            (field.id, churned, ids),
        )
        return {order_id: (state, count) for order_id, state, count in env.cr.fetchall()}

    def _message_counts(self, env, ids):
        env.cr.execute(
            """
            SELECT o.id, count(m.id) FROM sale_order o
              LEFT JOIN mail_message m ON m.model = 'sale.order' AND m.res_id = o.id
             WHERE o.id = ANY(%s) GROUP BY o.id
            """,
            (ids,),
        )
        return dict(env.cr.fetchall())

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
            Check(
                f"{self.name}: each subscription Churned with its one closing message, or neither",
                not half,
                f"{closed} of {len(self.due_ids)} closed; {len(half)} half-done or doubled"
                + (f": {sorted(half)[:10]}" if half else ""),
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
        untouched = self._message_counts(env, self.later_ids + self.open_ids)
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


def default_jobs(count, send_mail=True, tag="proof"):
    """The jobs the scripts run: one instance of each job class."""
    return [job_class(count, send_mail=send_mail, tag=tag) for job_class in JOBS]


# The jobs run together by bench/concurrency.py and bench/faults.py.
JOBS = [ClosingJob]
