from datetime import date

from dateutil.relativedelta import relativedelta
from freezegun import freeze_time
from lxml import html

from odoo.exceptions import ValidationError
from odoo.fields import Command
from odoo.tests import Form, HttpCase, tagged

from .common import SubscriptionCommon, SubscriptionPortalCommon


def _classes(node):
    return set((node.get("class") or "").split())


@tagged("post_install", "-at_install")
class TestCloseReasonBackendUi(HttpCase, SubscriptionCommon):
    """Configuration ‣ Close Reasons and the Close popup, in the browser."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.not_needed = cls.env.ref("subscription_close.close_reason_not_needed")

    def test_reason_form_and_count_tour(self):
        """Clicking a reason opens its form (Retention offer tab); its count
        and the list it opens hold churned subscriptions, not closing ones; a
        reason created from the menu is offered in the portal."""
        churned = self._create_subscription()
        self._close(churned, self.not_needed)
        closing = self._create_subscription()
        self._close(closing, self.not_needed, closing._subscription_today() + relativedelta(days=5))
        self.assertTrue(closing.is_closing)
        self.assertEqual(self.not_needed.subscription_count, 1)
        action = self.not_needed.action_open_subscriptions()
        self.assertEqual(self.env["sale.order"].search(action["domain"]), churned)

        self.start_tour(
            "/odoo/action-subscription_close.sale_order_close_reason_action",
            "subscription_close_reason_form_tour",
            login=self.user_manager.login,
        )
        self.assertEqual(self.not_needed.retention_button_text, "Talk to us")
        created = self.env["sale.order.close.reason"].search(
            [("name", "=", "Moved to a competitor")]
        )
        self.assertTrue(created.visible_in_portal)

    def test_list_opens_the_form(self):
        arch = self.env["sale.order.close.reason"].get_views([(False, "list")])["views"]["list"]
        tree = html.fromstring(arch["arch"])
        self.assertFalse(tree.get("editable"), "an editable list hides the form")
        self.assertTrue(tree.xpath("//field[@name='sequence'][@widget='handle']"))

    def test_reason_typed_in_popup_stays_out_of_the_portal_tour(self):
        order = self._create_subscription(user_id=self.user_manager.id)
        other = self._create_subscription()
        self.start_tour(
            f"/odoo/action-subscription_close.sale_subscription_action/{order.id}",
            "subscription_close_new_reason_tour",
            login=self.user_manager.login,
        )
        reason = self.env["sale.order.close.reason"].search([("name", "=", "Moving abroad")])
        self.assertEqual(len(reason), 1)
        self.assertEqual(order.close_reason_id, reason)
        self.assertEqual(order.subscription_state, "6_churn")
        self.assertFalse(reason.visible_in_portal)
        self.assertNotIn(reason, other._get_portal_close_reasons())
        self.authenticate(self.user_portal.login, self.user_portal.login)
        page = self.url_open(other.get_portal_url()).text
        self.assertIn('id="subscription_close_form"', page)
        self.assertNotIn("Moving abroad", page)
        # Once a manager ticks it, customers may pick it.
        reason.visible_in_portal = True
        self.assertIn(reason, other._get_portal_close_reasons())

    def test_popup_placeholder_follows_rights(self):
        def reason_placeholder(user):
            arch = self.env["sale.order.close"].with_user(user).get_views([(False, "form")])
            nodes = html.fromstring(arch["views"]["form"]["arch"]).xpath(
                "//field[@name='close_reason_id']"
            )
            self.assertEqual(len(nodes), 1)
            return nodes[0].get("placeholder")

        self.assertIn("type a new one", reason_placeholder(self.user_manager))
        salesman = reason_placeholder(self.user_salesman)
        self.assertNotIn("type a new one", salesman)
        self.assertIn("ask a sales manager", salesman)

    def test_popup_creates_hidden_reasons(self):
        """The context of the popup's field makes a typed reason invisible in
        the portal; the model's default (the Close Reasons menu) is visible."""
        arch = (
            self.env["sale.order.close"]
            .with_user(self.user_manager)
            .get_views([(False, "form")])["views"]["form"]["arch"]
        )
        node = html.fromstring(arch).xpath("//field[@name='close_reason_id']")[0]
        self.assertIn("'default_visible_in_portal': False", node.get("context"))
        Reason = self.env["sale.order.close.reason"].with_user(self.user_manager)
        reason_id, _name = Reason.with_context(default_visible_in_portal=False).name_create(
            "Moving abroad"
        )
        self.assertFalse(Reason.browse(reason_id).visible_in_portal)
        self.assertTrue(Reason.create({"name": "From the menu"}).visible_in_portal)


