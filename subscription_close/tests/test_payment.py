"""Card payments: the saved card of a subscription is charged each period,
a declined card is retried and reminded, and the subscription closes only
when the invoice stays unpaid past the grace period. The demo provider's
tokens end every charge in the state they were made with."""

from datetime import date
from unittest.mock import patch

from freezegun import freeze_time

from odoo import Command
from odoo.exceptions import ValidationError
from odoo.tests import tagged
from odoo.tests.common import JsonRpcException
from odoo.tools import mute_logger
from odoo.tools.safe_eval import safe_eval

from .common import InvoicingCommon, SubscriptionPortalCommon

CHARGE_CRON = "subscription_close.ir_cron_charge_subscriptions"
MAILS_CRON = "subscription_close.ir_cron_send_subscription_mails"


class CardCommon(InvoicingCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.provider = cls.env.ref("payment.payment_provider_demo")
        cls.provider.write({"state": "test", "allow_tokenization": True})
        cls.payment_method = cls.env.ref("payment_demo.payment_method_demo")
        cls.tax_10 = cls.env["account.tax"].create(
            {"name": "VAT 10%", "amount": 10.0, "type_tax_use": "sale"}
        )
        cls.product_sub.write({"list_price": 100.0, "taxes_id": [Command.set(cls.tax_10.ids)]})
        cls.plan_month.write({"payment_retry_days": "1,3,7,14", "payment_grace_days": 21})

    @classmethod
    def _create_card(cls, state="done", partner=None, **values):
        return cls.env["payment.token"].create(
            {
                "provider_id": cls.provider.id,
                "payment_method_id": cls.payment_method.id,
                "payment_details": "4242",
                "partner_id": (partner or cls.customer).id,
                "provider_ref": f"demo-{state}",
                "demo_simulated_state": state,
                **values,
            }
        )

    def _card_subscription(self, state="done", **values):
        order = self._create_subscription(**values)
        order.payment_token_id = self._create_card(state, partner=order.partner_id)
        self.flush_tracking()  # the transaction that set the card ends
        return order

    def _bill_and_charge(self):
        """What a day of the jobs does: invoice what is due, charge the cards."""
        self._run_cron()
        self._run_cron(CHARGE_CRON)

    def _charges(self, order):
        return (
            self.env["payment.transaction"]
            .sudo()
            .search([("subscription_id", "=", order.id)], order="id")
        )


@tagged("post_install", "-at_install")
class TestCardCharges(CardCommon):
    def test_done_charge_pays_and_reconciles_once(self):
        with freeze_time("2026-05-10"):
            order = self._card_subscription("done")
            self._bill_and_charge()
            invoice = self._invoices(order)
            self.assertEqual(invoice.amount_total, 110.0)  # 100 + 10% VAT
            charge = self._charges(order)
            self.assertEqual(len(charge), 1)
            self.assertEqual(charge.state, "done")
            self.assertEqual(charge.amount, 110.0)
            self.assertEqual(charge.invoice_ids, invoice)
            self.assertEqual(charge.token_id, order.payment_token_id)
            self.assertEqual(charge.operation, "offline")
            self.assertIn(invoice.payment_state, ("paid", "in_payment"))
            self.assertIn(charge.payment_id.state, ("in_process", "paid"))
            self.assertEqual(charge.payment_id.amount, 110.0)
            # A second run, the same day: nothing charged again.
            self._bill_and_charge()
            self.assertEqual(self._charges(order), charge)
        with freeze_time("2026-06-10"):
            self._bill_and_charge()
        self.assertEqual(len(self._charges(order)), 2)
        self.assertEqual(len(self._invoices(order)), 2)
        self.assertLessEqual(
            set(self._invoices(order).mapped("payment_state")), {"paid", "in_payment"}
        )

    def test_payment_post_processing_job_leaves_charges_in_flight_alone(self):
        """Payment's own job post-processes, from any process, every
        transaction not post-processed: the charges the job committed before
        asking the provider are not among them."""
        Transaction = type(self.env["payment.transaction"])
        charge_with_token = Transaction._charge_with_token
        seen = []

        def charge(tx):
            seen.append(tx.search([("is_post_processed", "=", False)]) & tx)
            return charge_with_token(tx)

        with freeze_time("2026-05-10"):
            order = self._card_subscription("done")
            with patch.object(Transaction, "_charge_with_token", charge):
                self._bill_and_charge()
        self.assertTrue(seen)
        self.assertFalse(any(seen))
        charge_tx = self._charges(order)
        self.assertEqual((charge_tx.state, charge_tx.is_post_processed), ("done", True))
        self.assertIn(self._invoices(order).payment_state, ("paid", "in_payment"))

    def test_a_batch_of_cards_each_charged_once(self):
        with freeze_time("2026-05-10"):
            orders = self.env["sale.order"]
            for state in ("done", "done", "cancel", "pending"):
                orders |= self._card_subscription(state)
            self._bill_and_charge()
            self._bill_and_charge()
        charges = (
            self.env["payment.transaction"].sudo().search([("subscription_id", "in", orders.ids)])
        )
        self.assertEqual(len(charges), 4)
        self.assertEqual(charges.subscription_id, orders)
        self.assertEqual(
            [self._charges(order).state for order in orders], ["done", "done", "cancel", "pending"]
        )
        self.assertEqual([len(charge.payment_id) for charge in charges.sorted("id")], [1, 1, 0, 0])

    def test_pending_charge_waits_and_blocks_the_next(self):
        with freeze_time("2026-05-10"):
            order = self._card_subscription("pending")
            self._bill_and_charge()
        charge = self._charges(order)
        self.assertEqual(charge.state, "pending")
        invoice = self._invoices(order)
        self.assertEqual(invoice.payment_state, "not_paid")
        self.assertFalse(invoice.subscription_charge_declined_date)
        with freeze_time("2026-05-12"):
            self._run_cron(CHARGE_CRON)
        self.assertEqual(self._charges(order), charge)  # nothing charged on top of it
        # The provider confirms it later.
        charge._set_done()
        charge._post_process()
        self.assertIn(invoice.payment_state, ("paid", "in_payment"))

    def test_declined_card_retried_reminded_then_closed_after_grace(self):
        with freeze_time("2026-05-10"):
            order = self._card_subscription("cancel")
            self._bill_and_charge()
        invoice = self._invoices(order)
        self.assertEqual(self._charges(order).state, "cancel")
        self.assertEqual(invoice.payment_state, "not_paid")
        self.assertEqual(invoice.subscription_charge_declined_date, date(2026, 5, 10))
        self.assertEqual(invoice.subscription_charge_attempts, 1)
        self.assertEqual(invoice.subscription_next_charge_date, date(2026, 5, 11))
        self.assertIn("was declined", order.message_ids[0].body)
        self.assertEqual(invoice.subscription_mail_to_send, "declined")
        self._run_cron(MAILS_CRON)
        mail = self.env["mail.mail"].search(
            [("model", "=", "account.move"), ("res_id", "=", invoice.id)], order="id desc", limit=1
        )
        self.assertIn("could not charge your card", mail.body_html)
        self.assertIn("110.00", mail.body_html)
        self.assertIn("4242", mail.body_html)
        self.assertIn(invoice.get_portal_url().split("?")[0], mail.body_html)
        # Retried 1, 3, 7 and 14 days after the first decline, not between.
        expected = {
            "2026-05-11": 2,
            "2026-05-12": 2,
            "2026-05-13": 3,
            "2026-05-17": 4,
            "2026-05-24": 5,
            "2026-05-30": 5,
        }
        for day, charges in expected.items():
            with freeze_time(day):
                self._run_cron(CHARGE_CRON)
            self.assertEqual(len(self._charges(order)), charges, day)
            self.assertEqual(order.subscription_state, "3_progress", day)
        self.assertFalse(invoice.subscription_next_charge_date)
        # Still unpaid at the end of the grace period (21 days): closed.
        with freeze_time("2026-05-31"):
            self._run_cron(CHARGE_CRON)
        self.assertEqual(order.subscription_state, "6_churn")
        self.assertEqual(
            order.close_reason_id, self.env.ref("subscription_close.close_reason_payment_failed")
        )
        self.assertEqual(order.churn_type, "involuntary")
        self.assertEqual(order.close_mail_to_send, "payment_failed")
        self.assertFalse(order.close_reason_id.visible_in_portal)
        self.assertIn(
            order.close_reason_id,
            self.env["sale.order.close.reason"].search([("is_protected", "=", True)]),
        )
        self.assertEqual(len(self._charges(order)), 5)

    def test_error_state_is_a_decline(self):
        with freeze_time("2026-05-10"):
            order = self._card_subscription("error")
            self._bill_and_charge()
        self.assertEqual(self._charges(order).state, "error")
        self.assertEqual(self._invoices(order).subscription_charge_attempts, 1)
        self.assertFalse(order.payment_exception)

    def test_raising_provider_is_a_payment_exception(self):
        PaymentTransaction = type(self.env["payment.transaction"])
        with (
            freeze_time("2026-05-10"),
            patch.object(
                PaymentTransaction,
                "_send_payment_request",
                side_effect=ConnectionError("The provider timed out"),
            ),
        ):
            order = self._card_subscription("done", user_id=self.user_salesman.id)
            self._bill_and_charge()
        self.assertTrue(order.payment_exception)
        self.assertIn("timed out", order.message_ids[0].body)
        self.assertEqual(order.activity_ids.user_id, self.user_salesman)
        self.assertIn(order, self.env["sale.order"].search([("payment_exception", "=", True)]))
        charge = self._charges(order)
        self.assertEqual(charge.state, "draft")
        # Nothing charges it again until the exception is cleared.
        with freeze_time("2026-05-11"):
            self._run_cron(CHARGE_CRON)
        self.assertEqual(self._charges(order), charge)
        self.assertTrue(order.payment_exception)
        self.assertEqual(charge.state, "error")  # flagged as interrupted by the next run
        with freeze_time("2026-05-11"):
            order.action_clear_payment_exception()
            self._run_cron(CHARGE_CRON)
        self.assertFalse(order.payment_exception)
        self.assertEqual(len(self._charges(order)), 2)
        self.assertIn(self._invoices(order).payment_state, ("paid", "in_payment"))

    def test_interrupted_charge_is_never_charged_again(self):
        """A charge created but never answered (the process died): the next
        run flags it as a payment exception and charges nothing."""
        with freeze_time("2026-05-10"):
            order = self._card_subscription("done")
            self._run_cron()
            invoice = self._invoices(order)
            lost = (
                self.env["payment.transaction"]
                .sudo()
                .create(invoice._prepare_subscription_charge_values())
            )
            self._run_cron(CHARGE_CRON)
        self.assertEqual(self._charges(order), lost)
        self.assertTrue(order.payment_exception)
        self.assertEqual(invoice.payment_state, "not_paid")

    def test_paying_by_hand_stops_the_retries_and_is_recovered(self):
        with freeze_time("2026-05-10"):
            order = self._card_subscription("cancel")
            self._bill_and_charge()
        invoice = self._invoices(order)
        with freeze_time("2026-05-11"):
            self._pay(invoice)
        self.assertEqual(invoice.subscription_recovered_date, date(2026, 5, 11))
        self.assertFalse(invoice.subscription_next_charge_date)
        for day in ("2026-05-13", "2026-05-31"):
            with freeze_time(day):
                self._run_cron(CHARGE_CRON)
        self.assertEqual(len(self._charges(order)), 1)
        self.assertEqual(order.subscription_state, "3_progress")
        recovered = self.env["account.move"].search(
            [("subscription_recovered_date", "!=", False), ("id", "=", invoice.id)]
        )
        self.assertEqual(recovered, invoice)
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "subscription_close.account_move_recovered_action"
        )
        groups = self.env["account.move"]._read_group(
            safe_eval(action["domain"]) + [("id", "=", invoice.id)],
            ["subscription_recovered_date:month"],
            ["amount_total_signed:sum"],
        )
        self.assertEqual(groups[0][1], 110.0)

    def test_another_card_stops_the_declines(self):
        with freeze_time("2026-05-10"):
            order = self._card_subscription("cancel")
            self._bill_and_charge()
        order.payment_token_id = self._create_card("done")
        with freeze_time("2026-05-11"):
            self._run_cron(CHARGE_CRON)
        self.assertIn(self._invoices(order).payment_state, ("paid", "in_payment"))
        self.assertEqual(self._charges(order).mapped("state"), ["cancel", "done"])

    def test_paying_after_the_closing_reopens(self):
        self.plan_month.write({"payment_retry_days": "1", "payment_grace_days": 2})
        with freeze_time("2026-05-10"):
            order = self._card_subscription("cancel")
            self._bill_and_charge()
        with freeze_time("2026-05-12"):
            self._run_cron(CHARGE_CRON)
        self.assertEqual(order.subscription_state, "6_churn")
        with freeze_time("2026-05-20"):
            self._pay(self._invoices(order))
        self.assertEqual(order.subscription_state, "3_progress")
        self.assertEqual(order.next_invoice_date, date(2026, 6, 10))
        # Too late (the plan's 30 days are over): it stays closed.
        with freeze_time("2026-06-10"):
            self._bill_and_charge()
        with freeze_time("2026-06-12"):
            self._run_cron(CHARGE_CRON)
        self.assertEqual(order.subscription_state, "6_churn")
        with freeze_time("2026-07-20"):
            self._pay(self._invoices(order)[-1])
        self.assertEqual(order.subscription_state, "6_churn")

    def test_no_automatic_closing_of_a_card_subscription(self):
        """Automatic Closing (unpaid N days after the due date) leaves the
        subscriptions paid by card to their retries and grace period."""
        self.plan_month.auto_close_days = 1
        with freeze_time("2026-05-10"):
            order = self._card_subscription("cancel")
            self._bill_and_charge()
        with freeze_time("2026-05-15"):
            self._run_cron("subscription_close.ir_cron_close_unpaid")
        self.assertEqual(order.subscription_state, "3_progress")

    def test_retry_schedule_is_checked(self):
        with self.assertRaisesText("increasing", exception=ValidationError):
            self.plan_month.payment_retry_days = "3,1"
        with self.assertRaisesText("increasing", exception=ValidationError):
            self.plan_month.payment_retry_days = "1,two"
        with self.assertRaisesText("grace period", exception=ValidationError):
            self.plan_month.write({"payment_retry_days": "1,30", "payment_grace_days": 21})


