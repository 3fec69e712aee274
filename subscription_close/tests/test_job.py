"""The job plumbing every scheduled action shares (``sale.subscription.job``),
and the chatter of a transition through mail's own tracking, for one order
and for many."""

from datetime import date
from unittest.mock import patch

from freezegun import freeze_time
from psycopg2.errors import SerializationFailure

from odoo import api
from odoo.fields import Datetime, Domain
from odoo.tests import tagged

from .common import SubscriptionCommon

JOB = "subscription_close.ir_cron_close_expired"  # any job's cron, for its retries


@tagged("post_install", "-at_install")
class TestCompanyToday(SubscriptionCommon):
    @freeze_time("2026-03-31 12:00:00")
    def test_one_today_per_company(self):
        Job = self.env["sale.subscription.job"]
        auckland, los_angeles, bare = self.env["res.company"].create(
            [{"name": "Auckland"}, {"name": "Los Angeles"}, {"name": "No time zone"}]
        )
        auckland.partner_id.tz = "Pacific/Auckland"  # already 1 April there
        los_angeles.partner_id.tz = "America/Los_Angeles"  # still 31 March there
        bare.partner_id.tz = False
        self.assertEqual(Job._get_company_today(auckland), date(2026, 4, 1))
        self.assertEqual(Job._get_company_today(los_angeles), date(2026, 3, 31))
        # A company without a time zone: the user's, else UTC.
        self.assertEqual(
            Job.with_user(self.user_salesman)._get_company_today(bare), date(2026, 3, 31)
        )
        self.user_salesman.tz = "Pacific/Auckland"
        self.assertEqual(
            Job.with_user(self.user_salesman)._get_company_today(bare), date(2026, 4, 1)
        )
        # The company's calendar wins over the user's.
        self.assertEqual(
            Job.with_user(self.user_salesman)._get_company_today(los_angeles), date(2026, 3, 31)
        )
        # The subscription dates use it, per order.
        shared = self.env["sale.subscription.plan"].create({"name": "Shared", "company_id": False})
        order = self._create_subscription(company_id=auckland.id, plan=shared)
        self.assertEqual(order._subscription_today(), date(2026, 4, 1))
        self.assertEqual(order.start_date, date(2026, 4, 1))
        domain = self.env["sale.order"]._subscription_date_domain("start_date", "<=")
        self.assertIn(order, self.env["sale.order"].search(domain))


