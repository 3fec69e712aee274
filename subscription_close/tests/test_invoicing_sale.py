"""Billing an accountant can trust: every period once, dated when it is
issued, through sale's own invoicing and with sale's own figures right."""

from datetime import date
from unittest.mock import patch

from freezegun import freeze_time

from odoo.fields import Command
from odoo.tests import Form, tagged
from odoo.tools.safe_eval import safe_eval

from .common import INVOICING_CRON, InvoicingCommon

OPEN_CRON = "subscription_close.ir_cron_open_due_periods"
UNPAID_CRON = "subscription_close.ir_cron_close_unpaid"


@tagged("post_install", "-at_install")
class TestPeriodsAreFacts(InvoicingCommon):
    def test_start_date_and_plan_are_facts_once_invoiced(self):
        with freeze_time("2026-01-10"):
            order = self._create_subscription()
            # Not invoiced yet: the first period follows the start date.
            order.start_date = date(2026, 1, 12)
            self.assertEqual(order.next_invoice_date, date(2026, 1, 12))
            order.start_date = date(2026, 1, 10)
            self.assertEqual(order.next_invoice_date, date(2026, 1, 10))
            self.assertFalse(order.subscription_invoiced)
            self._run_cron()
        for day in ("2026-02-10", "2026-03-10", "2026-04-10"):
            with freeze_time(day):
                self._run_cron()
        self.assertEqual(len(self._invoices(order)), 4)
        self.assertTrue(order.subscription_invoiced)
        # The start date, the plan and the periods billed no longer move,
        # through the form (read-only) or the ORM (a clear error).
        arch = order.get_views([(False, "form")])["views"]["form"]["arch"]
        self.assertIn("readonly=\"state == 'cancel' or subscription_invoiced\"", arch)
        with self.assertRaisesText("the start date"):
            order.start_date = date(2026, 1, 15)
        with self.assertRaisesText("the recurring plan"):
            order.plan_id = self.plan_year
        with self.assertRaisesText("before the end of the periods already invoiced"):
            order.next_invoice_date = date(2026, 4, 15)
        self.assertEqual(order.start_date, date(2026, 1, 10))
        self.assertEqual(order.plan_id, self.plan_month)
        self.assertEqual(order.next_invoice_date, date(2026, 5, 10))
        with freeze_time("2026-04-20"):
            self._run_cron()
        self.assertEqual(
            [start for start, _end in self._periods(order)],
            [date(2026, 1, 10), date(2026, 2, 10), date(2026, 3, 10), date(2026, 4, 10)],
        )
        # Moving on is allowed (a period given for free).
        with freeze_time("2026-04-20"):
            order.next_invoice_date = date(2026, 6, 10)
        self.assertFalse(order.invoice_due)

    def test_overlapping_period_refused_with_its_invoice_named(self):
        self.plan_month.auto_post_invoices = False
        with freeze_time("2026-05-10"):
            order = self._create_subscription()
            first = order._create_invoices()
            # An accountant moves the next period back by an unguarded path:
            # the invoicing names the invoice that already bills those days.
            self.env.flush_all()
            order.env.cr.execute(
                "UPDATE sale_order SET next_invoice_date = '2026-06-01', invoice_due = TRUE "
                "WHERE id = %s",
                [order.id],
            )
            order.invalidate_recordset()
            with self.assertRaisesText(first.display_name):
                order._create_invoices()
        self.assertEqual(self._invoices(order), first)


