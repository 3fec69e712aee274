from datetime import date

from freezegun import freeze_time
from psycopg2.errors import CheckViolation

from odoo.exceptions import AccessError, UserError
from odoo.fields import Command
from odoo.tests import Form, new_test_user, tagged
from odoo.tools import mute_logger
from odoo.tools.safe_eval import safe_eval

from .common import SubscriptionCommon


@tagged("post_install", "-at_install")
class TestRecurringPlan(SubscriptionCommon):
    def _assert_period_refused(self, value):
        Plan = self.env["sale.subscription.plan"]
        with (
            self.assertRaises(CheckViolation) as caught,
            mute_logger("odoo.sql_db"),
            self.env.cr.savepoint(),
        ):
            Plan.create({"name": "Broken", "billing_period_value": value})
            Plan.flush_model()
        self.assertEqual(
            Plan._sql_error_to_message(caught.exception),
            "The billing period of a recurring plan must be a positive number.",
        )

    def test_period_must_be_positive(self):
        self._assert_period_refused(0)
        self._assert_period_refused(-3)

    def test_period_display(self):
        self.assertEqual(self.plan_month.billing_period_display, "Monthly")
        self.assertEqual(self.plan_year.billing_period_display, "Yearly")
        self.assertEqual(self.plan_week.billing_period_display, "Every 2 weeks")

    def test_next_period_start_keeps_month_end(self):
        plan = self.plan_month
        self.assertEqual(plan._next_period_start(date(2026, 1, 31), 31), date(2026, 2, 28))
        self.assertEqual(plan._next_period_start(date(2026, 2, 28), 31), date(2026, 3, 31))
        self.assertEqual(plan._next_period_start(date(2026, 3, 31), 31), date(2026, 4, 30))
        self.assertEqual(plan._next_period_start(date(2024, 1, 31), 31), date(2024, 2, 29))
        year = self.plan_year
        self.assertEqual(year._next_period_start(date(2024, 2, 29), 29), date(2025, 2, 28))
        week = self.plan_week
        self.assertEqual(week._next_period_start(date(2026, 12, 25), 25), date(2027, 1, 8))

    def test_archive_plan(self):
        plan = self.plan_year
        plan.action_archive()
        self.assertFalse(plan.active)
        self.assertNotIn(plan, self.env["sale.subscription.plan"].search([]))
        plan.action_unarchive()
        self.assertTrue(plan.active)

    def test_translatable_name(self):
        self.env["res.lang"]._activate_lang("it_IT")
        self.plan_month.with_context(lang="it_IT").name = "Mensile"
        self.assertEqual(self.plan_month.with_context(lang="it_IT").name, "Mensile")
        self.assertEqual(self.plan_month.with_context(lang="en_US").name, "Monthly")

    def test_salesperson_reads_but_cannot_create_plan(self):
        Plan = self.env["sale.subscription.plan"].with_user(self.user_salesman)
        self.assertIn(self.plan_month, Plan.search([]))
        with self.assertRaises(AccessError):
            Plan.create({"name": "Sneaky"})
        with self.assertRaises(AccessError):
            self.plan_month.with_user(self.user_salesman).write({"user_closable": False})
        manager_plan = (
            self.env["sale.subscription.plan"]
            .with_user(self.user_manager)
            .create({"name": "Quarterly", "billing_period_value": 3})
        )
        self.assertEqual(manager_plan.billing_period_unit, "month")

    def test_multi_company_rule(self):
        other_company = self.env["res.company"].create({"name": "Other Co"})
        other_plan = self.env["sale.subscription.plan"].create(
            {"name": "Other company plan", "company_id": other_company.id}
        )
        shared_plan = self.env["sale.subscription.plan"].create(
            {"name": "Shared plan", "company_id": False}
        )
        for user in (self.user_salesman, self.user_portal):
            Plan = self.env["sale.subscription.plan"].with_user(user)
            visible = Plan.search([])
            self.assertNotIn(other_plan, visible)
            self.assertIn(shared_plan, visible)
            with self.assertRaises(AccessError):
                other_plan.with_user(user).read(["name"])
        other_user = new_test_user(
            self.env,
            login="sc_other_company",
            groups="sales_team.group_sale_salesman",
            company_id=other_company.id,
            company_ids=[Command.set(other_company.ids)],
        )
        self.assertIn(
            other_plan, self.env["sale.subscription.plan"].with_user(other_user).search([])
        )


