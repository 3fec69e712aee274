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