@tagged("post_install", "-at_install")
class TestSavedCards(CardCommon):
    def test_card_of_the_customer_only(self):
        order = self._create_subscription()
        someone = self.env["res.partner"].create({"name": "Someone Else"})
        with self.assertRaisesText("another customer", exception=ValidationError):
            order.payment_token_id = self._create_card(partner=someone)
        archived = self._create_card()
        archived.active = False
        with self.assertRaisesText("archived", exception=ValidationError):
            order.payment_token_id = archived
        contact = self.env["res.partner"].create(
            {"name": "Ada's colleague", "parent_id": self.customer.id}
        )
        order.payment_token_id = self._create_card(partner=contact)  # same company
        self.assertTrue(order.payment_token_id)

    def test_archiving_a_card_names_its_subscriptions(self):
        order = self._card_subscription()
        card = order.payment_token_id
        info = card.get_linked_records_info()
        self.assertEqual([entry["name"] for entry in info], [order.name])
        card.active = False
        self.assertFalse(order.payment_token_id)
        self.flush_tracking()
        self.assertIn("was archived", order.message_ids[0].body)

    def test_tokenization_required_for_subscriptions(self):
        subscription = self._create_subscription(confirm=False)
        ordinary = self.env["sale.order"].create(
            {
                "partner_id": self.customer.id,
                "order_line": [Command.create({"product_id": self.product.id})],
            }
        )
        self.assertTrue(self.provider._is_tokenization_required(sale_order_id=subscription.id))
        self.assertFalse(self.provider._is_tokenization_required(sale_order_id=ordinary.id))
        self.assertEqual(subscription.prepayment_percent, 1.0)

    def test_default_plan_from_the_product(self):
        self.product_sub.subscription_plan_id = self.plan_year
        quotation = self.env["sale.order"].create(
            {
                "partner_id": self.customer.id,
                "order_line": [Command.create({"product_id": self.product_sub.id})],
            }
        )
        self.assertEqual(quotation.plan_id, self.plan_year)
        self.product_sub.subscription_plan_id = False
        no_plan = self.env["sale.order"].create(
            {
                "partner_id": self.customer.id,
                "require_payment": True,
                "order_line": [Command.create({"product_id": self.product_sub.id})],
            }
        )
        self.assertTrue(no_plan.is_subscription)
        self.assertFalse(no_plan.plan_id)
        self.assertFalse(no_plan._has_to_be_paid())