@tagged("post_install", "-at_install")
class TestJobLoop(SubscriptionCommon):
    """:meth:`_subscription_run_job`: lock, batch, retry, progress; one loop
    for every scheduled action."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.orders = cls.env["sale.order"].browse(
            [cls._create_subscription().id for _i in range(5)]
        )

    def _run(self, process, batch_size=2):
        """Run the loop on the orders not done yet, in a cursor of the
        registry in test mode (its rollbacks go back to a savepoint), with
        the cron progress recorded instead of committed. Returns the
        progress reported."""
        progress = []

        def commit_progress(cron, processed=0, remaining=None, deactivate=False):
            progress.append((processed, remaining))
            return float("inf")

        IrCron = type(self.env["ir.cron"])
        with (
            self.enter_registry_test_mode(),
            self.registry.cursor() as cr,
            patch.object(IrCron, "_commit_progress", commit_progress),
        ):
            env = api.Environment(cr, self.env.uid, {})
            env["sale.order"]._subscription_run_job(
                Domain("id", "in", self.orders.ids) & Domain("client_order_ref", "!=", "done"),
                process,
                batch_size,
                JOB,
            )
        self.env.invalidate_all()
        return progress

    def test_batches_and_progress(self):
        batches = []

        def process(records):
            batches.append(records.ids)
            records.write({"client_order_ref": "done"})
            return len(records), records.browse()

        progress = self._run(process)
        # By batches of 2 in id order, each reported with what remains.
        ids = self.orders.ids
        self.assertEqual(batches, [ids[:2], ids[2:4], ids[4:]])
        self.assertEqual(progress, [(2, 3), (2, 1), (1, 0)])
        self.assertEqual(set(self.orders.mapped("client_order_ref")), {"done"})

    def test_skipped_records_end_the_loop(self):
        calls = []

        def skip_all(records):
            calls.append(records.ids)
            return 0, records

        progress = self._run(skip_all)
        self.assertEqual(len(calls), 3)  # each record looked at once, no endless loop
        self.assertEqual(progress[-1], (0, 0))
        self.assertFalse(any(self.orders.mapped("client_order_ref")))

    def test_a_batch_in_conflict_is_done_again(self):
        calls = []

        def conflict_once(records):
            calls.append(records.ids)
            records.write({"client_order_ref": "done", "note": f"try {len(calls)}"})
            if len(calls) == 1:
                raise SerializationFailure("could not serialize access due to concurrent update")
            return len(records), records.browse()

        self._run(conflict_once, batch_size=10)
        # Rolled back, then done again on the same records: once.
        self.assertEqual(calls, [self.orders.ids, self.orders.ids])
        self.assertEqual({str(note) for note in self.orders.mapped("note")}, {"<p>try 2</p>"})

    @freeze_time("2026-05-10 08:00:00")
    def test_conflicts_and_held_records_are_retried_a_minute_later(self):
        cron = self.env.ref(JOB)
        triggers = self.env["ir.cron.trigger"]

        def always_in_conflict(records):
            raise SerializationFailure("could not serialize access due to concurrent update")

        triggers.search([("cron_id", "=", cron.id)]).unlink()
        self._run(always_in_conflict)
        self.assertEqual(
            triggers.search([("cron_id", "=", cron.id)]).mapped("call_at"),
            [Datetime.to_datetime("2026-05-10 08:01:00")],
        )
        # Records another transaction holds: the others are done now, the
        # held ones a minute later (one trigger, not one per batch).
        held = self.orders[0]
        done = []
        SaleOrder = type(self.env["sale.order"])
        original = SaleOrder._subscription_try_lock

        def try_lock(records, *args, **kwargs):
            return original(records - held, *args, **kwargs)

        def process(records):
            done.extend(records.ids)
            return len(records), records

        triggers.search([("cron_id", "=", cron.id)]).unlink()
        with patch.object(SaleOrder, "_subscription_try_lock", try_lock):
            self._run(process)
        self.assertEqual(sorted(done), sorted((self.orders - held).ids))
        self.assertEqual(len(triggers.search([("cron_id", "=", cron.id)])), 1)


@tagged("post_install", "-at_install")
class TestChatterThroughMail(SubscriptionCommon):
    """The chatter of a transition is mail's: one order logged by mail's own
    tracking, many through mail's batch API, with the same result."""

    def _last_messages(self, orders):
        self.flush_tracking()
        return [order.message_ids[0] for order in orders]

    def _shape(self, message):
        return (
            message.subtype_id,
            message.author_id,
            message.message_type,
            message.body.split(" by ")[0],
            tuple(sorted(message.tracking_value_ids.field_id.mapped("name"))),
        )

    def test_one_and_many_give_the_same_message(self):
        one = self._create_subscription()
        many = self._create_subscription() + self._create_subscription()
        for orders in (one, many):
            self._close(orders.with_user(self.user_salesman), self.reason)
        shapes = {self._shape(message) for message in self._last_messages(one + many)}
        self.assertEqual(len(shapes), 1, shapes)
        subtype, author, message_type, body, fields = shapes.pop()
        self.assertEqual(subtype, self.env.ref("mail.mt_note"))
        self.assertEqual(author, self.user_salesman.partner_id)
        self.assertEqual(message_type, "notification")
        self.assertEqual(body, "<p>Subscription closed")
        self.assertEqual(fields, ("close_reason_id", "end_date", "subscription_state"))
        # Logged once: nothing more at the commit.
        counts = [len(order.message_ids) for order in one + many]
        self.flush_tracking()
        self.assertEqual(counts, [len(order.message_ids) for order in one + many])

    def test_a_customer_change_notifies_one_or_many(self):
        """A change made as a portal user (what the portal does) is posted
        with the subtype that notifies the followers, one order or many."""
        one = self._create_subscription()
        many = self._create_subscription() + self._create_subscription()
        portal = self.user_portal
        for orders in (one, many):
            self._close(orders.with_user(portal).sudo(), self.reason, author=self.customer)
        closed = self.env.ref("subscription_close.mt_subscription_closed")
        for message in self._last_messages(one + many):
            self.assertEqual(message.subtype_id, closed)
            self.assertEqual(message.author_id, self.customer)
            self.assertEqual(message.message_type, "notification")

    def test_an_earlier_edit_is_logged_once(self):
        """A tracked edit earlier in the same transaction is logged once: in
        the transition's message (one order), or in its own message just
        before (many); the subscription's status is tracked once."""
        one = self._create_subscription()
        many = self._create_subscription() + self._create_subscription()
        for orders in (one, many):
            orders.write({"user_id": self.user_salesman.id})
            self._close(orders, self.reason)
        self.flush_tracking()
        for order in one + many:
            values = order.message_ids.tracking_value_ids
            self.assertEqual(
                len(values.filtered(lambda v: v.field_id.name == "subscription_state")), 1
            )
            self.assertEqual(len(values.filtered(lambda v: v.field_id.name == "user_id")), 1)
