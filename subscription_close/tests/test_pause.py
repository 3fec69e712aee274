from datetime import date
from unittest.mock import patch

from freezegun import freeze_time

from odoo.exceptions import AccessError
from odoo.tests import tagged

from .common import SubscriptionCommon

RESUME_CRON = "subscription_close.ir_cron_resume_paused"
INVOICING_CRON = "subscription_close.ir_cron_create_recurring_invoices"
CLOSING_MODULE = "odoo.addons.subscription_close.models.sale_subscription_job"


class PauseCommon(SubscriptionCommon):
    default_cron = RESUME_CRON

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.plan_month.user_pausable = True
        immediate = cls.env.ref("account.account_payment_term_immediate")
        cls.customer.property_payment_term_id = immediate


@tagged("post_install", "-at_install")
class TestPause(PauseCommon):
    # ------------------------------------------------------------------
    # pausing and resuming
    # ------------------------------------------------------------------

    def test_pause_until_a_date_with_the_popup(self):
        with freeze_time("2026-01-10"):
            order = self._create_subscription(user_id=self.user_salesman.id)
        with freeze_time("2026-01-20"):
            self.flush_tracking()
            before = order.message_ids
            self._pause_with_wizard(order, date(2026, 3, 20), reason="Closed for the winter")
            self.flush_tracking()
        self.assertEqual(order.subscription_state, "4_paused")
        self.assertEqual(order.subscription_badge, "4_paused")
        self.assertEqual(order.pause_start_date, date(2026, 1, 20))
        self.assertEqual(order.resume_date, date(2026, 3, 20))
        self.assertEqual(order.pause_reason, "Closed for the winter")
        self.assertEqual(order.next_invoice_date, date(2026, 1, 10))  # moves on resuming
        self.env.invalidate_all()
        message = order.message_ids - before
        self.assertEqual(len(message), 1)
        self.assertIn("Subscription paused by", message.body)
        self.assertIn("until 03/20/2026", message.body)
        self.assertIn("Reason: Closed for the winter", message.body)
        self.assertEqual(message.author_id, self.user_salesman.partner_id)
        self.assertEqual(message.subtype_id, self.env.ref("mail.mt_note"))
        self.assertEqual(
            set(message.tracking_value_ids.field_id.mapped("name")),
            {"subscription_state", "pause_start_date", "resume_date"},
        )
        self.assertEqual(
            self.env["sale.order"].search([("subscription_state", "=", "4_paused")]), order
        )

    def test_pause_until_resumed_by_hand(self):
        with freeze_time("2026-01-10"):
            order = self._create_subscription()
        with freeze_time("2026-01-20"):
            self._pause_with_wizard(order)
        self.assertEqual(order.subscription_state, "4_paused")
        self.assertFalse(order.resume_date)
        self.assertFalse(order.pause_reason)
        self.assertIn("until it is resumed by hand", order.message_ids[0].body)
        with freeze_time("2026-02-05"):
            self.flush_tracking()
            order.with_user(self.user_salesman).action_resume()
            self.flush_tracking()
        self.assertEqual(order.subscription_state, "3_progress")
        self.assertFalse(order.pause_start_date)
        self.assertFalse(order.resume_date)
        # Paused 16 days (20 January to 4 February): the first period, not
        # invoiced yet, now starts 16 days later.
        self.assertEqual(order.next_invoice_date, date(2026, 1, 26))
        message = order.message_ids[0]
        self.assertIn("Subscription resumed by", message.body)
        self.assertIn("after 16 days of pause", message.body)
        self.assertIn("01/26/2026", message.body)
        self.assertEqual(
            set(message.tracking_value_ids.field_id.mapped("name")),
            {"subscription_state", "pause_start_date", "next_invoice_date"},
        )

    def test_resume_the_same_day_moves_nothing(self):
        with freeze_time("2026-01-10"):
            order = self._create_subscription()
            self._pause(order)
            order._action_resume()
        self.assertEqual(order.subscription_state, "3_progress")
        self.assertEqual(order.next_invoice_date, date(2026, 1, 10))
        self.assertIn("after 0 days of pause", order.message_ids[0].body)

    @freeze_time("2026-06-10")
    def test_bad_resume_dates(self):
        order = self._create_subscription()
        for bad in (date(2026, 6, 10), date(2026, 6, 1)):
            # The popup and the pause refuse it alike: one rule.
            with self.assertRaisesText("A pause resumes after today"):
                self._pause_with_wizard(order, bad)
            with self.assertRaisesText("A pause resumes after today"):
                self._pause(order, bad)
        with self.assertRaisesText("No resume date was given"):
            order._action_pause({})
        self.assertEqual(order.subscription_state, "3_progress")
        self.assertFalse(order.pause_start_date)

    @freeze_time("2026-06-10")
    def test_what_cannot_be_paused_or_resumed(self):
        running = self._create_subscription()
        quotation = self._create_subscription(confirm=False)
        closed = self._create_subscription()
        self._close(closed, self.reason)
        closing = self._create_subscription()
        self._close(closing, self.reason, date(2026, 6, 30))
        paused = self._create_subscription()
        self._pause(paused)
        cases = [
            (quotation, "still a quotation"),
            (closed, "already closed"),
            (closing, "its closing is scheduled on 06/30/2026: cancel the closing first"),
            (paused, "already paused"),
        ]
        for order, why in cases:
            # All or nothing: the running subscription is not paused either.
            with self.assertRaisesText(f"{order.name}: {why}"):
                self._pause(running + order)
            with self.assertRaisesText(why):
                (running + order).action_open_pause_wizard()
        self.assertEqual(running.subscription_state, "3_progress")
        self.assertEqual(closed.subscription_state, "6_churn")
        self.assertTrue(closing.is_closing)
        # Only paused subscriptions resume: a pause never reopens a churned one.
        for order in (running, closed, closing, quotation):
            with self.assertRaisesText(f"{order.name}: not paused"):
                (paused + order)._action_resume()
        self.assertEqual(paused.subscription_state, "4_paused")
        self.assertEqual(closed.subscription_state, "6_churn")

    def test_all_or_nothing_across_chunks(self):
        orders = self._create_subscription() + self._create_subscription()
        orders += self._create_subscription()
        closed = self._create_subscription()
        self._close(closed, self.reason)
        self.flush_tracking()
        messages = self.env["mail.message"].search_count([("model", "=", "sale.order")])
        with (
            patch(f"{CLOSING_MODULE}.CHUNK_SIZE", 2),
            self.assertRaisesText(f"{closed.name}: already closed"),
        ):
            self._pause(orders + closed)
        self.assertEqual(set(orders.mapped("subscription_state")), {"3_progress"})
        self.assertEqual(
            self.env["mail.message"].search_count([("model", "=", "sale.order")]), messages
        )
        with patch(f"{CLOSING_MODULE}.CHUNK_SIZE", 2):
            self._pause(orders)
            self.assertEqual(set(orders.mapped("subscription_state")), {"4_paused"})
            orders._action_resume()
        self.assertEqual(set(orders.mapped("subscription_state")), {"3_progress"})
        resumed = orders.message_ids.filtered(lambda m: "Subscription resumed by" in m.body)
        self.assertEqual(len(resumed), 3)

    def test_access_rights(self):
        order = self._create_subscription()
        with self.assertRaises(AccessError):
            self._pause(order.with_user(self.user_internal))
        self._pause(order)
        with self.assertRaises(AccessError):
            order.with_user(self.user_internal)._action_resume()
        self.assertEqual(order.subscription_state, "4_paused")

    # ------------------------------------------------------------------
    # closing and paused subscriptions
    # ------------------------------------------------------------------

    @freeze_time("2026-06-10")
    def test_close_a_paused_subscription_now(self):
        order = self._create_subscription()
        self._pause(order, date(2026, 8, 1))
        self.assertEqual(order._get_period_end_dates(), {order.id: date(2026, 6, 10)})
        with self.assertRaisesText("paused: it can only be closed now"):
            self._close(order, self.reason, date(2026, 6, 30))
        self.assertEqual(order.subscription_state, "4_paused")
        self.assertFalse(order.end_date)
        action = order.with_user(self.user_salesman).action_open_close_wizard()
        wizard = (
            self.env["sale.order.close"]
            .with_user(self.user_salesman)
            .with_context(**action["context"])
            .create({"close_reason_id": self.reason.id, "close_when": "end_of_period"})
        )
        wizard.action_close()
        self.assertEqual(order.subscription_state, "6_churn")
        self.assertEqual(order.end_date, date(2026, 6, 10))
        self.assertFalse(order.pause_start_date)
        self.assertFalse(order.resume_date)
        self.assertEqual(order.close_reason_id, self.reason)
        # The resume job leaves it closed; reopening does not pause it again.
        self._run_cron()
        self.assertEqual(order.subscription_state, "6_churn")
        order._action_reopen()
        self.assertEqual(order.subscription_state, "3_progress")
        self.assertFalse(order.pause_start_date)

    def test_close_a_paused_subscription_credits_the_days_paused(self):
        self.plan_month.close_refund = "prorated"
        with freeze_time("2026-01-10"):
            order = self._create_subscription()
            self._run_cron(INVOICING_CRON)  # 10 January - 9 February, 30.00
        with freeze_time("2026-01-20"):
            self._pause(order)
        with freeze_time("2026-01-25"):
            self._close(order, self.reason)
        credit_note = order.subscription_invoice_ids.filtered(
            lambda move: move.move_type == "out_refund"
        )
        self.assertEqual(credit_note.subscription_period_start, date(2026, 1, 20))
        self.assertEqual(credit_note.subscription_period_end, date(2026, 2, 9))
        # 21 days of 31 unused since the pause began.
        self.assertAlmostEqual(credit_note.amount_total, 20.32)

    def test_cancelled_and_reset_to_quotation_forgets_the_pause(self):
        order = self._create_subscription()
        self._pause(order, date(2099, 1, 1))
        order._action_cancel()
        order.action_draft()
        self.assertEqual(order.subscription_state, "1_draft")
        self.assertFalse(order.pause_start_date)
        self.assertFalse(order.resume_date)

    # ------------------------------------------------------------------
    # invoicing
    # ------------------------------------------------------------------

    def test_no_invoice_while_paused_then_shifted(self):
        with freeze_time("2026-01-10"):
            order = self._create_subscription()
            self._run_cron(INVOICING_CRON)
        self.assertEqual(self._periods(order), [(date(2026, 1, 10), date(2026, 2, 9))])
        self.assertEqual(order.next_invoice_date, date(2026, 2, 10))
        with freeze_time("2026-01-20"):
            self._pause(order, date(2026, 3, 20))
        for day in ("2026-02-10", "2026-03-01", "2026-03-19"):
            with freeze_time(day):
                self.assertFalse(order._is_invoice_due())
                self.assertFalse(order.order_line.qty_to_invoice)
                self.assertNotIn(
                    order,
                    self.env["sale.order"].search(self.env["sale.order"]._get_invoice_due_domain()),
                )
                self._run_cron(INVOICING_CRON)
                with self.assertRaisesText("nothing is invoiced while it is paused"):
                    order._create_invoices()
        self.assertEqual(len(self._invoices(order)), 1)
        # The resume job, on the resume date: paused 59 days (20 January to
        # 19 March), the next invoice moves from 10 February to 10 April.
        with freeze_time("2026-03-20"):
            self._run_cron()
            self.assertEqual(order.subscription_state, "3_progress")
            self.assertEqual(order.next_invoice_date, date(2026, 4, 10))
            self.assertIn("resumed on its resume date after 59 days", order.message_ids[0].body)
            self._run_cron(INVOICING_CRON)
        self.assertEqual(len(self._invoices(order)), 1)
        for day in ("2026-04-10", "2026-05-10"):
            with freeze_time(day):
                self._run_cron(INVOICING_CRON)
        # The customer paid 10-19 January and 20 March - 9 April with the
        # first invoice; the periods keep the day of the moved date.
        self.assertEqual(
            self._periods(order),
            [
                (date(2026, 1, 10), date(2026, 2, 9)),
                (date(2026, 4, 10), date(2026, 5, 9)),
                (date(2026, 5, 10), date(2026, 6, 9)),
            ],
        )
        self.assertEqual(order.next_invoice_date, date(2026, 6, 10))

    def test_late_resume_job_resumes_on_the_resume_date(self):
        with freeze_time("2026-01-10"):
            order = self._create_subscription()
            self._run_cron(INVOICING_CRON)
        with freeze_time("2026-01-20"):
            self._pause(order, date(2026, 3, 20))
        with freeze_time("2026-03-25"):
            self._run_cron()
        self.assertEqual(order.subscription_state, "3_progress")
        self.assertEqual(order.next_invoice_date, date(2026, 4, 10))
        # Resumed by hand after the resume date has passed: same thing.
        with freeze_time("2026-04-01"):
            self._pause(order, date(2026, 4, 15))
        with freeze_time("2026-04-20"):
            order._action_resume()
        self.assertEqual(order.next_invoice_date, date(2026, 4, 24))

    # ------------------------------------------------------------------
    # the resume job
    # ------------------------------------------------------------------

    def test_resume_job_twice(self):
        with freeze_time("2026-06-01"):
            due = self._create_subscription()
            self._pause(due, date(2026, 6, 10))
            later = self._create_subscription()
            self._pause(later, date(2026, 6, 11))
            by_hand = self._create_subscription()
            self._pause(by_hand)
        with freeze_time("2026-06-10"):
            self._run_cron()
            self.assertEqual(due.subscription_state, "3_progress")
            self.assertEqual(due.next_invoice_date, date(2026, 6, 10))
            self.assertIn("resumed on its resume date after 9 days", due.message_ids[0].body)
            self.assertEqual(later.subscription_state, "4_paused")
            self.assertEqual(by_hand.subscription_state, "4_paused")
            messages = self.env["mail.message"].search_count([("model", "=", "sale.order")])
            self._run_cron()
            self.assertEqual(
                self.env["mail.message"].search_count([("model", "=", "sale.order")]), messages
            )
            self.assertEqual(due.next_invoice_date, date(2026, 6, 10))
        with freeze_time("2026-06-11"):
            self._run_cron()
        self.assertEqual(later.subscription_state, "3_progress")
        self.assertEqual(by_hand.subscription_state, "4_paused")

    def test_resume_job_skips_orders_locked_by_another_worker(self):
        with freeze_time("2026-06-01"):
            orders = self._create_subscription() + self._create_subscription()
            self._pause(orders, date(2026, 6, 5))
        locked_elsewhere = orders[0]
        SaleOrder = type(self.env["sale.order"])
        original = SaleOrder._subscription_try_lock

        def try_lock(records, *args, **kwargs):
            return original(records - locked_elsewhere, *args, **kwargs)

        with freeze_time("2026-06-10"), patch.object(SaleOrder, "_subscription_try_lock", try_lock):
            self._run_cron()
        self.assertEqual(orders[1].subscription_state, "3_progress")
        self.assertEqual(locked_elsewhere.subscription_state, "4_paused")
        with freeze_time("2026-06-10"):
            self._run_cron()
        self.assertEqual(locked_elsewhere.subscription_state, "3_progress")
        # Each resumed once, both on their resume date.
        for order in orders:
            resumed = order.message_ids.filtered(lambda m: "Subscription resumed" in m.body)
            self.assertEqual(len(resumed), 1)
            self.assertEqual(order.next_invoice_date, date(2026, 6, 5))

    def test_resume_job_batches_report_progress(self):
        with freeze_time("2026-06-01"):
            orders = self.env["sale.order"]
            for _i in range(5):
                orders |= self._create_subscription()
            self._pause(orders, date(2026, 6, 2))
        cron = self.env.ref(RESUME_CRON)
        self.assertEqual(cron.code, "model._cron_resume_paused()")
        with freeze_time("2026-06-10"), self.enter_registry_test_mode():
            cron.sudo().code = "model._cron_resume_paused(batch_size=2)"
            cron.method_direct_trigger()
        self.env.invalidate_all()
        self.assertEqual(set(orders.mapped("subscription_state")), {"3_progress"})
        progress = self.env["ir.cron.progress"].search([("cron_id", "=", cron.id)])
        self.assertEqual(sum(progress.mapped("done")), 5)

    @freeze_time("2026-03-31 12:00:00")
    def test_resume_date_in_each_company_timezone(self):
        Company = self.env["res.company"]
        auckland = Company.create({"name": "Kiwi Co"})
        auckland.partner_id.tz = "Pacific/Auckland"  # already 1 April there
        los_angeles = Company.create({"name": "Pacific Co"})
        los_angeles.partner_id.tz = "America/Los_Angeles"  # still 31 March there
        self.plan_month.company_id = False
        orders = self.env["sale.order"]
        with freeze_time("2026-03-01"):
            for company in (auckland, los_angeles):
                orders |= self._create_subscription(company_id=company.id)
            self._pause(orders, date(2026, 4, 1))
        self.env.ref(RESUME_CRON).user_id.tz = False
        self._run_cron()
        self.assertEqual(orders.mapped("subscription_state"), ["3_progress", "4_paused"])
