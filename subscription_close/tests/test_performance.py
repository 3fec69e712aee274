from unittest.mock import patch

from odoo.fields import Command
from odoo.tests import tagged, users, warmup

from .common import SubscriptionCommon


@tagged("post_install", "-at_install")
class TestClosePerformance(SubscriptionCommon):
    """Query counts of closing: constant whatever the number of subscriptions."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.reason = cls.env.ref("subscription_close.close_reason_too_expensive")
        cls.orders_10 = cls._create_running_subscriptions(10)
        cls.orders_200 = cls._create_running_subscriptions(200)

    @classmethod
    def _create_running_subscriptions(cls, count):
        orders = cls.env["sale.order"].create(
            [
                {
                    "partner_id": cls.customer.id,
                    "plan_id": cls.plan_month.id,
                    "user_id": cls.user_salesman.id,
                    "order_line": [Command.create({"product_id": cls.product_sub.id})],
                }
                for _i in range(count)
            ]
        )
        orders.action_confirm()
        return orders

    def _measure(self, expected, func):
        """Run ``func`` under assertQueryCount and return the queries it made."""
        self.env.invalidate_all()
        before = self.cr.sql_log_count
        with self.assertQueryCount(sc_salesman=expected):
            func()
        return self.cr.sql_log_count - before

    @users("sc_salesman")
    @warmup
    def test_batch_close_query_count(self):
        # Closing N subscriptions costs 14 queries, whatever N (caches warm):
        #   1  read the orders (access check, subscription state, company)
        #   1  read the close reason (active, company, name)
        #   1  read the user's partner (author of the notes: name, email)
        #   2  read the company and its partner (reply-to of the notes)
        #   1  check the protected "expired" reason exists (fallback reason)
        #   1  read the recurring plans (closure email on or off)
        #   1  UPDATE sale_order: subscription state, end date, close reason,
        #      closure email to send
        #   1  read back the new values (for the tracking in the chatter)
        #   1  INSERT the N chatter notes
        #   1  INSERT their tracking values (3 per note)
        #   3  trigger the closure email cron (check, read, INSERT trigger)
        orders_10 = self.orders_10.with_env(self.env)
        orders_200 = self.orders_200.with_env(self.env)
        reason = self.reason.with_env(self.env)
        queries_10 = self._measure(14, lambda: orders_10._action_close(reason))
        queries_200 = self._measure(14, lambda: orders_200._action_close(reason))
        if self.warm:
            self.assertEqual(queries_10, queries_200)
        self.assertEqual(set((orders_10 + orders_200).mapped("subscription_state")), {"6_churn"})

    @users("sc_salesman")
    @warmup
    def test_reopen_query_count(self):
        self.env.invalidate_all()
        (self.orders_10 + self.orders_200).sudo()._action_close(self.reason)
        self.env.flush_all()
        orders_10 = self.orders_10.with_env(self.env)
        orders_200 = self.orders_200.with_env(self.env)
        # Reopening N subscriptions costs 8 queries, whatever N: read the
        # orders, read the user's partner, UPDATE sale_order, read back the new
        # values, read the former close reasons (tracking), read the company
        # (reply-to), INSERT the notes, INSERT their tracking values.
        queries_10 = self._measure(8, orders_10.action_reopen)
        queries_200 = self._measure(8, orders_200.action_reopen)
        if self.warm:
            self.assertEqual(queries_10, queries_200)
        self.assertEqual(set(orders_200.mapped("subscription_state")), {"3_progress"})

    @users("sc_salesman")
    @warmup
    def test_constant_cost_per_chunk(self):
        """Large selections are closed by chunks: every further chunk costs the
        same number of queries (here with chunks of 5 orders: 2, 3, 4 chunks)."""
        orders = self.orders_200.with_env(self.env)
        reason = self.reason.with_env(self.env)
        counts = []
        offset = 0
        with patch("odoo.addons.subscription_close.models.sale_order.CLOSE_CHUNK_SIZE", 5):
            for size in (10, 15, 20):
                selection = orders[offset : offset + size]
                offset += size
                self.env.invalidate_all()
                before = self.cr.sql_log_count
                selection._action_close(reason)
                self.env.flush_all()
                counts.append(self.cr.sql_log_count - before)
                self.assertEqual(set(selection.mapped("subscription_state")), {"6_churn"})
                closing_notes = selection.message_ids.filtered(lambda m: "Close Reason" in m.body)
                self.assertEqual(len(closing_notes), size)
        if self.warm:
            self.assertEqual(counts[2] - counts[1], counts[1] - counts[0], counts)
