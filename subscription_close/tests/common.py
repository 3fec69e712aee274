from contextlib import contextmanager
from urllib.parse import parse_qs, urlparse

from odoo.exceptions import UserError
from odoo.fields import Command
from odoo.http import Request
from odoo.tests import Form, HttpCase, new_test_user

from odoo.addons.sale.tests.common import SaleCommon

INVOICING_CRON = "subscription_close.ir_cron_create_recurring_invoices"


class SubscriptionCommon(SaleCommon):
    """Plans, a subscription product, users of each kind and a helper to build
    subscriptions. Built once per test class."""

    @classmethod
    def default_env_context(cls):
        # Keep tracking and chatter on: closing is asserted in the chatter.
        return {"mail_create_nosubscribe": True, "no_reset_password": True}

    # The scheduled action _run_cron runs when none is named.
    default_cron = INVOICING_CRON

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.reason = cls.env.ref("subscription_close.close_reason_too_expensive")
        # Tests add retention offers where they need them (demo data has one).
        cls.env["sale.order.close.reason"].search([]).retention_message = False
        Plan = cls.env["sale.subscription.plan"]
        cls.plan_month = Plan.create(
            {"name": "Monthly", "billing_period_unit": "month", "user_closable": True}
        )
        cls.plan_year = Plan.create({"name": "Yearly", "billing_period_unit": "year"})
        cls.plan_week = Plan.create(
            {"name": "Every 2 weeks", "billing_period_value": 2, "billing_period_unit": "week"}
        )
        cls.product_sub = cls.env["product.product"].create(
            {
                "name": "Support subscription",
                "type": "service",
                "recurring_invoice": True,
                "invoice_policy": "order",
                "list_price": 30.0,
                "taxes_id": [Command.clear()],
            }
        )
        cls.user_salesman = new_test_user(
            cls.env,
            login="sc_salesman",
            groups="sales_team.group_sale_salesman_all_leads",
        )
        cls.user_salesman_own = new_test_user(
            cls.env, login="sc_salesman_own", groups="sales_team.group_sale_salesman"
        )
        cls.user_manager = new_test_user(
            cls.env, login="sc_manager", groups="sales_team.group_sale_manager"
        )
        cls.user_internal = new_test_user(cls.env, login="sc_internal", groups="base.group_user")
        cls.customer, cls.user_portal = cls._create_portal_customer("Ada Customer", "sc_portal")

    @classmethod
    def _create_portal_customer(cls, name, login):
        """A customer and their portal user; the password is ``<login>_pwd``."""
        partner = cls.env["res.partner"].create({"name": name, "email": f"{login}@example.com"})
        user = new_test_user(
            cls.env,
            login=login,
            password=f"{login}_pwd",
            groups="base.group_portal",
            partner_id=partner.id,
            email=partner.email,
        )
        return partner, user

    @classmethod
    def _create_subscription(cls, plan=None, partner=None, confirm=True, **values):
        order = cls.env["sale.order"].create(
            {
                "partner_id": (partner or cls.customer).id,
                "plan_id": (plan or cls.plan_month).id,
                "order_line": [Command.create({"product_id": cls.product_sub.id})],
                **values,
            }
        )
        if confirm:
            order.action_confirm()
            # The transaction of the confirmation ends: mail logs its tracking
            # (a record's changes in the transaction that creates it are not).
            order.env.flush_all()
            order.env.cr.flush()
        return order

    @classmethod
    def _close(cls, orders, reason, end_date=None, **kwargs):
        """Close ``orders`` with ``reason`` through the closing API: today
        (each order's today), or on ``end_date``."""
        if end_date:
            end_dates = dict.fromkeys(orders.ids, end_date)
        else:
            end_dates = orders._get_subscription_today()
        return orders._action_close(reason, end_dates, **kwargs)

    def _run_cron(self, xmlid=None):
        """Run the scheduled action ``xmlid`` as Odoo does (an HttpCase
        already runs the registry in test mode)."""
        cron = self.env.ref(xmlid or self.default_cron)
        if isinstance(self, HttpCase):
            cron.method_direct_trigger()
        else:
            with self.enter_registry_test_mode():
                cron.method_direct_trigger()
        self.env.invalidate_all()

    def _close_with_wizard(self, orders, reason=None, when="now", close_date=None, user=None):
        """Close ``orders`` through the Close popup, as ``user`` (a
        salesperson by default) would."""
        user = user or self.user_salesman
        action = orders.with_user(user).action_open_close_wizard()
        self.assertEqual(action["res_model"], "sale.order.close")
        with Form(
            self.env["sale.order.close"].with_user(user).with_context(**action["context"])
        ) as wizard_form:
            wizard_form.close_reason_id = reason or self.reason
            wizard_form.close_when = when
            if close_date:
                wizard_form.close_date = close_date
        return wizard_form.record.action_close()

    def _pause(self, orders, resume_date=False, **kwargs):
        return orders._action_pause(dict.fromkeys(orders.ids, resume_date), **kwargs)

    def _pause_with_wizard(self, orders, resume_date=None, reason=None, user=None):
        user = user or self.user_salesman
        action = orders.with_user(user).action_open_pause_wizard()
        with Form(
            self.env["sale.order.pause"].with_user(user).with_context(**action["context"])
        ) as wizard_form:
            wizard_form.resume_when = "date" if resume_date else "manual"
            if resume_date:
                wizard_form.resume_date = resume_date
            if reason:
                wizard_form.pause_reason = reason
        return wizard_form.record.action_pause()

    def _invoices(self, order):
        return order.subscription_invoice_ids.filtered(
            lambda move: move.move_type == "out_invoice"
        ).sorted("subscription_period_start")

    def _periods(self, order):
        return [
            (move.subscription_period_start, move.subscription_period_end)
            for move in self._invoices(order)
        ]

    def flush_tracking(self):
        """Run the tracking that Odoo runs at commit time."""
        self.env.flush_all()
        self.env.cr.flush()

    @contextmanager
    def assertRaisesText(self, text, exception=UserError):
        """``assertRaises`` (which rolls back to a savepoint) that also checks
        the message shown to the user."""
        with self.assertRaises(exception) as caught:
            yield caught
        self.assertIn(text, str(caught.exception))