@tagged("post_install", "-at_install")
class TestIssuedInvoices(InvoicingCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.customer.property_payment_term_id = cls.env.ref("account.account_payment_term_30days")
        cls.plan_month.auto_close_days = 15

    def test_catch_up_is_dated_today_and_never_born_overdue(self):
        with freeze_time("2026-01-10"):
            order = self._create_subscription()
            self._run_cron()
            self._pay(self._invoices(order))
        with freeze_time("2026-01-20"):
            self._close(order, self.reason)
        with freeze_time("2026-04-10"):
            order._action_reopen(invoice_gap=True)
            self._run_cron()
            self._run_cron(UNPAID_CRON)
        catch_up = self._invoices(order)[1:]
        self.assertEqual(
            [move.subscription_period_start for move in catch_up],
            [date(2026, 2, 10), date(2026, 3, 10), date(2026, 4, 10)],
        )
        # Dated the day they are issued, due 30 days later: the customer is
        # not overdue the day the company bills its own delay.
        self.assertEqual(set(catch_up.mapped("invoice_date")), {date(2026, 4, 10)})
        self.assertEqual(set(catch_up.mapped("invoice_date_due")), {date(2026, 5, 10)})
        self.assertEqual(set(catch_up.mapped("state")), {"posted"})
        self.assertEqual(order.subscription_state, "3_progress")
        # The period stays in each line's label; the chatter names the
        # invoice by its number.
        self.assertIn("10 Feb 2026 – 9 Mar 2026", catch_up[0].invoice_line_ids.name)
        self.assertTrue(
            order.message_ids.filtered(
                lambda m: (
                    "Period 10 Feb 2026 – 9 Mar 2026 invoiced" in (m.body or "")
                    and catch_up[0].name in m.body
                )
            )
        )
        # Automatic Closing counts from the real due date: 15 days after it.
        with freeze_time("2026-05-25"):
            self._run_cron(UNPAID_CRON)
        self.assertEqual(order.subscription_state, "3_progress")
        with freeze_time("2026-05-26"):
            self._run_cron(UNPAID_CRON)
        self.assertEqual(order.subscription_state, "6_churn")

    def test_draft_posted_late_is_dated_when_posted(self):
        self.plan_month.auto_post_invoices = False
        with freeze_time("2026-03-01"):
            order = self._create_subscription()
            self._run_cron()
        draft = self._invoices(order)
        self.assertEqual(draft.state, "draft")
        self.assertFalse(draft.invoice_date)
        with freeze_time("2026-03-20"):
            draft.action_post()
            self._run_cron(UNPAID_CRON)
        self.assertEqual(draft.invoice_date, date(2026, 3, 20))
        self.assertEqual(draft.invoice_date_due, date(2026, 4, 19))
        self.assertEqual(order.subscription_state, "3_progress")

    def test_a_locked_period_is_invoiced_today_until_today_is_locked(self):
        """Locked periods: the invoice of a period that began in a locked
        month is dated today, after the lock, and posted; only a lock date
        reaching today stops the invoicing (the subscription goes to check,
        and is retried at the next run)."""
        with freeze_time("2026-01-10"):
            order = self._create_subscription()
            self._run_cron()
        self.env.company.fiscalyear_lock_date = date(2026, 3, 31)
        with freeze_time("2026-04-10"):
            self._run_cron()  # 10 Feb, 10 Mar (locked months) and 10 Apr
        invoices = self._invoices(order)
        self.assertEqual(len(invoices), 4)
        self.assertEqual(set(invoices[1:].mapped("invoice_date")), {date(2026, 4, 10)})
        self.assertEqual(set(invoices[1:].mapped("date")), {date(2026, 4, 10)})
        self.assertEqual(set(invoices.mapped("state")), {"posted"})
        self.env.company.fiscalyear_lock_date = date(2026, 5, 31)
        with freeze_time("2026-05-10"):
            self._run_cron()
        self.assertEqual(len(self._invoices(order)), 4)
        self.assertTrue(order.invoice_to_check)
        self.assertIn("Lock Date", order.message_ids[0].body)
        # Still due for sale: under Orders to Invoice until it is billed.
        self.assertEqual(order.invoice_status, "to invoice")
        self.env.company.fiscalyear_lock_date = date(2026, 5, 10)
        with freeze_time("2026-05-11"):
            self._run_cron()
        self.assertEqual(len(self._invoices(order)), 5)
        self.assertEqual(self._invoices(order)[-1].invoice_date, date(2026, 5, 11))
        self.assertFalse(order.invoice_to_check)


@tagged("post_install", "-at_install")
class TestBillingRights(InvoicingCommon):
    def test_salesperson_create_invoice_leaves_a_draft(self):
        with freeze_time("2026-05-10"):
            order = self._create_subscription(user_id=self.user_salesman.id)
            ordinary = self.env["sale.order"].create(
                {
                    "partner_id": self.customer.id,
                    "order_line": [Command.create({"product_id": self.product.id})],
                }
            )
            ordinary.action_confirm()
            for sale_order in order + ordinary:
                wizard = (
                    self.env["sale.advance.payment.inv"]
                    .with_user(self.user_salesman)
                    .with_context(active_model="sale.order", active_ids=sale_order.ids)
                    .create({})
                )
                wizard.create_invoices()
        invoice = self._invoices(order)
        self.assertEqual(invoice.state, "draft")  # exactly as on an ordinary order
        self.assertEqual(ordinary.invoice_ids.state, "draft")
        self.assertFalse(invoice.invoice_date)
        self.assertEqual(invoice.subscription_period_start, date(2026, 5, 10))
        self.assertEqual(order.next_invoice_date, date(2026, 6, 10))

    def test_job_user_without_billing_rights_leaves_drafts(self):
        cron = self.env.ref(INVOICING_CRON)
        cron.user_id = self.user_salesman
        with freeze_time("2026-05-10"):
            order = self._create_subscription(user_id=self.user_salesman.id)
            self._run_cron()
        invoice = self._invoices(order)
        self.assertEqual(invoice.state, "draft")
        self.assertTrue(
            order.message_ids.filtered(lambda m: "may not post invoices" in (m.body or ""))
        )
        self.assertFalse(invoice.subscription_mail_to_send)
        # The job's own user (a billing user) posts.
        cron.user_id = self.env.ref("base.user_root")
        with freeze_time("2026-06-10"):
            self._run_cron()
        self.assertEqual(self._invoices(order)[-1].state, "posted")


@tagged("post_install", "-at_install")
class TestThroughSale(InvoicingCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_fee = cls.env["product.product"].create(
            {
                "name": "Setup fee",
                "type": "service",
                "list_price": 50.0,
                "invoice_policy": "order",
                "taxes_id": [Command.clear()],
            }
        )

    def test_down_payments_are_refused(self):
        with freeze_time("2026-05-10"):
            order = self._create_subscription()
            wizard = (
                self.env["sale.advance.payment.inv"]
                .with_user(self.user_salesman)
                .with_context(active_model="sale.order", active_ids=order.ids)
                .create({"advance_payment_method": "percentage", "amount": 50})
            )
            self.assertTrue(wizard.has_subscription)
            with self.assertRaisesText("Down payments are not available on subscriptions"):
                wizard.create_invoices()
        self.assertFalse(order.order_line.filtered("is_downpayment"))
        self.assertFalse(order.invoice_ids)
        # The first period is then invoiced in full.
        with freeze_time("2026-05-10"):
            self._run_cron()
        self.assertEqual(self._invoices(order).amount_total, 30.0)

    def test_sections_and_notes_reach_the_invoice(self):
        with freeze_time("2026-05-10"):
            order = self._create_subscription(
                order_line=[
                    Command.create({"display_type": "line_section", "name": "Support"}),
                    Command.create({"product_id": self.product_sub.id}),
                    Command.create({"display_type": "line_note", "name": "Phone 9-17"}),
                    Command.create({"display_type": "line_section", "name": "Start"}),
                    Command.create({"product_id": self.setup_fee.id}),
                ]
            )
            self._run_cron()
        with freeze_time("2026-06-10"):
            self._run_cron()
        first, second = self._invoices(order)
        self.assertEqual(
            [(line.display_type, line.name.split("\n")[0]) for line in first.invoice_line_ids],
            [
                ("line_section", "Support"),
                ("product", "Support subscription"),
                ("line_note", "Phone 9-17"),
                ("line_section", "Start"),
                ("product", "Setup fee"),
            ],
        )
        self.assertEqual(first.amount_total, 80.0)
        # The one-off line once; its section with it.
        self.assertEqual(
            [(line.display_type, line.name.split("\n")[0]) for line in second.invoice_line_ids],
            [
                ("line_section", "Support"),
                ("product", "Support subscription"),
                ("line_note", "Phone 9-17"),
            ],
        )
        self.assertEqual(second.amount_total, 30.0)
        self.assertIn("10 Jun 2026 – 9 Jul 2026", second.invoice_line_ids[1].name)
        # Each invoice names its order, as sale does; no second "created".
        self.assertIn(order.name, second.message_ids[-1].body)

    def test_taxes_fiscal_position_and_later_tax_changes(self):
        Tax = self.env["account.tax"]
        vat_10 = Tax.create({"name": "VAT 10%", "amount": 10.0, "type_tax_use": "sale"})
        vat_22_incl = Tax.create(
            {
                "name": "VAT 22% incl.",
                "amount": 22.0,
                "type_tax_use": "sale",
                "price_include_override": "tax_included",
            }
        )
        export = self.env["account.fiscal.position"].create({"name": "Export"})
        vat_0 = Tax.create(
            {
                "name": "VAT 0% export",
                "amount": 0.0,
                "type_tax_use": "sale",
                "fiscal_position_ids": [Command.set(export.ids)],
                "original_tax_ids": [Command.set(vat_10.ids)],
            }
        )
        hosting = self.env["product.product"].create(
            {
                "name": "Hosting",
                "type": "service",
                "recurring_invoice": True,
                "list_price": 122.0,
                "taxes_id": [Command.set(vat_22_incl.ids)],
            }
        )
        self.product_sub.write({"list_price": 100.0, "taxes_id": [Command.set(vat_10.ids)]})
        lines = [
            Command.create({"product_id": self.product_sub.id}),
            Command.create({"product_id": hosting.id}),
        ]
        with freeze_time("2026-05-10"):
            domestic = self._create_subscription(order_line=lines)
            abroad = self._create_subscription(order_line=lines, fiscal_position_id=export.id)
            self._run_cron()
        invoice = self._invoices(domestic)
        # 100 + 10% and 122 with 22% included: 200 untaxed, 32 of taxes.
        self.assertEqual(invoice.amount_untaxed, 200.0)
        self.assertEqual(invoice.amount_tax, 32.0)
        self.assertEqual(invoice.amount_total, 232.0)
        self.assertEqual(invoice.invoice_line_ids.tax_ids, vat_10 + vat_22_incl)
        foreign = self._invoices(abroad)
        self.assertEqual(foreign.fiscal_position_id, export)
        self.assertEqual(foreign.invoice_line_ids.tax_ids, vat_0 + vat_22_incl)
        self.assertEqual(foreign.amount_total, 222.0)
        # The rate changes: later periods keep the subscription's taxes (the
        # price the customer agreed) until the salesperson updates them.
        vat_12 = Tax.create({"name": "VAT 12%", "amount": 12.0, "type_tax_use": "sale"})
        self.product_sub.taxes_id = vat_12
        with freeze_time("2026-06-10"):
            self._run_cron()
        self.assertEqual(self._invoices(domestic)[-1].amount_tax, 32.0)
        domestic.action_update_taxes()
        with freeze_time("2026-07-10"):
            self._run_cron()
        self.assertEqual(self._invoices(domestic)[-1].amount_tax, 34.0)

    def test_one_definition_of_a_recurring_line(self):
        """An override of ``_get_recurring_lines`` changes the MRR, what is
        billed each period and the portal's next amount alike."""
        options = self.env["product.product"].create(
            {
                "name": "Options",
                "type": "service",
                "recurring_invoice": True,
                "list_price": 10.0,
                "taxes_id": [Command.clear()],
            }
        )
        SaleOrder = type(self.env["sale.order"])
        original = SaleOrder._get_recurring_lines

        def without_options(order):
            return original(order).filtered(lambda line: line.product_id != options)

        with (
            freeze_time("2026-05-10"),
            patch.object(SaleOrder, "_get_recurring_lines", without_options),
        ):
            order = self._create_subscription(
                order_line=[
                    Command.create({"product_id": self.product_sub.id}),
                    Command.create({"product_id": options.id}),
                ]
            )
            order.invalidate_recordset(["recurring_monthly", "next_invoice_amount"])
            order.order_line.invalidate_recordset()
            self.assertEqual(order.recurring_monthly, 30.0)
            self.assertEqual(order.next_invoice_amount, 30.0)
            self._run_cron()
            # Options is then an ordinary one-off line: billed once, here.
            self.assertEqual(self._invoices(order).amount_total, 40.0)
        with (
            freeze_time("2026-06-10"),
            patch.object(SaleOrder, "_get_recurring_lines", without_options),
        ):
            self._run_cron()
            self.assertEqual(self._invoices(order)[-1].amount_total, 30.0)


@tagged("post_install", "-at_install")
class TestSaleFigures(InvoicingCommon):
    def _orders_to_invoice(self):
        return self.env["sale.order"].search([("invoice_status", "=", "to invoice")])

    def test_to_invoice_on_the_due_day_and_after_three_periods(self):
        with freeze_time("2026-01-10"):
            order = self._create_subscription()
            line = order.order_line
            # The first period is due on the start date.
            self.assertEqual(order.invoice_status, "to invoice")
            self.assertIn(order, self._orders_to_invoice())
            self.assertEqual(line.qty_to_invoice, 1.0)
            self.assertEqual(line.untaxed_amount_to_invoice, 30.0)
            self.assertEqual(order.amount_to_invoice, 30.0)
            self._run_cron()
        self.assertEqual(order.invoice_status, "invoiced")
        self.assertEqual(line.qty_invoiced, 1.0)
        self.assertEqual(line.qty_to_invoice, 0.0)
        self.assertEqual(line.untaxed_amount_to_invoice, 0.0)
        # The day the next period begins, within the hour: to invoice again,
        # Create Invoice shown, under Orders to Invoice.
        with freeze_time("2026-02-10 00:30:00"):
            self._run_cron(OPEN_CRON)
            self.assertTrue(order.invoice_due)
            self.assertEqual(order.invoice_status, "to invoice")
            self.assertIn(order, self._orders_to_invoice())
            self.assertEqual(line.qty_invoiced, 0.0)
            self.assertEqual(line.qty_to_invoice, 1.0)
            self.assertEqual(line.untaxed_amount_to_invoice, 30.0)
            self.assertEqual(order.amount_to_invoice, 30.0)
            arch = order.get_views([(False, "form")])["views"]["form"]["arch"]
            self.assertIn("invoice_status != 'to invoice'", arch)  # sale's button
            order.with_user(self.user_salesman)._create_invoices().action_post()
        with freeze_time("2026-03-10"):
            self._run_cron()
        # After three periods: nothing to invoice, never negative; what was
        # invoiced over the three stays as sale counts it.
        self.assertEqual(order.invoice_status, "invoiced")
        self.assertEqual(line.qty_invoiced, 1.0)
        self.assertEqual(line.qty_to_invoice, 0.0)
        self.assertEqual(line.untaxed_amount_to_invoice, 0.0)
        self.assertEqual(line.amount_to_invoice, 0.0)
        self.assertEqual(order.amount_to_invoice, 0.0)
        self.assertEqual(line.untaxed_amount_invoiced, 90.0)
        self.assertEqual(order.amount_invoiced, 90.0)
        report = self.env["sale.report"].search(
            [("order_reference", "=", f"sale.order,{order.id}")]
        )
        self.assertEqual(report.untaxed_amount_to_invoice, 0.0)
        self.assertEqual(report.qty_to_invoice, 0.0)
        self.assertNotIn(order, self._orders_to_invoice())

    def test_hourly_opening_skips_what_closes_before(self):
        with freeze_time("2026-01-10"):
            closing = self._create_subscription()
            running = self._create_subscription()
            self._run_cron()
            self._close(closing, self.reason, date(2026, 2, 5))
        with freeze_time("2026-02-10"):
            self._run_cron(OPEN_CRON)
            self._run_cron(OPEN_CRON)  # nothing more, no endless loop
        self.assertTrue(running.invoice_due)
        self.assertFalse(closing.invoice_due)
        self.assertEqual(closing.invoice_status, "invoiced")

    def test_prorated_credit_note_keeps_the_invoiced_quantity(self):
        self.plan_month.close_refund = "prorated"
        self.product_sub.list_price = 31.0
        with freeze_time("2026-12-01"):
            order = self._create_subscription()
            self._run_cron()
        with freeze_time("2026-12-10"):
            self._close(order, self.reason)
        line = order.order_line
        credit_note = order.subscription_invoice_ids.filtered(
            lambda move: move.move_type == "out_refund"
        )
        self.assertEqual(credit_note.amount_total, 21.0)
        self.assertEqual(credit_note.invoice_line_ids.sale_line_ids, line)
        # The unused fraction is credited; the period stays invoiced.
        self.assertEqual(line.qty_invoiced, 1.0)
        self.assertEqual(line.qty_to_invoice, 0.0)
        self.assertEqual(line.untaxed_amount_to_invoice, 0.0)
        self.assertNotEqual(order.invoice_status, "to invoice")
        # Reopened: the draft credit note is cancelled and named.
        with freeze_time("2026-12-15"):
            order._action_reopen()
        self.assertEqual(credit_note.state, "cancel")
        self.flush_tracking()
        reopen_messages = order.message_ids.filtered(lambda m: "reopened" in (m.body or ""))
        self.assertEqual(len(reopen_messages), 1)
        self.assertIn(credit_note.display_name, reopen_messages.body)

    def test_late_reopen_is_one_message(self):
        with freeze_time("2026-01-10"):
            order = self._create_subscription()
            self._run_cron()
        with freeze_time("2026-01-20"):
            self._close(order, self.reason)
        self.flush_tracking()
        before = order.message_ids
        with freeze_time("2026-04-10"):
            action = order.with_user(self.user_salesman).action_open_reopen_wizard()
            with Form(
                self.env["sale.order.reopen"]
                .with_user(self.user_salesman)
                .with_context(**action["context"])
            ) as wizard:
                wizard.invoice_gap = False
            wizard.record.action_reopen()
            self.flush_tracking()
        new = order.message_ids - before
        self.assertEqual(len(new), 1)
        self.assertEqual(
            set(new.tracking_value_ids.field_id.mapped("name")),
            {"subscription_state", "close_reason_id", "end_date", "next_invoice_date"},
        )
        self.assertEqual(order.next_invoice_date, date(2026, 4, 10))
        self.assertTrue(order.invoice_due)

    def test_churn_pivot_sums_the_lost_mrr_frozen_in_company_currency(self):
        eur = self.env.ref("base.EUR")
        eur.active = True
        self.env["res.currency.rate"].create(
            {"currency_id": eur.id, "name": "2026-01-01", "rate": 2.0}
        )
        pricelist = self.env["product.pricelist"].create({"name": "EUR", "currency_id": eur.id})
        with freeze_time("2026-03-01"):
            order = self._create_subscription(
                pricelist_id=pricelist.id,
                order_line=[Command.create({"product_id": self.product_sub.id, "price_unit": 60})],
            )
            self._close(order, self.reason)
            self.env.flush_all()  # the closing's transaction ends
        order.order_line.price_unit = 600.0  # after the closing: not lost
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "subscription_close.sale_subscription_churn_action"
        )
        measures = safe_eval(action["context"], {"uid": self.env.uid})["pivot_measures"]
        self.assertEqual(measures, ["__count", "churned_mrr"])
        reason_measures = self.reason.action_open_subscriptions()["context"]["pivot_measures"]
        self.assertEqual(reason_measures, measures)
        groups = self.env["sale.order"]._read_group(
            [("id", "=", order.id)], ["close_reason_id"], [f"{m}:sum" for m in measures[1:]]
        )
        # 60 EUR a month at 2 EUR per USD on the day it closed.
        self.assertEqual(groups, [(self.reason, 30.0)])
        self.assertEqual(order.recurring_monthly, 600.0)  # live, in euros: not the figure