@tagged("post_install", "-at_install")
class TestSubscriptionOrder(SubscriptionCommon):
    @freeze_time("2026-03-15")
    def test_confirm_subscription(self):
        order = self._create_subscription(confirm=False)
        self.assertTrue(order.is_subscription)
        self.assertEqual(order.subscription_state, "1_draft")
        self.assertFalse(order.start_date)
        self.flush_tracking()  # tracking starts once the order exists in the database
        order.action_confirm()
        self.assertEqual(order.state, "sale")
        self.assertEqual(order.subscription_state, "3_progress")
        self.assertEqual(order.start_date, date(2026, 3, 15))
        # The first period is invoiced from the start date.
        self.assertEqual(order.next_invoice_date, date(2026, 3, 15))
        self.flush_tracking()
        tracked = order.message_ids.tracking_value_ids.filtered(
            lambda t: t.field_id.name == "subscription_state"
        )
        self.assertEqual(tracked.mapped("new_value_char"), ["In Progress"])

    @freeze_time("2026-01-31")
    def test_next_period_start_per_period(self):
        monthly = self._create_subscription(plan=self.plan_month)
        yearly = self._create_subscription(plan=self.plan_year)
        weekly = self._create_subscription(plan=self.plan_week)
        self.assertEqual(monthly.next_invoice_date, date(2026, 1, 31))
        # Month ends are kept: 31 Jan, 28 Feb, 31 Mar, 30 Apr, 31 May.
        starts = [date(2026, 1, 31)]
        for _i in range(4):
            starts.append(monthly._get_next_period_start(starts[-1]))
        self.assertEqual(
            starts,
            [
                date(2026, 1, 31),
                date(2026, 2, 28),
                date(2026, 3, 31),
                date(2026, 4, 30),
                date(2026, 5, 31),
            ],
        )
        self.assertEqual(yearly._get_next_period_start(date(2026, 1, 31)), date(2027, 1, 31))
        self.assertEqual(weekly._get_next_period_start(date(2026, 1, 31)), date(2026, 2, 14))
        # A leap day start: 29 Feb 2024, 28 Feb 2025, ... 29 Feb 2028.
        yearly.start_date = date(2024, 2, 29)
        day = date(2024, 2, 29)
        for _i in range(4):
            day = yearly._get_next_period_start(day)
        self.assertEqual(day, date(2028, 2, 29))
        # A schedule moved off the start day (e.g. by a pause) keeps its day.
        self.assertEqual(monthly._get_next_period_start(date(2026, 3, 10)), date(2026, 4, 10))

    def test_subscription_product_makes_a_subscription(self):
        order = self.env["sale.order"].create(
            {
                "partner_id": self.customer.id,
                "order_line": [Command.create({"product_id": self.product_sub.id})],
            }
        )
        self.assertTrue(order.is_subscription)
        self.assertEqual(order.subscription_state, "1_draft")
        with self.assertRaisesText("Choose a recurring plan", UserError):
            order.action_confirm()
        self.assertEqual(order.state, "draft")
        order.plan_id = self.plan_month
        order.action_confirm()
        self.assertEqual(order.subscription_state, "3_progress")

    def test_ordinary_order_untouched(self):
        order = self.sale_order
        self.assertFalse(order.is_subscription)
        order.action_confirm()
        self.assertEqual(order.state, "sale")
        self.assertFalse(order.subscription_state)
        self.assertFalse(order.start_date)
        self.assertFalse(order.next_invoice_date)

    @freeze_time("2026-03-15")
    def test_cancel_and_reset(self):
        order = self._create_subscription()
        self._close(order, self.env.ref("subscription_close.close_reason_other"))
        order._action_cancel()
        self.assertEqual(order.state, "cancel")
        self.assertFalse(order.subscription_state)
        order.action_draft()
        self.assertEqual(order.state, "draft")
        self.assertEqual(order.subscription_state, "1_draft")
        self.assertFalse(order.start_date)
        self.assertFalse(order.next_invoice_date)
        self.assertFalse(order.end_date)
        self.assertFalse(order.close_reason_id)
        with freeze_time("2026-04-02"):
            order.action_confirm()
        self.assertEqual(order.start_date, date(2026, 4, 2))
        self.assertEqual(order.subscription_state, "3_progress")

    def test_copy_is_a_new_quotation(self):
        order = self._create_subscription()
        copy = order.copy()
        self.assertEqual(copy.subscription_state, "1_draft")
        self.assertFalse(copy.start_date)
        self.assertEqual(copy.plan_id, self.plan_month)

    def test_form_shows_plan_for_subscriptions_only(self):
        with Form(self.env["sale.order"]) as form:
            form.partner_id = self.customer
            self.assertFalse(form.is_subscription)
            self.assertTrue(form._get_modifier("plan_id", "invisible"))
            self.assertTrue(form._get_modifier("start_date", "invisible"))
            with form.order_line.new() as line:
                line.product_id = self.product_sub
            self.assertTrue(form.is_subscription)
            self.assertFalse(form._get_modifier("plan_id", "invisible"))
            self.assertTrue(form._get_modifier("plan_id", "required"))
            form.plan_id = self.plan_year
        self.assertEqual(form.record.plan_id, self.plan_year)
        # Opened from the Subscriptions menu, a new order shows the plan at once.
        with Form(self.env["sale.order"].with_context(subscription_view=True)) as form:
            form.partner_id = self.customer
            self.assertFalse(form._get_modifier("plan_id", "invisible"))
            form.plan_id = self.plan_month
            with form.order_line.new() as line:
                line.product_id = self.product_sub
        # An ordinary order never shows it.
        with Form(self.env["sale.order"]) as form:
            form.partner_id = self.customer
            with form.order_line.new() as line:
                line.product_id = self.product
            self.assertTrue(form._get_modifier("plan_id", "invisible"))

    def test_salesperson_creates_subscription(self):
        order = (
            self.env["sale.order"]
            .with_user(self.user_salesman)
            .create(
                {
                    "partner_id": self.customer.id,
                    "plan_id": self.plan_month.id,
                    "order_line": [Command.create({"product_id": self.product_sub.id})],
                }
            )
        )
        order.action_confirm()
        self.assertEqual(order.subscription_state, "3_progress")