class SubscriptionPortalCommon(HttpCase, SubscriptionCommon):
    """Helpers to act on subscriptions through the customer portal."""

    def _login(self, user=None):
        user = user or self.user_portal
        self.authenticate(user.login, f"{user.login}_pwd")

    def _serve_italian(self):
        """Italian active with the addon's terms, and the portal customer
        speaking it. Next to a website, the portal serves the languages the
        website offers (the /it/ prefix, the frontend_lang cookie): an
        Italian shop offers Italian."""
        italian = self.env["res.lang"]._activate_lang("it_IT")
        self.env["ir.module.module"]._load_module_terms(
            ["subscription_close"], ["it_IT"], overwrite=True
        )
        if "website" in self.env:
            self.env["website"].search([]).language_ids |= italian
        self.user_portal.lang = "it_IT"

    def _post(self, order, action, csrf=True, **data):
        """POST the portal form ``action`` (close, keep) of ``order`` (a
        record or any id, even a wrong one), without following redirects."""
        if csrf:
            data["csrf_token"] = Request.csrf_token(self)
        order_id = getattr(order, "id", order)
        return self.url_open(
            f"/my/subscriptions/{order_id}/{action}",
            data=data,
            method="POST",
            allow_redirects=False,
        )

    def _post_close(self, order, csrf=True, **data):
        return self._post(order, "close", csrf=csrf, **data)

    def _redirect_code(self, response):
        """The ``subscription_message`` the portal redirected to."""
        self.assertIn(response.status_code, (302, 303), response.text[:500])
        query = parse_qs(urlparse(response.headers["Location"]).query)
        return query.get("subscription_message", [None])[0]

    def _snapshot(self, order):
        """What a refused request must leave as it was: status, reason, end
        date, pause and resume dates, next invoice date, the number of
        chatter messages and of retention events. The tracking still pending
        (e.g. of the confirmation) is logged first, as the next request would."""
        self.flush_tracking()
        self.env.invalidate_all()
        return (
            order.subscription_state,
            order.close_reason_id,
            order.end_date,
            order.pause_start_date,
            order.resume_date,
            order.next_invoice_date,
            len(order.message_ids),
            self._retention_events(order).mapped("event_type"),
        )

    def _retention_events(self, order):
        """The retention events of ``order``, oldest first."""
        return (
            self.env["sale.subscription.retention.event"]
            .sudo()
            .search([("order_id", "=", order.id)], order="id")
        )

    def _closing_messages(self, order):
        """The chatter messages of closing, scheduling or keeping ``order``
        from the portal (they have their own subtype)."""
        self.env.invalidate_all()
        subtype = self.env.ref("subscription_close.mt_subscription_closed")
        return order.message_ids.filtered(lambda m: m.subtype_id == subtype)


class InvoicingCommon(SubscriptionCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.immediate = cls.env.ref("account.account_payment_term_immediate")
        cls.customer.property_payment_term_id = cls.immediate

    def _pay(self, invoice, amount=None, day=None):
        values = {"amount": amount or invoice.amount_residual}
        if day:
            values["payment_date"] = day
        wizard = (
            self.env["account.payment.register"]
            .with_context(active_model="account.move", active_ids=invoice.ids)
            .create(values)
        )
        wizard._create_payments()