@tagged("post_install", "-at_install")
class TestCardPortal(SubscriptionPortalCommon, CardCommon):
    def test_portal_shows_the_card_pay_now_and_change(self):
        with freeze_time("2026-05-10"):
            order = self._card_subscription("cancel")
            self._bill_and_charge()
            other = self._create_card("done")
        self._login()
        page = self.url_open(order.get_portal_url()).text
        self.assertIn('id="subscription_card"', page)
        self.assertIn("4242", page)
        self.assertIn("o_subscription_pay_now", page)
        self.assertIn(self._invoices(order).get_portal_url().split("?")[0], page)
        self.assertIn(f'value="{other.id}"', page)
        self.assertIn('href="/my/payment_method"', page)
        response = self._post(order, "card", payment_token_id=str(other.id))
        self.assertEqual(self._redirect_code(response), "card_set")
        self.env.invalidate_all()
        self.assertEqual(order.payment_token_id, other)
        self.flush_tracking()
        self.assertEqual(order.message_ids[0].author_id, self.customer)

    def test_portal_card_refusals_change_nothing(self):
        order = self._card_subscription("done")
        card = order.payment_token_id
        someone, someone_user = self._create_portal_customer("Bob Other", "sc_card_other")
        foreign = self._create_card(partner=someone)
        archived = self._create_card()
        archived.active = False
        self._login()
        for token_id, code in (
            (foreign.id, "invalid_card"),
            (archived.id, "invalid_card"),
            ("x", "invalid_card"),
        ):
            before = self._snapshot(order)
            response = self._post(order, "card", payment_token_id=str(token_id))
            self.assertEqual(self._redirect_code(response), code)
            self.env.invalidate_all()
            self.assertEqual(order.payment_token_id, card)
            self.assertEqual(self._snapshot(order), before)
        # Another customer's subscription: refused before anything.
        self._login(someone_user)
        response = self._post(order, "card", payment_token_id=str(foreign.id))
        self.assertEqual(response.status_code, 403)
        self.env.invalidate_all()
        self.assertEqual(order.payment_token_id, card)