@tagged("post_install", "-at_install")
class TestSubscriptionMenus(SubscriptionCommon):
    def test_menus_visible_to_salesperson(self):
        Menu = self.env["ir.ui.menu"].with_user(self.user_salesman)
        visible = Menu._visible_menu_ids()
        for xmlid in (
            "subscription_close.menu_subscription_root",
            "subscription_close.menu_subscription_orders",
            "subscription_close.menu_subscription_plan",
        ):
            self.assertIn(self.env.ref(xmlid).id, visible, xmlid)
        internal_visible = self.env["ir.ui.menu"].with_user(self.user_internal)._visible_menu_ids()
        self.assertNotIn(
            self.env.ref("subscription_close.menu_subscription_root").id, internal_visible
        )

    def test_actions_open(self):
        self._create_subscription()
        actions = self.env["ir.actions.act_window"].search(
            [("id", "in", self._module_action_ids())]
        )
        self.assertTrue(actions)
        for action in actions:
            Model = self.env[action.res_model].with_user(self.user_salesman)
            view_types = action.view_mode.split(",")
            views = Model.get_views([(False, view_type) for view_type in view_types])
            self.assertEqual(set(views["views"]), set(view_types), action.name)
            domain = safe_eval(action.domain or "[]", {"uid": self.user_salesman.id})
            Model.search_read(domain, ["display_name"], limit=5)

    def _module_action_ids(self):
        return (
            self.env["ir.model.data"]
            .search(
                [("module", "=", "subscription_close"), ("model", "=", "ir.actions.act_window")]
            )
            .mapped("res_id")
        )
