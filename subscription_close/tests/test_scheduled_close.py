import logging
from datetime import date
from unittest.mock import patch

from freezegun import freeze_time
from psycopg2.errors import SerializationFailure

from odoo.fields import Command, Datetime
from odoo.tests import tagged

from .common import SubscriptionCommon
from .test_performance import per_hundred

_logger = logging.getLogger(__name__)


@tagged("post_install", "-at_install")
class TestScheduledClose(SubscriptionCommon):
    default_cron = "subscription_close.ir_cron_close_expired"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.expired = cls.env.ref("subscription_close.close_reason_expired")

    def test_period_end_dates(self):
        with freeze_time("2025-12-31"):
            monthly = self._create_subscription()
        with freeze_time("2026-01-20"):
            self.assertEqual(monthly._get_period_end_dates(), {monthly.id: date(2026, 1, 30)})
            monthly._create_invoices()  # the period 31 Dec - 30 Jan is invoiced
            self.assertEqual(monthly.next_invoice_date, date(2026, 1, 31))
            self.assertEqual(monthly._get_period_end_dates(), {monthly.id: date(2026, 1, 30)})
        # The next invoice date is past: the current period is found from it,
        # month ends kept (31 Oct, 30 Nov, 31 Dec, 31 Jan, 28 Feb).
        with freeze_time("2025-10-31"):
            old = self._create_subscription()
        with freeze_time("2026-02-15"):
            self.assertEqual(old._get_period_end_dates(), {old.id: date(2026, 2, 27)})
        with freeze_time("2026-02-28"):
            self.assertEqual(old._get_period_end_dates(), {old.id: date(2026, 3, 30)})

    @freeze_time("2026-03-31 12:00:00")
    def test_today_in_user_timezone(self):
        order = self._create_subscription()
        self.user_salesman.tz = "Pacific/Auckland"  # already 1 April there
        self._close(order.with_user(self.user_salesman), self.reason)
        self.assertEqual(order.end_date, date(2026, 4, 1))
        other = self._create_subscription()
        self.user_salesman.tz = "America/Los_Angeles"  # still 31 March there
        self._close(other.with_user(self.user_salesman), self.reason)
        self.assertEqual(other.end_date, date(2026, 3, 31))

    # ------------------------------------------------------------------
    # backend popup
    # ------------------------------------------------------------------

    def test_close_at_end_of_period(self):
        with freeze_time("2025-12-31"):
            first = self._create_subscription()
        with freeze_time("2026-01-10"):
            second = self._create_subscription(plan=self.plan_year)
        with freeze_time("2026-01-20"):
            self.flush_tracking()
            self._close_with_wizard(first + second, when="end_of_period")
            self.assertEqual(first.end_date, date(2026, 1, 30))
            self.assertEqual(second.end_date, date(2027, 1, 9))
            for order in first + second:
                self.assertEqual(order.subscription_state, "3_progress")
                self.assertTrue(order.is_closing)
                self.assertEqual(order.subscription_badge, "4_closing")
                self.assertEqual(order.close_reason_id, self.reason)
            self.assertIn("will close on 01/30/2026", first.message_ids[0].body)
            closing = self.env["sale.order"].search([("is_closing", "=", True)])
            self.assertEqual(closing & (first + second), first + second)
            not_closing = self.env["sale.order"].search([("is_closing", "=", False)])
            self.assertFalse(not_closing & (first + second))

    @freeze_time("2026-06-10")
    def test_close_on_a_chosen_date(self):
        order = self._create_subscription()
        self._close_with_wizard(order, when="date", close_date=date(2026, 7, 1))
        self.assertEqual(order.end_date, date(2026, 7, 1))
        self.assertTrue(order.is_closing)
        for bad_date in (date(2026, 6, 10), date(2026, 6, 1)):
            other = self._create_subscription()
            with self.assertRaisesText("Choose a date after today"):
                self._close_with_wizard(other, when="date", close_date=bad_date)
            self.assertFalse(other.is_closing)
            self.assertEqual(other.subscription_state, "3_progress")

    @freeze_time("2026-06-10")
    def test_cancel_closing_from_backend(self):
        order = self._create_subscription()
        self._close(order, self.reason, date(2026, 6, 30))
        self.flush_tracking()
        order.with_user(self.user_salesman).action_cancel_close()
        self.assertEqual(order.subscription_state, "3_progress")
        self.assertFalse(order.end_date)
        self.assertFalse(order.close_reason_id)
        self.assertFalse(order.is_closing)
        self.assertFalse(order.close_mail_to_send)
        self.assertIn("Subscription kept by", order.message_ids[0].body)
        with self.assertRaisesText("no scheduled closing"):
            order.action_cancel_close()

    @freeze_time("2026-06-10")
    def test_close_now_a_closing_subscription(self):
        order = self._create_subscription()
        self._close(order, self.reason, date(2026, 6, 30))
        other_reason = self.env.ref("subscription_close.close_reason_other")
        self._close(order, other_reason)
        self.assertEqual(order.subscription_state, "6_churn")
        self.assertEqual(order.end_date, date(2026, 6, 10))
        self.assertEqual(order.close_reason_id, other_reason)

    # ------------------------------------------------------------------
    # scheduled action
    # ------------------------------------------------------------------

    def test_cron_closes_due_subscriptions(self):
        with freeze_time("2026-06-01"):
            due = self._create_subscription()
            self._close(due, self.reason, date(2026, 6, 9))
            due_today = self._create_subscription()
            self._close(due_today, self.reason, date(2026, 6, 10))
            later = self._create_subscription()
            self._close(later, self.reason, date(2026, 7, 1))
            fixed_term = self._create_subscription()
        # An end date set without a reason (e.g. imported fixed-term contract)
        fixed_term.sudo().write({"end_date": date(2026, 6, 5)})
        with freeze_time("2026-06-10"):
            self._run_cron()
            self.assertEqual(due.subscription_state, "6_churn")
            self.assertEqual(due.end_date, date(2026, 6, 9))
            self.assertEqual(due.close_reason_id, self.reason)
            self.assertIn("closed on its end date", due.message_ids[0].body)
            self.assertEqual(fixed_term.subscription_state, "6_churn")
            self.assertEqual(fixed_term.close_reason_id, self.expired)
            self.assertEqual(fixed_term.end_date, date(2026, 6, 5))
            for order in due_today + later:
                self.assertEqual(order.subscription_state, "3_progress")
                self.assertTrue(order.is_closing)
            # Idempotent: a second run changes nothing more.
            messages = self.env["mail.message"].search_count([("model", "=", "sale.order")])
            self._run_cron()
            self.assertEqual(
                self.env["mail.message"].search_count([("model", "=", "sale.order")]), messages
            )
        with freeze_time("2026-06-11"):
            self._run_cron()
            self.assertEqual(due_today.subscription_state, "6_churn")
            self.assertTrue(later.is_closing)

    def test_cron_skips_orders_locked_by_another_worker(self):
        with freeze_time("2026-06-01"):
            orders = self._create_subscription() + self._create_subscription()
            self._close(orders, self.reason, date(2026, 6, 2))
        locked_elsewhere = orders[0]
        SaleOrder = type(self.env["sale.order"])
        original = SaleOrder._subscription_try_lock

        def try_lock(records, *args, **kwargs):
            return original(records - locked_elsewhere, *args, **kwargs)

        cron = self.env.ref("subscription_close.ir_cron_close_expired")
        self.env["ir.cron.trigger"].search([("cron_id", "=", cron.id)]).unlink()
        with (
            freeze_time("2026-06-10 08:00:00"),
            patch.object(SaleOrder, "_subscription_try_lock", try_lock),
        ):
            self._run_cron()
        self.assertEqual(orders[1].subscription_state, "6_churn")
        self.assertEqual(locked_elsewhere.subscription_state, "3_progress")
        # What the other worker holds is tried again a minute later, not the
        # next day.
        self.assertEqual(
            self.env["ir.cron.trigger"].search([("cron_id", "=", cron.id)]).mapped("call_at"),
            [Datetime.to_datetime("2026-06-10 08:01:00")],
        )
        with freeze_time("2026-06-10"):
            self._run_cron()
        self.assertEqual(locked_elsewhere.subscription_state, "6_churn")

    def test_cron_takes_the_next_orders_when_the_first_are_locked(self):
        with freeze_time("2026-06-01"):
            orders = self.env["sale.order"]
            for _i in range(4):
                orders |= self._create_subscription()
            self._close(orders, self.reason, date(2026, 6, 2))
        locked_elsewhere = orders[:2]
        SaleOrder = type(self.env["sale.order"])
        original = SaleOrder._subscription_try_lock

        def try_lock(records, *args, **kwargs):
            return original(records - locked_elsewhere, *args, **kwargs)

        cron = self.env.ref("subscription_close.ir_cron_close_expired")
        with freeze_time("2026-06-10"), patch.object(SaleOrder, "_subscription_try_lock", try_lock):
            cron.sudo().code = "model._cron_close_expired(batch_size=2)"
            self._run_cron()
        self.assertEqual(orders[2:].mapped("subscription_state"), ["6_churn"] * 2)
        self.assertEqual(locked_elsewhere.mapped("subscription_state"), ["3_progress"] * 2)

    def test_cron_retries_after_a_concurrent_change(self):
        """A due order changed by another transaction since the cron's began
        cannot be locked (serialization failure): the cron starts a fresh
        transaction and closes what is due then, instead of failing."""
        with freeze_time("2026-06-01"):
            orders = self._create_subscription() + self._create_subscription()
            self._close(orders, self.reason, date(2026, 6, 2))
        SaleOrder = type(self.env["sale.order"])
        original = SaleOrder._subscription_try_lock
        calls = []

        def try_lock(records, *args, **kwargs):
            calls.append(records.ids)
            if len(calls) == 1:
                raise SerializationFailure("could not serialize access due to concurrent update")
            return original(records, *args, **kwargs)

        with freeze_time("2026-06-10"), patch.object(SaleOrder, "_subscription_try_lock", try_lock):
            self._run_cron()
        self.assertEqual(len(calls), 2)  # failed, then locked the batch in a fresh snapshot
        self.assertEqual(orders.mapped("subscription_state"), ["6_churn"] * 2)
        progress = self.env["ir.cron.progress"].search(
            [("cron_id", "=", self.env.ref("subscription_close.ir_cron_close_expired").id)]
        )
        self.assertEqual(sum(progress.mapped("done")), 2)

    def test_cron_batches_report_progress(self):
        with freeze_time("2026-06-01"):
            orders = self.env["sale.order"]
            for _i in range(5):
                orders |= self._create_subscription()
            self._close(orders, self.reason, date(2026, 6, 2))
        cron = self.env.ref("subscription_close.ir_cron_close_expired")
        with freeze_time("2026-06-10"), self.enter_registry_test_mode():
            cron.sudo().code = "model._cron_close_expired(batch_size=2)"
            cron.method_direct_trigger()
        self.env.invalidate_all()
        self.assertEqual(set(orders.mapped("subscription_state")), {"6_churn"})
        progress = self.env["ir.cron.progress"].search([("cron_id", "=", cron.id)])
        self.assertEqual(sum(progress.mapped("done")), 5)

    # ------------------------------------------------------------------
    # closure emails
    # ------------------------------------------------------------------

    def _closure_mails(self, order):
        return self.env["mail.mail"].search(
            [("model", "=", "sale.order"), ("res_id", "=", order.id)]
        )

    @freeze_time("2026-06-10")
    def test_closure_emails(self):
        closed = self._create_subscription()
        self._close(closed, self.reason)
        closing = self._create_subscription()
        self._close(closing, self.reason, date(2026, 6, 30))
        self.assertEqual(closed.close_mail_to_send, "closed")
        self.assertEqual(closing.close_mail_to_send, "scheduled")
        self._run_cron("subscription_close.ir_cron_send_close_mails")
        self.assertFalse(closed.close_mail_to_send)
        self.assertFalse(closing.close_mail_to_send)

        mail = self._closure_mails(closed)
        self.assertEqual(len(mail), 1)
        self.assertEqual(mail.subject, f"Your subscription {closed.name} is closed")
        self.assertIn(self.customer, mail.recipient_ids)
        self.assertIn("Too expensive", mail.body_html)
        self.assertIn("06/10/2026", mail.body_html)
        self.assertIn(closed.get_portal_url().split("?")[0], mail.body_html)

        mail = self._closure_mails(closing)
        self.assertEqual(mail.subject, f"Your subscription {closing.name} will close on 06/30/2026")
        self.assertIn("Changed your mind?", mail.body_html)

        # The mail queue is asked to send them at once, not within the hour.
        queue = self.env.ref("mail.ir_cron_mail_scheduler_action")
        self.assertTrue(self.env["ir.cron.trigger"].search([("cron_id", "=", queue.id)]))

        # Sending twice sends nothing more.
        self._run_cron("subscription_close.ir_cron_send_close_mails")
        self.assertEqual(len(self._closure_mails(closed)), 1)

    @freeze_time("2026-06-10")
    def test_closure_email_in_italian(self):
        self.env["res.lang"]._activate_lang("it_IT")
        self.env["ir.module.module"]._load_module_terms(
            ["subscription_close"], ["it_IT"], overwrite=True
        )
        self.customer.lang = "it_IT"
        order = self._create_subscription()
        self._close(order, self.reason)
        self._run_cron("subscription_close.ir_cron_send_close_mails")
        mail = self._closure_mails(order)
        self.assertEqual(mail.subject, f"Il tuo abbonamento {order.name} è chiuso")
        self.assertIn("Troppo caro", mail.body_html)
        self.assertIn("10/06/2026", mail.body_html)

    @freeze_time("2026-06-10")
    def test_no_closure_email_when_switched_off(self):
        self.plan_year.send_close_mail = False
        order = self._create_subscription(plan=self.plan_year)
        self._close(order, self.reason)
        self.assertFalse(order.close_mail_to_send)
        self._run_cron("subscription_close.ir_cron_send_close_mails")
        self.assertFalse(self._closure_mails(order))

    @freeze_time("2026-06-10")
    def test_cancelled_closing_sends_no_pending_email(self):
        order = self._create_subscription()
        self._close(order, self.reason, date(2026, 6, 30))
        order.action_cancel_close()
        self._run_cron("subscription_close.ir_cron_send_close_mails")
        self.assertFalse(self._closure_mails(order))