@tagged("post_install", "-at_install")
class TestOnlinePurchase(SubscriptionPortalCommon, CardCommon):
    """A subscription quotation signed and paid online, through the portal's
    payment routes and the demo provider: confirmed, started, its first
    period invoiced once, its card saved for the next ones."""

    def _pay_online(self, quotation, amount=None, replay=False):
        self._login()
        processing = self.make_jsonrpc_request(
            f"/my/orders/{quotation.id}/transaction",
            {
                "access_token": quotation._portal_ensure_token(),
                "provider_id": self.provider.id,
                "payment_method_id": self.payment_method.id,
                "token_id": None,
                "amount": amount or quotation.amount_total,
                "flow": "direct",
                "tokenization_requested": True,
                "landing_route": quotation.get_portal_url(),
                "is_validation": False,
            },
        )
        self.make_jsonrpc_request(
            "/payment/demo/simulate_payment",
            {
                "reference": processing["reference"],
                "payment_details": "4242",
                "simulated_state": "done",
            },
        )
        self.make_jsonrpc_request("/payment/status/poll", {})
        if replay:  # the provider's notification, once more
            self.make_jsonrpc_request(
                "/payment/demo/simulate_payment",
                {
                    "reference": processing["reference"],
                    "payment_details": "4242",
                    "simulated_state": "done",
                },
            )
            self.make_jsonrpc_request("/payment/status/poll", {})
        self.env.invalidate_all()
        return (
            self.env["payment.transaction"]
            .sudo()
            .search([("reference", "=", processing["reference"])])
        )

    def _quotation(self):
        quotation = self._create_subscription(
            confirm=False, require_payment=True, require_signature=False
        )
        self.assertTrue(quotation._has_to_be_paid())
        return quotation

    def test_paid_online_with_automatic_invoice(self):
        self.env["ir.config_parameter"].sudo().set_param("sale.automatic_invoice", True)
        with freeze_time("2026-05-10"):
            quotation = self._quotation()
            tx = self._pay_online(quotation)
            self.assertEqual(tx.state, "done")
            self.assertEqual(quotation.state, "sale")
            self.assertEqual(quotation.subscription_state, "3_progress")
            self.assertEqual(quotation.start_date, date(2026, 5, 10))
            self.assertEqual(quotation.payment_token_id, tx.token_id)
            self.assertTrue(tx.token_id)
            invoice = self._invoices(quotation)
            self.assertEqual(len(invoice), 1)
            self.assertEqual(invoice.subscription_period_start, date(2026, 5, 10))
            self.assertIn(invoice.payment_state, ("paid", "in_payment"))
            self.assertEqual(quotation.next_invoice_date, date(2026, 6, 10))
            # The jobs of the day add nothing.
            self._run_cron()
            self._run_cron(CHARGE_CRON)
        self.assertEqual(len(self._invoices(quotation)), 1)
        self.assertFalse(self._charges(quotation))
        # The next period is charged to the saved card, without the customer.
        with freeze_time("2026-06-10"):
            self._run_cron()
            self._run_cron(CHARGE_CRON)
        self.assertEqual(len(self._invoices(quotation)), 2)
        self.assertEqual(self._charges(quotation).state, "done")
        self.assertIn(self._invoices(quotation)[-1].payment_state, ("paid", "in_payment"))

    def test_paid_online_without_automatic_invoice(self):
        self.env["ir.config_parameter"].sudo().set_param("sale.automatic_invoice", False)
        with freeze_time("2026-05-10"):
            quotation = self._quotation()
            tx = self._pay_online(quotation)
            self.assertEqual(quotation.subscription_state, "3_progress")
            self.assertEqual(quotation.payment_token_id, tx.token_id)
            self.assertFalse(self._invoices(quotation))
            self.assertTrue(quotation.invoice_due)
            # The invoicing bills the first period once, paid by the online payment.
            self._run_cron()
            self._run_cron(CHARGE_CRON)
            self._run_cron()
        invoice = self._invoices(quotation)
        self.assertEqual(len(invoice), 1)
        self.assertIn(invoice.payment_state, ("paid", "in_payment"))
        self.assertFalse(self._charges(quotation))

    def test_forged_amount_and_replay(self):
        self.env["ir.config_parameter"].sudo().set_param("sale.automatic_invoice", True)
        with freeze_time("2026-05-10"):
            # Paying less than the whole first period confirms nothing.
            quotation = self._quotation()
            tx = self._pay_online(quotation, amount=quotation.amount_total / 2)
            self.assertEqual(tx.state, "done")
            self.assertEqual(quotation.state, "draft")
            self.assertFalse(quotation.payment_token_id)
            self.assertFalse(self._invoices(quotation))
            # A replayed notification of a real payment: confirmed and
            # invoiced once.
            other = self._quotation()
            self._pay_online(other, replay=True)
            self.assertEqual(other.state, "sale")
            self.assertEqual(len(self._invoices(other)), 1)
            self.assertEqual(len(other.transaction_ids), 1)

    def test_another_customers_invoice_cannot_be_paid(self):
        with freeze_time("2026-05-10"):
            theirs = self._card_subscription(
                "cancel", partner=self._create_portal_customer("Bob Other", "sc_pay_other")[0]
            )
            self._bill_and_charge()
        invoice = self._invoices(theirs)
        self._login()
        page = self.url_open(f"/my/invoices/{invoice.id}", allow_redirects=False)
        self.assertNotEqual(page.status_code, 200)
        with mute_logger("odoo.http"), self.assertRaises(JsonRpcException) as refused:
            self.make_jsonrpc_request(
                f"/invoice/transaction/{invoice.id}",
                {
                    "access_token": "forged",
                    "provider_id": self.provider.id,
                    "payment_method_id": self.payment_method.id,
                    "token_id": None,
                    "amount": invoice.amount_residual,
                    "flow": "direct",
                    "tokenization_requested": False,
                    "landing_route": "/my/invoices",
                    "is_validation": False,
                },
            )
        self.assertIn("ValidationError", str(refused.exception))  # the access token is invalid
        self.env.invalidate_all()
        self.assertEqual(invoice.payment_state, "not_paid")
        self.assertEqual(len(invoice.transaction_ids), 1)  # its declined charge only
