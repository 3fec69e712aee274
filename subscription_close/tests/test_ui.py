from dateutil.relativedelta import relativedelta

from odoo.tests import HttpCase, tagged

from .common import SubscriptionCommon


@tagged("post_install", "-at_install")
class TestSubscriptionUi(HttpCase, SubscriptionCommon):
    def test_backend_close_tour(self):
        order = self._create_subscription(user_id=self.user_salesman.id)
        self.user_salesman.password = "sc_salesman_pwd"
        self.start_tour(
            f"/odoo/action-subscription_close.sale_subscription_action/{order.id}",
            "subscription_close_backend_tour",
            login=self.user_salesman.login,
        )
        self.assertEqual(order.subscription_state, "6_churn")
        self.assertEqual(
            order.close_reason_id, self.env.ref("subscription_close.close_reason_too_expensive")
        )
        self.assertIn("Close Reason: Too expensive", order.message_ids[0].body)

    def test_portal_close_tour(self):
        order = self._create_subscription()
        self.start_tour(
            f"/my/orders/{order.id}",
            "subscription_close_portal_tour",
            login=self.user_portal.login,
        )
        self.assertEqual(order.subscription_state, "6_churn")
        self.assertEqual(
            order.close_reason_id, self.env.ref("subscription_close.close_reason_not_needed")
        )
        closed_subtype = self.env.ref("subscription_close.mt_subscription_closed")
        message = order.message_ids.filtered(lambda m: m.subtype_id == closed_subtype)
        self.assertEqual(message.author_id, self.customer)
        self.assertIn("Close Reason: No longer needed", message.body)

    def test_portal_scheduled_close_tour(self):
        self.plan_month.user_closable_options = "end_of_period"
        order = self._create_subscription()
        order.start_date = order._subscription_today() - relativedelta(days=10)
        self.start_tour(
            f"/my/orders/{order.id}",
            "subscription_close_portal_scheduled_tour",
            login=self.user_portal.login,
        )
        self.assertEqual(order.subscription_state, "3_progress")
        self.assertFalse(order.is_closing)
        bodies = order.message_ids.mapped("body")
        self.assertTrue(any("Closing scheduled by" in body for body in bodies))
        self.assertTrue(any("Subscription kept by" in body for body in bodies))

    def test_portal_pause_instead_tour(self):
        self.plan_month.user_pausable = True
        order = self._create_subscription(user_id=self.user_salesman.id)
        today = order._subscription_today()
        self.start_tour(
            f"/my/orders/{order.id}",
            "subscription_close_pause_tour",
            login=self.user_portal.login,
        )
        self.env.invalidate_all()
        self.assertEqual(order.subscription_state, "3_progress")
        self.assertFalse(order.close_reason_id)
        self.assertFalse(order.pause_start_date)
        self.assertEqual(order.next_invoice_date, today)  # paused and resumed the same day
        paused_subtype = self.env.ref("subscription_close.mt_subscription_paused")
        messages = order.message_ids.filtered(lambda m: m.subtype_id == paused_subtype)
        self.assertEqual(len(messages), 2)
        self.assertIn("Subscription resumed by", messages[0].body)
        self.assertIn("Subscription paused by", messages[1].body)
        self.assertEqual(messages.author_id, self.customer)
        reason = self.env.ref("subscription_close.close_reason_not_needed")
        events = self.env["sale.subscription.retention.event"].search(
            [("order_id", "=", order.id)], order="id"
        )
        self.assertEqual(events.mapped("event_type"), ["started", "shown", "paused"])
        self.assertEqual(events.close_reason_id, reason)
        self.assertEqual(set(events.mapped("offer")), {"pause"})


@tagged("post_install", "-at_install")
class TestCancelPageOnAPhone(HttpCase, SubscriptionCommon):
    browser_size = "375x667"
    touch_enabled = True

    def test_cancel_page_tour(self):
        # From the page of a subscription a customer opens from an email,
        # without an account.
        order = self._create_subscription()
        self.start_tour(order.get_portal_url(), "subscription_close_cancel_page_tour")
        declaration = self.env["sale.subscription.cancellation"].sudo().search([])
        self.assertEqual(len(declaration), 1)
        self.assertEqual(
            (declaration.order_reference, declaration.email, declaration.kind, declaration.cause),
            ("S-TOUR-REF", "tour@example.com", "ordinary", False),
        )
        # The browser gave its time zone.
        self.assertTrue(declaration.customer_tz)