@tagged("post_install", "-at_install")
class TestScheduledClosePerformance(SubscriptionCommon):
    def _due_subscriptions(self, count):
        orders = self.env["sale.order"].create(
            [
                {
                    "partner_id": self.customer.id,
                    "plan_id": self.plan_month.id,
                    "order_line": [Command.create({"product_id": self.product_sub.id})],
                }
                for _i in range(count)
            ]
        )
        with freeze_time("2026-05-20"):
            orders.action_confirm()
            # As after the invoicing job: the current period is invoiced.
            orders.with_context(tracking_disable=True).write({"next_invoice_date": "2026-06-20"})
        reason = self.env.ref("subscription_close.close_reason_too_expensive")
        with freeze_time("2026-06-01"):
            self._close(orders, reason, date(2026, 6, 5))
        return orders

    def _cron_queries(self, orders):
        cron = self.env.ref("subscription_close.ir_cron_close_expired")
        self.env.flush_all()
        with freeze_time("2026-06-10"), self.enter_registry_test_mode():
            before = self.cr.sql_log_count
            cron.method_direct_trigger()
            queries = self.cr.sql_log_count - before
        self.env.invalidate_all()
        self.assertEqual(set(orders.mapped("subscription_state")), {"6_churn"})
        return queries

    def test_cron_query_count(self):
        warm = self._due_subscriptions(3)
        self._cron_queries(warm)
        queries_10 = self._cron_queries(self._due_subscriptions(10))
        queries_500 = self._cron_queries(self._due_subscriptions(500))
        _logger.info("cron close: %s queries for 10 due, %s for 500", queries_10, queries_500)
        # The whole run, cron bookkeeping included, is a fixed part (search and
        # lock the batch, count what remains, report progress, trigger the
        # closure emails...) plus, per 100 subscriptions, what the ORM's
        # batching costs: 1 UPDATE sale_order, 1 INSERT mail_message and 1
        # INSERT mail_tracking_value (the reason and end date are already
        # set: only the status is tracked).
        self.assertEqual(queries_500 - queries_10, 3 * (per_hundred(500) - per_hundred(10)))
        self.assertLessEqual(queries_10, 45)
