import logging
import zlib
from datetime import date
from unittest.mock import patch

from freezegun import freeze_time
from psycopg2 import IntegrityError
from psycopg2.errors import SerializationFailure

from odoo import sql_db
from odoo.fields import Command, Datetime
from odoo.tests import Form, tagged
from odoo.tools import mute_logger

from .common import INVOICING_CRON, InvoicingCommon, SubscriptionPortalCommon

_logger = logging.getLogger(__name__)


@tagged("post_install", "-at_install")
class TestRecurringInvoicing(InvoicingCommon):
    def test_monthly_periods_keep_month_ends(self):
        with freeze_time("2026-01-31"):
            order = self._create_subscription()
            self.assertEqual(order.next_invoice_date, date(2026, 1, 31))
            self.assertEqual(order.invoice_status, "to invoice")
            self._run_cron()
            invoice = self._invoices(order)
            self.assertEqual(len(invoice), 1)
            self.assertEqual(invoice.state, "posted")
            self.assertEqual(invoice.amount_total, 30.0)
            self.assertEqual(invoice.partner_id, self.customer)
            self.assertIn(invoice, order.invoice_ids)  # the Invoices smart button
            self.assertIn("31 Jan 2026 – 27 Feb 2026", invoice.invoice_line_ids.name)
            self.assertEqual(order.next_invoice_date, date(2026, 2, 28))
            self.assertEqual(order.invoice_status, "invoiced")
            # Twice the same day: nothing more.
            self._run_cron()
            self.assertEqual(len(self._invoices(order)), 1)
        for day in ("2026-02-28", "2026-03-31"):
            with freeze_time(day):
                self._run_cron()
        self.assertEqual(
            self._periods(order),
            [
                (date(2026, 1, 31), date(2026, 2, 27)),
                (date(2026, 2, 28), date(2026, 3, 30)),
                (date(2026, 3, 31), date(2026, 4, 29)),
            ],
        )
        self.assertEqual(order.next_invoice_date, date(2026, 4, 30))
        message = order.message_ids.filtered(lambda m: "invoiced" in (m.body or ""))[:1]
        self.assertIn("31 Mar 2026 – 29 Apr 2026", message.body)
        self.assertEqual(message.tracking_value_ids.field_id.mapped("name"), ["next_invoice_date"])

    def test_cancelled_or_deleted_invoice_gives_its_period_back(self):
        self.plan_month.auto_post_invoices = False
        with freeze_time("2026-05-10"):
            order = self._create_subscription()
            first = order._create_invoices()
            self.assertEqual(order.next_invoice_date, date(2026, 6, 10))
            first.button_cancel()
            self.assertEqual(order.next_invoice_date, date(2026, 5, 10))
            second = order._create_invoices()  # the same period, again
            self.assertEqual(second.subscription_period_start, date(2026, 5, 10))
            second.unlink()
            self.assertEqual(order.next_invoice_date, date(2026, 5, 10))
            third = order._create_invoices()
        with freeze_time("2026-06-10"):
            fourth = order._create_invoices()
            self.assertEqual(fourth.subscription_period_start, date(2026, 6, 10))
            # Cancelling an older invoice does not move the date back.
            third.button_cancel()
        self.assertEqual(order.next_invoice_date, date(2026, 7, 10))

    def test_weekly_and_yearly_periods(self):
        with freeze_time("2026-03-02"):
            weekly = self._create_subscription(plan=self.plan_week)
        with freeze_time("2024-02-29"):
            yearly = self._create_subscription(plan=self.plan_year)
            self._run_cron()
        with freeze_time("2026-03-02"):
            self._run_cron()
        self.assertEqual(self._periods(weekly), [(date(2026, 3, 2), date(2026, 3, 15))])
        self.assertEqual(weekly.next_invoice_date, date(2026, 3, 16))
        # A yearly subscription is invoiced once a year; it missed 2025 and
        # 2026 here: the run catches up one invoice per period.
        self.assertEqual(
            self._periods(yearly),
            [
                (date(2024, 2, 29), date(2025, 2, 27)),
                (date(2025, 2, 28), date(2026, 2, 27)),
                (date(2026, 2, 28), date(2027, 2, 27)),
            ],
        )
        self.assertEqual(yearly.next_invoice_date, date(2027, 2, 28))

    def test_italian_period_label(self):
        self.env["res.lang"]._activate_lang("it_IT")
        self.customer.lang = "it_IT"
        with freeze_time("2026-12-01"):
            order = self._create_subscription()
            self._run_cron()
        self.assertIn("1 dic 2026 – 31 dic 2026", self._invoices(order).invoice_line_ids.name)

    def test_create_invoice_button_invoices_the_current_period_only(self):
        with freeze_time("2026-05-10"):
            order = self._create_subscription()
            setup_fee = self.env["product.product"].create(
                {
                    "name": "Setup fee",
                    "type": "service",
                    "list_price": 50.0,
                    "invoice_policy": "order",
                }
            )
            order.order_line = [
                Command.create({"product_id": setup_fee.id, "tax_ids": [Command.clear()]})
            ]
            wizard = (
                self.env["sale.advance.payment.inv"]
                .with_user(self.user_salesman)
                .with_context(active_model="sale.order", active_ids=order.ids)
                .create({})
            )
            wizard.create_invoices()
            invoice = self._invoices(order)
            self.assertEqual(len(invoice), 1)
            # The recurring line and the one-off setup fee, once.
            self.assertEqual(invoice.amount_total, 80.0)
            self.assertEqual(order.next_invoice_date, date(2026, 6, 10))
            with self.assertRaisesText("Nothing to invoice yet"):
                order._create_invoices()
            self.assertEqual(len(self._invoices(order)), 1)
        with freeze_time("2026-06-10"):
            self.assertEqual(order._create_invoices().amount_total, 30.0)

    def test_drafts_and_emails_per_plan(self):
        self.plan_year.auto_post_invoices = False
        with freeze_time("2026-05-10"):
            draft_order = self._create_subscription(plan=self.plan_year)
            mailed_order = self._create_subscription()
            self._run_cron()
        draft = self._invoices(draft_order)
        self.assertEqual(draft.state, "draft")
        self.assertFalse(draft.subscription_mail_to_send)
        invoice = self._invoices(mailed_order)
        self.assertEqual(invoice.subscription_mail_to_send, "invoice")
        self._run_cron("subscription_close.ir_cron_send_subscription_mails")
        self.assertFalse(invoice.subscription_mail_to_send)
        mail = self.env["mail.mail"].search(
            [("model", "=", "account.move"), ("res_id", "=", invoice.id)]
        )
        self.assertEqual(len(mail), 1)
        self.assertIn(self.customer, mail.recipient_ids)
        self.assertIn(invoice.name, mail.subject)
        # The way out is in every invoice email: the subscription's portal page.
        self.assertIn(mailed_order.get_portal_url().split("?")[0], mail.body_html)
        # Also when the invoice is sent by hand, as any invoice.
        invoice.message_post(
            body="Your invoice",
            partner_ids=self.customer.ids,
            subtype_xmlid="mail.mt_comment",
            email_layout_xmlid="mail.mail_notification_layout_with_responsible_signature",
        )
        sent_by_hand = self.env["mail.mail"].search(
            [("model", "=", "account.move"), ("res_id", "=", invoice.id)], order="id desc", limit=1
        )
        self.assertNotEqual(sent_by_hand, mail)
        self.assertIn(mailed_order.get_portal_url().split("?")[0], sent_by_hand.body_html)
        self.assertIn("Manage your subscription", sent_by_hand.body_html)

    def test_a_period_is_invoiced_once(self):
        with freeze_time("2026-05-10"):
            orders = self._create_subscription() + self._create_subscription()
        locked_elsewhere = orders[0]
        SaleOrder = type(self.env["sale.order"])
        original = SaleOrder._subscription_try_lock

        def try_lock(records, *args, **kwargs):
            return original(records - locked_elsewhere, *args, **kwargs)

        with freeze_time("2026-05-10"), patch.object(SaleOrder, "_subscription_try_lock", try_lock):
            self._run_cron()
        self.assertFalse(self._invoices(locked_elsewhere))
        self.assertEqual(len(self._invoices(orders[1])), 1)
        with freeze_time("2026-05-10"):
            self._run_cron()
            self._run_cron()
        self.assertEqual(len(self._invoices(locked_elsewhere)), 1)
        self.assertEqual(len(self._invoices(orders[1])), 1)
        # Behind the locks, the database refuses a second invoice of a
        # period, and of any day of it.
        invoice = self._invoices(orders[1])
        for start, end in (
            (date(2026, 5, 10), date(2026, 6, 9)),
            (date(2026, 5, 25), date(2026, 6, 24)),
            (date(2026, 4, 10), date(2026, 5, 10)),
        ):
            with mute_logger("odoo.sql_db"), self.assertRaises(IntegrityError) as caught:
                invoice.copy(
                    {
                        "subscription_id": orders[1].id,
                        "subscription_period_start": start,
                        "subscription_period_end": end,
                    }
                ).flush_recordset()
            self.assertIn("subscription_period_overlap", str(caught.exception))
        # The day after the period is free.
        invoice.copy(
            {
                "subscription_id": orders[1].id,
                "subscription_period_start": date(2026, 6, 10),
                "subscription_period_end": date(2026, 7, 9),
            }
        ).flush_recordset()

    def test_a_batch_in_conflict_is_done_again(self):
        """Another worker commits a change to a record the batch writes too
        (e.g. the rank of a customer whose first invoice both post): the
        batch is rolled back and done again, each period invoiced once."""
        with freeze_time("2026-05-10"):
            orders = self._create_subscription() + self._create_subscription()
        SaleOrder = type(self.env["sale.order"])
        original = SaleOrder._create_recurring_invoices
        calls = []

        def create_then_conflict(records):
            calls.append(records.ids)
            moves = original(records)
            if len(calls) == 1:
                moves.flush_recordset()  # written, then refused as at commit
                raise SerializationFailure("could not serialize access due to concurrent update")
            return moves

        with (
            freeze_time("2026-05-10"),
            patch.object(SaleOrder, "_create_recurring_invoices", create_then_conflict),
        ):
            self._run_cron()
        self.assertEqual(calls, [orders.ids, orders.ids])
        for order in orders:
            self.assertEqual(self._periods(order), [(date(2026, 5, 10), date(2026, 6, 9))])
            self.assertEqual(order.next_invoice_date, date(2026, 6, 10))
            self.assertEqual(
                len(order.message_ids.filtered(lambda m: "invoiced" in (m.body or ""))), 1
            )

    def test_one_process_invoices_at_a_time(self):
        """While another process runs the invoicing (it holds the job's
        advisory lock), a run invoices nothing and looks again a minute
        later; once it is free, the next run invoices."""
        with freeze_time("2026-05-10"):
            order = self._create_subscription()
        cron = self.env.ref(INVOICING_CRON)
        key = zlib.crc32(b"subscription_close.recurring_invoicing") - 2**31
        other = sql_db.db_connect(self.env.cr.dbname).cursor()
        try:
            other.execute("SELECT pg_advisory_lock(%s)", (key,))
            with freeze_time("2026-05-10 08:00:00"):
                self._run_cron()
                self.assertFalse(self._invoices(order))
                self.assertTrue(
                    self.env["ir.cron.trigger"].search_count(
                        [("cron_id", "=", cron.id), ("call_at", "=", "2026-05-10 08:01:00")]
                    )
                )
        finally:
            other.execute("SELECT pg_advisory_unlock(%s)", (key,))
            other.close()
        with freeze_time("2026-05-10 08:01:00"):
            self._run_cron()
        self.assertEqual(len(self._invoices(order)), 1)

    def test_one_broken_subscription_does_not_stop_the_others(self):
        # A product whose category has no income account, with no fallback
        # account on the sales journal nor the company: its invoice cannot be
        # saved.
        income = self.env["account.account"].search(
            [("account_type", "=", "income"), ("company_ids", "in", self.env.company.id)], limit=1
        )
        self.product_sub.property_account_income_id = income
        bare = self.env["product.category"].create({"name": "No accounts"})
        bare.property_account_income_categ_id = False
        broken_product = self.env["product.product"].create(
            {
                "name": "Misconfigured",
                "type": "service",
                "recurring_invoice": True,
                "list_price": 30.0,
                "categ_id": bare.id,
                "taxes_id": [Command.clear()],
            }
        )
        journal = self.env["account.journal"].search(
            [("type", "=", "sale"), ("company_id", "=", self.env.company.id)]
        )
        journal.default_account_id = False
        self.env.company.income_account_id = False
        with freeze_time("2026-05-10"):
            good = self.env["sale.order"]
            for _i in range(49):
                good |= self._create_subscription(user_id=self.user_salesman.id)
            broken = self._create_subscription(
                user_id=self.user_salesman.id,
                order_line=[Command.create({"product_id": broken_product.id})],
            )
            with mute_logger("odoo.sql_db"):
                self._run_cron()
        self.assertEqual(len(good.subscription_invoice_ids), 49)
        self.assertEqual(set(good.mapped("next_invoice_date")), {date(2026, 6, 10)})
        self.assertFalse(broken.subscription_invoice_ids)
        self.assertTrue(broken.invoice_to_check)
        self.assertEqual(broken.next_invoice_date, date(2026, 5, 10))
        self.assertIn("could not be invoiced", broken.message_ids[0].body)
        activity = broken.activity_ids
        self.assertEqual(len(activity), 1)
        self.assertEqual(activity.user_id, self.user_salesman)
        self.assertIn(broken, self.env["sale.order"].search([("invoice_to_check", "=", True)]))
        # Still broken at the next run: one activity, not two.
        with freeze_time("2026-05-11"), mute_logger("odoo.sql_db"):
            self._run_cron()
        self.assertEqual(len(broken.activity_ids), 1)
        # Fixed: the next run invoices it.
        bare.property_account_income_categ_id = income
        with freeze_time("2026-05-12"):
            self._run_cron()
        self.assertEqual(len(broken.subscription_invoice_ids), 1)
        self.assertFalse(broken.invoice_to_check)
        self.assertEqual(len(good.subscription_invoice_ids), 49)


