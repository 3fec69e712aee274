from freezegun import freeze_time

from odoo.exceptions import ValidationError
from odoo.fields import Command
from odoo.tests import tagged

from .common import SubscriptionCommon, SubscriptionPortalCommon


@tagged("post_install", "-at_install")
class TestChurnAnalysis(SubscriptionCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.expensive = cls.env.ref("subscription_close.close_reason_too_expensive")
        cls.not_needed = cls.env.ref("subscription_close.close_reason_not_needed")

    @classmethod
    def _subscription(cls, plan, price):
        return cls._create_subscription(
            plan=plan,
            order_line=[Command.create({"product_id": cls.product_sub.id, "price_unit": price})],
        )

    def test_monthly_recurring_revenue(self):
        self.assertEqual(self._subscription(self.plan_month, 30).recurring_monthly, 30)
        self.assertEqual(self._subscription(self.plan_year, 1200).recurring_monthly, 100)
        # Every 2 weeks: 24 per fortnight is 24 * 52 / 2 / 12 = 52 a month.
        self.assertAlmostEqual(self._subscription(self.plan_week, 24).recurring_monthly, 52)
        self.assertEqual(self.sale_order.recurring_monthly, 0)

    def test_churn_numbers(self):
        with freeze_time("2026-03-10"):
            monthly_a = self._subscription(self.plan_month, 30)
            monthly_b = self._subscription(self.plan_month, 30)
            yearly = self._subscription(self.plan_year, 1200)
            weekly = self._subscription(self.plan_week, 24)
            running = self._subscription(self.plan_month, 500)
            self._close(monthly_a + weekly, self.expensive)
            self._close(yearly, self.not_needed)
        with freeze_time("2026-04-02"):
            self._close(monthly_b, self.expensive)
        churned = monthly_a + monthly_b + yearly + weekly
        domain = [("id", "in", (churned + running).ids), ("subscription_state", "=", "6_churn")]
        SaleOrder = self.env["sale.order"]

        by_reason = {
            reason: (count, mrr)
            for reason, count, mrr in SaleOrder._read_group(
                domain, ["close_reason_id"], ["__count", "recurring_monthly:sum"]
            )
        }
        self.assertEqual(by_reason[self.expensive][0], 3)
        self.assertAlmostEqual(by_reason[self.expensive][1], 30 + 30 + 52)
        self.assertEqual(by_reason[self.not_needed][0], 1)
        self.assertAlmostEqual(by_reason[self.not_needed][1], 100)

        by_month = {
            month.strftime("%Y-%m"): (count, mrr)
            for month, count, mrr in SaleOrder._read_group(
                domain, ["end_date:month"], ["__count", "recurring_monthly:sum"]
            )
        }
        self.assertEqual(by_month["2026-03"][0], 3)
        self.assertAlmostEqual(by_month["2026-03"][1], 30 + 100 + 52)
        self.assertEqual(by_month["2026-04"], (1, 30))

        by_plan = dict(SaleOrder._read_group(domain, ["plan_id"], ["recurring_monthly:sum"]))
        self.assertAlmostEqual(by_plan[self.plan_week], 52)
        self.assertAlmostEqual(by_plan[self.plan_year], 100)
        self.assertAlmostEqual(by_plan[self.plan_month], 60)

    def test_churn_grouping_is_one_query(self):
        with freeze_time("2026-03-10"):
            orders = self.env["sale.order"]
            for _i in range(30):
                orders |= self._subscription(self.plan_month, 10)
            self._close(orders, self.expensive)
        domain = [("id", "in", orders.ids), ("subscription_state", "=", "6_churn")]
        self.env.invalidate_all()
        self.env["sale.order"]._read_group(domain, ["close_reason_id"], ["recurring_monthly:sum"])
        with self.assertQueryCount(1):
            result = self.env["sale.order"]._read_group(
                domain, ["close_reason_id", "end_date:month"], ["__count", "recurring_monthly:sum"]
            )
        self.assertEqual(result[0][2], 30)
        self.assertAlmostEqual(result[0][3], 300)

    def test_churn_action(self):
        action = self.env.ref("subscription_close.sale_subscription_churn_action")
        self.assertEqual(action.view_mode.split(",")[0], "graph")
        self.assertIn("6_churn", action.domain)
        SaleOrder = self.env["sale.order"].with_user(self.user_salesman)
        views = SaleOrder.get_views(
            [
                (action.view_ids[0].view_id.id, "graph"),
                (action.view_ids[1].view_id.id, "pivot"),
                (action.search_view_id.id, "search"),
            ]
        )
        graph = views["views"]["graph"]["arch"]
        self.assertIn('type="bar"', graph)
        self.assertIn('name="close_reason_id"', graph)
        self.assertIn("filter_last_12_months", views["views"]["search"]["arch"])
        menu = self.env.ref("subscription_close.menu_subscription_churn")
        self.assertIn(
            menu.id, self.env["ir.ui.menu"].with_user(self.user_salesman)._visible_menu_ids()
        )

    def test_reason_count_opens_churn(self):
        order = self._subscription(self.plan_month, 30)
        self._close(order, self.expensive)
        action = self.expensive.action_open_subscriptions()
        self.assertEqual(action["res_model"], "sale.order")
        self.assertEqual(action["views"][0][1], "list")
        self.assertIn("graph", action["view_mode"])
        self.assertIn(order, self.env["sale.order"].search(action["domain"]))


@tagged("post_install", "-at_install")
class TestRetentionOffer(SubscriptionPortalCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.offer_reason = cls.env.ref("subscription_close.close_reason_too_expensive")
        cls.offer_reason.write(
            {
                "retention_message": "<p>Our <b>Basic</b> plan costs half as much.</p>"
                '<script>alert("owned")</script><p onclick="steal()">Stay with us</p>',
                "retention_button_text": "Switch to <Basic>",
                "retention_url": "/my/home",
            }
        )
        cls.plain_reason = cls.env.ref("subscription_close.close_reason_not_needed")
        cls.subscription = cls._create_subscription()

    def test_message_is_sanitised(self):
        message = str(self.offer_reason.retention_message)
        self.assertIn("<b>Basic</b>", message)
        self.assertNotIn("script", message)
        self.assertNotIn("owned", message)
        self.assertNotIn("onclick", message)

    def test_links_are_checked(self):
        for bad in (
            "javascript:alert(1)",
            "//evil.example.com",
            "data:text/html,x",
            "ftp://x",
            "mailto:",
        ):
            with self.assertRaises(ValidationError, msg=bad):
                self.plain_reason.retention_url = bad
        for good in (
            "/my/home",
            "https://example.com/offer",
            "http://example.com",
            "mailto:sales@example.com?subject=Basic",
        ):
            self.plain_reason.retention_url = good

    def test_popup_shows_the_offer(self):
        self._login()
        page = self.url_open(self.subscription.get_portal_url()).text
        form = page[page.index('id="subscription_close_form"') :]
        form = form[: form.index("</form>")]
        offer_input = form[form.index(f'value="{self.offer_reason.id}"') - 200 :]
        self.assertIn('data-retention="1"', offer_input[:400])
        self.assertIn("costs half as much", form)
        self.assertIn("Close anyway", form)
        self.assertIn("Switch to &lt;Basic&gt;", form)
        self.assertNotIn("Switch to <Basic>", form)
        self.assertNotIn("alert(", form)
        self.assertNotIn("onclick", form)

    def test_offer_shown_before_closing(self):
        self._login()
        response = self._post_close(self.subscription, close_reason_id=self.offer_reason.id)
        self.assertIn(response.status_code, (302, 303))
        location = response.headers["Location"]
        self.assertIn("subscription_message=retention", location)
        self.assertIn(f"retention_reason={self.offer_reason.id}", location)
        self.env.invalidate_all()
        self.assertEqual(self.subscription.subscription_state, "3_progress")
        self.assertFalse(self._closing_messages(self.subscription))
        page = self.url_open(location).text
        self.assertIn('id="subscription_retention_form"', page)
        self.assertIn("costs half as much", page)

        response = self._post_close(
            self.subscription, close_reason_id=self.offer_reason.id, retention_acknowledged="1"
        )
        self.assertIn("subscription_message=closed", response.headers["Location"])
        self.env.invalidate_all()
        self.assertEqual(self.subscription.subscription_state, "6_churn")
        self.assertIn("a retention offer was shown", self._closing_messages(self.subscription).body)

    def test_reason_without_offer_closes_directly(self):
        self._login()
        response = self._post_close(self.subscription, close_reason_id=self.plain_reason.id)
        self.assertIn("subscription_message=closed", response.headers["Location"])
        self.env.invalidate_all()
        self.assertEqual(self.subscription.subscription_state, "6_churn")
        self.assertNotIn("retention", self._closing_messages(self.subscription).body)

    def test_tampered_retention_requests(self):
        hidden = self.env["sale.order.close.reason"].create(
            {
                "name": "Hidden with offer",
                "visible_in_portal": False,
                "retention_message": "<p>Secret internal offer</p>",
            }
        )
        self._login()
        for value in ("yes", "0", "true"):
            response = self._post_close(
                self.subscription,
                close_reason_id=self.offer_reason.id,
                retention_acknowledged=value,
            )
            self.assertIn("subscription_message=invalid_request", response.headers["Location"])
        base = self.subscription.get_portal_url()
        for value in (hidden.id, "abc", self.plain_reason.id):
            page = self.url_open(f"{base}&subscription_message=retention&retention_reason={value}")
            self.assertNotIn('id="subscription_retention_form"', page.text)
            self.assertNotIn("Secret internal offer", page.text)
        self.env.invalidate_all()
        self.assertEqual(self.subscription.subscription_state, "3_progress")
        self.assertFalse(self._closing_messages(self.subscription))

    def test_retention_tour(self):
        self.start_tour(
            f"/my/orders/{self.subscription.id}",
            "subscription_close_retention_tour",
            login=self.user_portal.login,
        )
        self.env.invalidate_all()
        self.assertEqual(self.subscription.subscription_state, "6_churn")
        self.assertEqual(self.subscription.close_reason_id, self.offer_reason)
        message = self._closing_messages(self.subscription)
        self.assertEqual(len(message), 1)
        self.assertIn("a retention offer was shown", message.body)


@tagged("post_install", "-at_install")
class TestRetentionKeptTour(SubscriptionPortalCommon):
    def test_retention_kept_tour(self):
        reason = self.env.ref("subscription_close.close_reason_too_expensive")
        reason.retention_message = "<p>Our Basic plan costs half as much.</p>"
        order = self._create_subscription()
        self.start_tour(
            f"/my/orders/{order.id}",
            "subscription_close_retention_kept_tour",
            login=self.user_portal.login,
        )
        self.env.invalidate_all()
        self.assertEqual(order.subscription_state, "3_progress")
        self.assertFalse(order.close_reason_id)
        self.assertFalse(order.end_date)
        subtype = self.env.ref("subscription_close.mt_subscription_closed")
        self.assertFalse(order.message_ids.filtered(lambda m: m.subtype_id == subtype))