@tagged("post_install", "-at_install")
class TestChurnedSubscriptionUi(HttpCase, SubscriptionCommon):
    """A churned subscription shows no next invoice date and cannot be
    invoiced nor edited; a closing one is kept with Keep Subscription."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()

    def test_churned_subscription_tour(self):
        running = self._create_subscription(user_id=self.user_salesman.id)
        churned = self._create_subscription(user_id=self.user_salesman.id)
        self._close(churned, self.reason)
        next_invoice_date = churned.next_invoice_date
        self.assertTrue(next_invoice_date)
        self.start_tour(
            "/odoo/action-subscription_close.sale_subscription_action",
            "subscription_close_churned_tour",
            login=self.user_salesman.login,
        )
        # Hidden, never cleared: the tour reopened it and it goes on from it.
        self.assertEqual(churned.subscription_state, "3_progress")
        self.assertEqual(churned.next_invoice_date, next_invoice_date)
        self.assertEqual(running.subscription_state, "3_progress")

    def test_churned_form_arch(self):
        form = self.env["sale.order"].get_views([(False, "form")])["views"]["form"]["arch"]
        tree = html.fromstring(form)
        (button,) = tree.xpath("//button[@id='create_invoice']")
        self.assertIn("subscription_state == '6_churn'", button.get("invisible"))
        # No down payment on any subscription.
        (button,) = tree.xpath("//button[@id='create_invoice_percentage']")
        self.assertIn("is_subscription", button.get("invisible"))
        (lines,) = tree.xpath("//field[@name='order_line']")
        self.assertIn("subscription_state == '6_churn'", lines.get("readonly"))
        (next_date,) = tree.xpath("//group[@name='order_details']/field[@name='next_invoice_date']")
        self.assertIn("subscription_state == '6_churn'", next_date.get("invisible"))

    def test_keep_subscription_tour(self):
        order = self._create_subscription(user_id=self.user_salesman.id)
        self._close(order, self.reason, order._subscription_today() + relativedelta(days=20))
        self._run_close_mails()
        self.start_tour(
            f"/odoo/action-subscription_close.sale_subscription_action/{order.id}",
            "subscription_close_keep_backend_tour",
            login=self.user_salesman.login,
        )
        self.assertFalse(order.is_closing)
        self.assertFalse(order.close_reason_id)
        self.assertEqual(order.close_mail_to_send, "kept")

    def _run_close_mails(self):
        # An HttpCase already runs the registry in test mode.
        self.env.ref("subscription_close.ir_cron_send_close_mails").method_direct_trigger()
        self.env.invalidate_all()


@tagged("post_install", "-at_install")
class TestPortalUsability(SubscriptionPortalCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.running = cls._create_subscription()
        cls.churned = cls._create_subscription()
        cls._close(cls.churned, cls.reason)

    def _row_cells(self, page, order):
        """``{column name: td}`` of ``order``'s row in /my/subscriptions."""
        tree = html.fromstring(page)
        (row,) = tree.xpath(
            "//tr[contains(concat(' ', @class, ' '), ' o_subscription_row ')]"
            f"[.//a[normalize-space()='{order.name}']]"
        )
        return {td.get("name"): td for td in row.xpath("./td")}

    def test_list_on_phones(self):
        """On a phone only the subscription and its status show: the other
        columns hide below the md (or sm) breakpoint, as Odoo's lists do."""
        self._login()
        page = self.url_open("/my/subscriptions").text
        tree = html.fromstring(page)
        headers = {th.get("name"): _classes(th) for th in tree.xpath("//thead//th")}
        cells = {name: _classes(td) for name, td in self._row_cells(page, self.running).items()}
        for columns in (headers, cells):
            self.assertEqual(
                set(columns), {"subscription", "plan", "next_invoice_date", "end_date", "status"}
            )
            for always in ("subscription", "status"):
                self.assertNotIn("d-none", columns[always], always)
            self.assertTrue({"d-none", "d-sm-table-cell"} <= columns["plan"])
            for secondary in ("next_invoice_date", "end_date"):
                self.assertTrue({"d-none", "d-md-table-cell"} <= columns[secondary], secondary)

    def test_no_next_invoice_date_once_churned(self):
        self._login()
        page = self.url_open("/my/subscriptions").text
        running = self._row_cells(page, self.running)["next_invoice_date"]
        churned = self._row_cells(page, self.churned)["next_invoice_date"]
        self.assertTrue(running.text_content().strip())
        self.assertFalse(churned.text_content().strip())
        page = self.url_open(self.running.get_portal_url()).text
        self.assertIn('id="subscription_next_invoice"', page)
        page = self.url_open(self.churned.get_portal_url()).text
        self.assertIn('data-status="6_churn"', page)
        self.assertNotIn('id="subscription_next_invoice"', page)
        # Hidden, not cleared: Reopen goes on from it.
        self.assertTrue(self.churned.next_invoice_date)

    def test_breadcrumb_says_subscriptions(self):
        self._login()
        tree = html.fromstring(self.url_open(self.running.get_portal_url()).text)
        crumbs = tree.xpath("//ol[contains(@class, 'o_portal_submenu')]/li")
        texts = [li.text_content().strip() for li in crumbs]
        self.assertIn("Subscriptions", texts)
        self.assertNotIn("Sales Orders", texts)
        (link,) = tree.xpath("//li[@id='portal_breadcrumbs_subscription']/a")
        self.assertEqual(link.get("href"), "/my/subscriptions")
        # An ordinary sales order keeps its Sales Orders breadcrumb.
        order = self.env["sale.order"].create(
            {
                "partner_id": self.customer.id,
                "order_line": [Command.create({"product_id": self.product.id})],
            }
        )
        order.action_confirm()
        tree = html.fromstring(self.url_open(order.get_portal_url()).text)
        texts = [li.text_content().strip() for li in tree.xpath("//ol/li")]
        self.assertIn("Sales Orders", texts)
        self.assertNotIn("Subscriptions", texts)

    def test_not_closable_says_whom_to_contact(self):
        salesperson = self.user_salesman
        salesperson.partner_id.write({"email": "sales.rep@example.com", "phone": "+39 02 123456"})
        yearly = self._create_subscription(plan=self.plan_year, user_id=salesperson.id)
        self._login()
        page = self.url_open(yearly.get_portal_url()).text
        tree = html.fromstring(page)
        (contact,) = tree.xpath("//*[@id='subscription_contact']")
        self.assertIn(salesperson.name, contact.text_content())
        self.assertTrue(contact.xpath(".//a[@href='mailto:sales.rep@example.com']"))
        self.assertTrue(contact.xpath(".//a[@href='tel:+39 02 123456']"))
        self.assertNotIn('id="o_subscription_close_button"', page)
        # No salesperson to reach: the company.
        yearly.user_id = False
        self.env.company.email = "info@company.example.com"
        tree = html.fromstring(self.url_open(yearly.get_portal_url()).text)
        (contact,) = tree.xpath("//*[@id='subscription_contact']")
        self.assertTrue(contact.xpath(".//a[@href='mailto:info@company.example.com']"))
        # A closable subscription has its Close button instead.
        page = self.url_open(self.running.get_portal_url()).text
        self.assertNotIn('id="subscription_contact"', page)
        self.assertIn('id="o_subscription_close_button"', page)

    def _run_close_mails(self):
        # An HttpCase already runs the registry in test mode.
        self.env.ref("subscription_close.ir_cron_send_close_mails").method_direct_trigger()
        self.env.invalidate_all()

    @freeze_time("2026-01-20")
    def test_keep_sends_the_goes_on_email(self):
        """Schedule from the portal, the "will close" email goes, keep: the
        "goes on" email follows, in the order of events."""
        self.plan_month.user_closable_options = "end_of_period"
        order = self._create_subscription()
        self._login()
        response = self._post_close(order, close_reason_id=self.reason.id)
        self.assertEqual(self._redirect_code(response), "closing")
        self._run_close_mails()
        response = self._post(order, "keep")
        self.assertEqual(self._redirect_code(response), "kept")
        self.env.invalidate_all()
        self.assertEqual(order.close_mail_to_send, "kept")
        self._run_close_mails()
        self.assertFalse(order.close_mail_to_send)
        subjects = (
            self.env["mail.mail"]
            .search([("model", "=", "sale.order"), ("res_id", "=", order.id)], order="id")
            .mapped("subject")
        )
        self.assertEqual(
            subjects,
            [
                f"Your subscription {order.name} will close on 02/19/2026",
                f"Your subscription {order.name} goes on",
            ],
        )