@tagged("post_install", "-at_install")
class TestInvoicingAndClosing(InvoicingCommon):
    def test_churned_and_closing_are_not_invoiced(self):
        with freeze_time("2026-01-10"):
            churned = self._create_subscription()
            on_a_date = self._create_subscription()
            end_of_period = self._create_subscription()
            self._run_cron()  # the January periods
            self._close(churned, self.reason)
            self._close(on_a_date, self.reason, date(2026, 2, 5))
            self._close(
                end_of_period, self.reason, end_of_period._get_period_end_dates()[end_of_period.id]
            )
            self.assertEqual(end_of_period.end_date, date(2026, 2, 9))
            for order in churned + on_a_date + end_of_period:
                self.assertEqual(order.invoice_status, "invoiced")
        with freeze_time("2026-02-10"):
            self._run_cron()
            self._run_cron("subscription_close.ir_cron_close_expired")
        for order in churned + on_a_date + end_of_period:
            self.assertEqual(len(self._invoices(order)), 1, order.name)
            self.assertEqual(order.subscription_state, "6_churn")

    @freeze_time("2026-01-10")
    def test_closed_subscription_has_nothing_to_invoice(self):
        order = self._create_subscription()  # its first period is due today
        self.assertEqual(order.invoice_status, "to invoice")
        self._close(order, self.reason)
        self.env.flush_all()
        self.assertEqual(order.order_line.qty_to_invoice, 0.0)
        self.assertNotEqual(order.invoice_status, "to invoice")
        with self.assertRaisesText("only subscriptions in progress are invoiced"):
            order._create_invoices()
        self.assertFalse(order.invoice_ids)
        order._action_reopen()
        self.env.flush_all()
        self.assertEqual(order.invoice_status, "to invoice")

    def test_close_on_a_date_invoices_the_periods_that_start_before(self):
        with freeze_time("2026-01-10"):
            order = self._create_subscription()
            self._run_cron()
            self._close(order, self.reason, date(2026, 2, 20))
        with freeze_time("2026-02-10"):
            self._run_cron()  # the period of 10 Feb starts before 20 Feb
        with freeze_time("2026-03-10"):
            self._run_cron()
            self._run_cron("subscription_close.ir_cron_close_expired")
        self.assertEqual(len(self._invoices(order)), 2)
        self.assertEqual(order.subscription_state, "6_churn")

    def test_prorated_credit_note_on_immediate_close(self):
        self.plan_month.close_refund = "prorated"
        self.product_sub.list_price = 31.0
        with freeze_time("2026-12-01"):
            order = self._create_subscription()
            no_refund = self._create_subscription(plan=self.plan_year)
            self._run_cron()
        with freeze_time("2026-12-10"):
            self._close(order + no_refund, self.reason)
        credit_note = order.subscription_invoice_ids.filtered(
            lambda move: move.move_type == "out_refund"
        )
        self.assertEqual(len(credit_note), 1)
        self.assertEqual(credit_note.state, "draft")
        # 1-31 December invoiced 31.00; closed on the 10th: 21 unused days.
        self.assertEqual(credit_note.amount_total, 21.0)
        self.assertEqual(credit_note.reversed_entry_id, self._invoices(order))
        self.assertEqual(credit_note.subscription_period_start, date(2026, 12, 11))
        self.assertIn("11 Dec 2026 – 31 Dec 2026", credit_note.invoice_line_ids.name)
        note = order.message_ids.filtered(lambda m: "credit note" in (m.body or ""))
        self.assertEqual(len(note), 1)
        self.assertFalse(
            no_refund.subscription_invoice_ids.filtered(lambda m: m.move_type == "out_refund")
        )
        # A closing scheduled at the end of the period refunds nothing.
        with freeze_time("2026-12-01"):
            scheduled = self._create_subscription()
            self._run_cron()
            self._close(scheduled, self.reason, date(2026, 12, 31))
        with freeze_time("2027-01-01"):
            self._run_cron("subscription_close.ir_cron_close_expired")
        self.assertEqual(scheduled.subscription_state, "6_churn")
        self.assertFalse(
            scheduled.subscription_invoice_ids.filtered(lambda m: m.move_type == "out_refund")
        )

    def test_reopen_resumes_invoicing(self):
        with freeze_time("2026-01-01"):
            no_gap = self._create_subscription()
            gap = self._create_subscription()
            self._run_cron()
        with freeze_time("2026-01-15"):
            self._close(no_gap + gap, self.reason)
        with freeze_time("2026-04-10"):
            for order, invoice_gap in ((no_gap, False), (gap, True)):
                action = order.with_user(self.user_salesman).action_open_reopen_wizard()
                with Form(
                    self.env["sale.order.reopen"]
                    .with_user(self.user_salesman)
                    .with_context(**action["context"])
                ) as wizard:
                    self.assertEqual(wizard.gap_start, date(2026, 2, 1))
                    wizard.invoice_gap = invoice_gap
                wizard.record.action_reopen()
            self.assertEqual(no_gap.next_invoice_date, date(2026, 4, 10))
            self.assertEqual(gap.next_invoice_date, date(2026, 2, 1))
            self._run_cron()
        self.assertEqual(
            self._periods(no_gap),
            [(date(2026, 1, 1), date(2026, 1, 31)), (date(2026, 4, 10), date(2026, 5, 9))],
        )
        self.assertEqual(
            [start for start, _end in self._periods(gap)],
            [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1), date(2026, 4, 1)],
        )


@tagged("post_install", "-at_install")
class TestUnpaidInvoices(InvoicingCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.plan_month.write({"auto_close_days": 10, "send_overdue_reminder": True})
        cls.unpaid_reason = cls.env.ref("subscription_close.close_reason_unpaid")

    def test_automatic_closing(self):
        with freeze_time("2026-03-01"):
            paid, unpaid, partly, last_day = (self._create_subscription() for _i in range(4))
            self._run_cron()
            self._pay(self._invoices(paid)[0])
            self._pay(self._invoices(partly)[0], amount=10.0)
        for order in paid + unpaid + partly + last_day:
            self.assertEqual(self._invoices(order).invoice_date_due, date(2026, 3, 1))
        with freeze_time("2026-03-11"):
            # Ten days after the due date: still on time.
            self._run_cron("subscription_close.ir_cron_close_unpaid")
            self.assertEqual(
                set((paid + unpaid + partly + last_day).mapped("subscription_state")),
                {"3_progress"},
            )
            self._pay(self._invoices(last_day)[0])
        with freeze_time("2026-03-12"):
            self._run_cron("subscription_close.ir_cron_close_unpaid")
        self.assertEqual((unpaid + partly).mapped("subscription_state"), ["6_churn"] * 2)
        self.assertEqual((paid + last_day).mapped("subscription_state"), ["3_progress"] * 2)
        for order in unpaid + partly:
            invoice = self._invoices(order)
            self.assertEqual(order.close_reason_id, self.unpaid_reason)
            self.assertEqual(order.churn_type, "involuntary")
            self.assertIn(invoice.name, order.message_ids[0].body)
            # The invoice itself is left as it is.
            self.assertEqual(invoice.state, "posted")
            self.assertIn(invoice.payment_state, ("not_paid", "partial"))
        # Closed: never invoiced again, never closed twice.
        with freeze_time("2026-04-01"):
            self._run_cron()
            self._run_cron("subscription_close.ir_cron_close_unpaid")
        self.assertEqual(len(self._invoices(unpaid)), 1)
        self.assertEqual(len(self._invoices(paid)), 2)

    def test_unpaid_held_elsewhere_is_closed_a_minute_later(self):
        """A batch that changes meanwhile (serialization failure) or that
        another transaction holds is left to a run a minute later, the rest
        is closed now; the reminders queued before the batches are kept when
        a batch is rolled back."""
        with freeze_time("2026-03-01"):
            orders = self._create_subscription() + self._create_subscription()
            self._run_cron()
        self._run_cron("subscription_close.ir_cron_send_subscription_mails")
        held = orders[0]
        invoices = self._invoices(orders[0]) + self._invoices(orders[1])
        cron = self.env.ref("subscription_close.ir_cron_close_unpaid")
        SaleOrder = type(self.env["sale.order"])
        original = SaleOrder._subscription_try_lock

        def conflict(records, *args, **kwargs):
            raise SerializationFailure("could not serialize access due to concurrent update")

        def try_lock(records, *args, **kwargs):
            return original(records - held, *args, **kwargs)

        def triggers():
            return self.env["ir.cron.trigger"].search([("cron_id", "=", cron.id)]).mapped("call_at")

        self.env["ir.cron.trigger"].search([("cron_id", "=", cron.id)]).unlink()
        self.assertFalse(any(invoices.mapped("subscription_reminder_sent")))
        # Every attempt at the batch conflicts: nothing closed, the
        # reminders kept, tried again a minute later.
        with (
            freeze_time("2026-03-12 08:00:00"),
            patch.object(SaleOrder, "_subscription_try_lock", conflict),
        ):
            self._run_cron("subscription_close.ir_cron_close_unpaid")
        self.assertEqual(orders.mapped("subscription_state"), ["3_progress"] * 2)
        self.assertEqual(invoices.mapped("subscription_reminder_sent"), [True, True])
        self.assertEqual(invoices.mapped("subscription_mail_to_send"), ["overdue", "overdue"])
        self.assertEqual(triggers(), [Datetime.to_datetime("2026-03-12 08:01:00")])
        # One is held by another transaction: the other is closed now.
        with (
            freeze_time("2026-03-12 08:01:00"),
            patch.object(SaleOrder, "_subscription_try_lock", try_lock),
        ):
            self._run_cron("subscription_close.ir_cron_close_unpaid")
        self.assertEqual(orders[1].subscription_state, "6_churn")
        self.assertEqual(held.subscription_state, "3_progress")
        self.assertIn(Datetime.to_datetime("2026-03-12 08:02:00"), triggers())
        with freeze_time("2026-03-12 08:02:00"):
            self._run_cron("subscription_close.ir_cron_close_unpaid")
        self.assertEqual(held.subscription_state, "6_churn")
        for order in orders:
            self.assertEqual(order.close_reason_id, self.unpaid_reason)
            self.assertIn(self._invoices(order).name, order.message_ids[0].body)
            # Closed once: one change of status in its chatter.
            state_changes = order.message_ids.tracking_value_ids.filtered(
                lambda value: value.field_id.name == "subscription_state"
            )
            self.assertEqual(len(state_changes), 1)

    def test_overdue_reminder_once(self):
        with freeze_time("2026-03-01"):
            order = self._create_subscription()
            self._run_cron()
        invoice = self._invoices(order)
        self._run_cron("subscription_close.ir_cron_send_subscription_mails")
        with freeze_time("2026-03-03"):
            self._run_cron("subscription_close.ir_cron_close_unpaid")
            self._run_cron("subscription_close.ir_cron_send_subscription_mails")
            self._run_cron("subscription_close.ir_cron_close_unpaid")
            self._run_cron("subscription_close.ir_cron_send_subscription_mails")
        reminders = self.env["mail.mail"].search(
            [
                ("model", "=", "account.move"),
                ("res_id", "=", invoice.id),
                ("subject", "ilike", "overdue"),
            ]
        )
        self.assertEqual(len(reminders), 1)
        self.assertIn(order.get_portal_url().split("?")[0], reminders.body_html)
        self.assertTrue(invoice.subscription_reminder_sent)


@tagged("post_install", "-at_install")
class TestChurnFigures(InvoicingCommon):
    def test_lost_mrr_recurring_lines_company_currency_frozen(self):
        eur = self.env.ref("base.EUR")
        eur.active = True
        self.env["res.currency.rate"].create(
            [
                {"currency_id": eur.id, "name": "2026-01-01", "rate": 2.0},
                {"currency_id": eur.id, "name": "2026-06-01", "rate": 4.0},
            ]
        )
        pricelist = self.env["product.pricelist"].create({"name": "EUR", "currency_id": eur.id})
        one_off = self.env["product.product"].create(
            {"name": "Installation", "type": "service", "list_price": 100.0}
        )
        with freeze_time("2026-03-01"):
            in_euros = self._create_subscription(
                pricelist_id=pricelist.id,
                order_line=[
                    Command.create({"product_id": self.product_sub.id, "price_unit": 60.0}),
                    Command.create({"product_id": one_off.id, "price_unit": 100.0}),
                ],
            )
            yearly = self._create_subscription(plan=self.plan_year)  # 30 a year
            expired = self.env.ref("subscription_close.close_reason_expired")
            self._close(in_euros, self.reason)
            self._close(yearly, expired)
        self.assertEqual(in_euros.currency_id, eur)
        self.assertEqual(in_euros.recurring_monthly, 60.0)  # the one-off line is not recurring
        self.assertEqual(in_euros.churned_mrr, 30.0)  # 60 EUR at 2 EUR per USD on 1 March
        self.assertEqual(yearly.churned_mrr, 2.5)
        self.assertEqual(in_euros.churn_type, "voluntary")
        self.assertEqual(yearly.churn_type, "involuntary")
        # Frozen: later changes of the lines or of the rates do not move it.
        in_euros.order_line[0].price_unit = 600.0
        self.env.flush_all()
        self.assertEqual(in_euros.churned_mrr, 30.0)
        groups = self.env["sale.order"]._read_group(
            [("id", "in", (in_euros + yearly).ids)], ["churn_type"], ["churned_mrr:sum"]
        )
        self.assertEqual(dict(groups), {"voluntary": 30.0, "involuntary": 2.5})
        # Reopened, it is no longer lost.
        in_euros._action_reopen()
        self.assertEqual(in_euros.churned_mrr, 0.0)
        self.assertFalse(in_euros.churn_type)


@tagged("post_install", "-at_install")
class TestInvoicingPerformance(InvoicingCommon):
    def _due(self, count):
        with freeze_time("2026-05-10"):
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
            orders.action_confirm()
        self.plan_month.send_invoice_mail = False
        return orders

    def _cron_queries(self, orders):
        cron = self.env.ref(INVOICING_CRON)
        self.env.flush_all()
        with freeze_time("2026-05-10"), self.enter_registry_test_mode():
            before = self.cr.sql_log_count
            cron.method_direct_trigger()
            queries = self.cr.sql_log_count - before
        self.env.invalidate_all()
        self.assertEqual(len(orders.subscription_invoice_ids), len(orders))
        return queries

    def test_invoicing_query_count(self):
        self._cron_queries(self._due(3))  # warm the caches
        queries_10 = self._cron_queries(self._due(10))
        queries_50 = self._cron_queries(self._due(50))
        per_subscription = (queries_50 - queries_10) / 40
        _logger.info(
            "invoicing: %s queries for 10 due, %s for 50 (%.1f per subscription)",
            queries_10,
            queries_50,
            per_subscription,
        )
        # An invoice is a document of its own (its lines, its taxes, its
        # number from the journal's sequence, its posting): the cost grows
        # with the number of invoices, by a bounded amount (about 18 queries
        # here) that does not depend on N; the rest (search and lock the
        # batch, write the next dates, log the chatter) is per batch.
        self.assertLessEqual(per_subscription, 20)
        self.assertLessEqual(queries_10, 300)


@tagged("post_install", "-at_install")
class TestInvoicingPortal(SubscriptionPortalCommon):
    def test_portal_shows_next_invoice_and_invoices(self):
        with freeze_time("2026-05-10"):
            order = self._create_subscription()
            invoice = order._create_invoices()
            invoice.action_post()
            other = self._create_subscription()
            other_invoice = other._create_invoices()
            other_invoice.action_post()
            other.partner_id = self._create_portal_customer("Someone Else", "sc_else")[0]
            self._login()
            page = self.url_open(order.get_portal_url()).text
        self.assertIn('id="subscription_invoices"', page)
        self.assertIn(invoice.name, page)
        self.assertIn(invoice.get_portal_url().split("?")[0], page)
        self.assertNotIn(other_invoice.name, page)
        self.assertIn('id="subscription_next_invoice"', page)
        self.assertIn("06/10/2026", page)
        self.assertIn("30.00", page)
        # Closed: no next invoice any more, the invoices stay listed.
        self._close(order, self.env.ref("subscription_close.close_reason_too_expensive"))
        page = self.url_open(order.get_portal_url()).text
        self.assertNotIn('id="subscription_next_invoice"', page)
        self.assertIn(invoice.name, page)