@tagged("post_install", "-at_install")
class TestClosingCancelledEmail(SubscriptionCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()

    def _mails(self, order):
        return self.env["mail.mail"].search(
            [("model", "=", "sale.order"), ("res_id", "=", order.id)], order="id"
        )

    def _send(self):
        with self.enter_registry_test_mode():
            self.env.ref("subscription_close.ir_cron_send_close_mails").method_direct_trigger()
        self.env.invalidate_all()

    @freeze_time("2026-06-10")
    def test_cancel_then_reschedule_reads_naturally(self):
        order = self._create_subscription()
        self._close(order, self.reason, date(2026, 6, 30))
        self._send()
        order.with_user(self.user_salesman).action_cancel_close()
        self.assertEqual(order.close_mail_to_send, "kept")
        self._send()
        self._close(order, self.reason, date(2026, 7, 15))
        self._send()
        mails = self._mails(order)
        self.assertEqual(
            mails.mapped("subject"),
            [
                f"Your subscription {order.name} will close on 06/30/2026",
                f"Your subscription {order.name} goes on",
                f"Your subscription {order.name} will close on 07/15/2026",
            ],
        )
        self.assertIn(self.customer, mails[1].recipient_ids)
        self.assertIn("goes on as usual", mails[1].body_html)
        self.assertIn(order.get_portal_url().split("?")[0], mails[1].body_html)

    @freeze_time("2026-06-10")
    def test_nothing_to_undo_when_the_closing_email_is_still_waiting(self):
        order = self._create_subscription()
        self._close(order, self.reason, date(2026, 6, 30))
        order.action_cancel_close()
        self.assertFalse(order.close_mail_to_send)
        self._send()
        self.assertFalse(self._mails(order))

    @freeze_time("2026-06-10")
    def test_plan_switch(self):
        self.plan_month.send_close_mail = False
        order = self._create_subscription()
        self._close(order, self.reason, date(2026, 6, 30))
        self._send()
        order.action_cancel_close()
        self.assertFalse(order.close_mail_to_send)
        self._send()
        self.assertFalse(self._mails(order))

    @freeze_time("2026-06-10")
    def test_in_italian(self):
        self.env["res.lang"]._activate_lang("it_IT")
        self.env["ir.module.module"]._load_module_terms(
            ["subscription_close"], ["it_IT"], overwrite=True
        )
        self.customer.lang = "it_IT"
        order = self._create_subscription()
        self._close(order, self.reason, date(2026, 6, 30))
        self._send()
        order.action_cancel_close()
        self._send()
        mail = self._mails(order)[-1]
        self.assertEqual(mail.subject, f"Il tuo abbonamento {order.name} continua")
        self.assertIn("continua come sempre", mail.body_html)


@tagged("post_install", "-at_install")
class TestSmallerFixes(SubscriptionCommon):
    def test_billing_period_unit_singular_for_one(self):
        self.env["res.lang"]._activate_lang("it_IT")
        self.env["ir.module.module"]._load_module_terms(
            ["subscription_close"], ["it_IT"], overwrite=True
        )
        for lang, one, many in (("en_US", "Month", "Months"), ("it_IT", "Mese", "Mesi")):
            fields = (
                self.env["sale.subscription.plan"]
                .with_context(lang=lang)
                .fields_get(["billing_period_unit", "billing_period_unit_one"])
            )
            self.assertEqual(dict(fields["billing_period_unit_one"]["selection"])["month"], one)
            self.assertEqual(dict(fields["billing_period_unit"]["selection"])["month"], many)
        arch = self.env["sale.subscription.plan"].get_views([(False, "form")])["views"]["form"]
        tree = html.fromstring(arch["arch"])
        (unit,) = tree.xpath("//field[@name='billing_period_unit']")
        (unit_one,) = tree.xpath("//field[@name='billing_period_unit_one']")
        self.assertEqual(unit.get("invisible"), "billing_period_value == 1")
        self.assertEqual(unit_one.get("invisible"), "billing_period_value != 1")

        with Form(self.env["sale.subscription.plan"]) as plan_form:
            plan_form.name = "Yearly billing"
            plan_form.billing_period_unit_one = "year"
            self.assertEqual(plan_form.billing_period_unit, "year")
            plan_form.billing_period_value = 2
        plan = plan_form.record
        self.assertEqual(plan.billing_period_unit, "year")
        self.assertEqual(plan.billing_period_display, "Every 2 years")
        plan.billing_period_unit_one = "week"
        self.assertEqual(plan.billing_period_unit, "week")

    def test_churn_pivot_counts(self):
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "subscription_close.sale_subscription_churn_action"
        )
        self.assertIn("'pivot_measures': ['__count', 'churned_mrr']", action["context"])
        reason = self.env.ref("subscription_close.close_reason_other")
        context = reason.action_open_subscriptions()["context"]
        self.assertEqual(context["pivot_measures"], ["__count", "churned_mrr"])

    def test_retention_link_may_be_an_email(self):
        reason = self.env.ref("subscription_close.close_reason_other")
        reason.retention_url = "mailto:sales@example.com?subject=Basic"
        reason.retention_url = "/my/home"
        with self.assertRaisesText("mailto:", exception=ValidationError):
            reason.retention_url = "mailto:nobody"
