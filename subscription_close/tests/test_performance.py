import logging
from unittest.mock import patch

from dateutil.relativedelta import relativedelta

from odoo import fields
from odoo.fields import Command
from odoo.tests import tagged, users, warmup

from .common import SubscriptionCommon

_logger = logging.getLogger(__name__)


def per_hundred(count, per_order=1):
    """Queries the ORM needs to write or insert ``count * per_order`` rows:
    it writes and inserts 100 rows per query."""
    return -(-count * per_order // 100)


class PerformanceCommon(SubscriptionCommon):
    """10 and 200 subscriptions in progress, and a helper to count queries."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
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
        # As after the invoicing job: the current period is invoiced, the
        # next invoice is due in a month (nothing left to invoice now).
        orders.with_context(tracking_disable=True).write(
            {"next_invoice_date": fields.Date.add(orders[0].start_date, months=1)}
        )
        return orders

    def _popup(self, orders):
        return self.env["sale.order.close"].create(
            {"order_ids": [Command.set(orders.ids)], "close_reason_id": self.reason.id}
        )

    def _measure(self, expected, func):
        """Run ``func`` under assertQueryCount (tracking included) and return
        the queries it made."""
        self.env.flush_all()
        self.env.invalidate_all()
        before = self.cr.sql_log_count
        with self.assertQueryCount(sc_salesman=expected):
            func()
            self.env.flush_all()
        return self.cr.sql_log_count - before


@tagged("post_install", "-at_install")
class TestClosePerformance(PerformanceCommon):
    """Query counts of closing: a fixed part, plus what the ORM's batching of
    100 rows per query adds; never a query per subscription."""

    @users("sc_salesman")
    @warmup
    def test_popup_close_query_count(self):
        # Submit of the Close popup for N subscriptions, "now":
        #   1  read the current user (access rights)
        #   2  read the popup and its subscriptions (m2m)
        #   1  read the orders (access check, state, company, tracked fields)
        #   1  read the user's partner (author of the notes, name in them)
        #   2  read the orders' company and its partner (timezone, reply-to)
        #   1  read the close reason (active, company, name)
        #   1  read the recurring plans (closure email, credit note on close)
        #   3  trigger the closure email cron (check, read, INSERT trigger)
        #   1  read the currencies (lost MRR in the company currency)
        # (the period is invoiced: sale's figures of the lines do not change
        # and nothing of them is read nor recomputed)
        # and per 100 subscriptions (the ORM's batching):
        #   1  UPDATE sale_order (state, end date, reason, email to send,
        #      churn type and lost MRR)
        #   1  INSERT mail_message (one note per subscription)
        #   3  INSERT mail_tracking_value (3 tracked values per note)
        def expected(count):
            return 13 + per_hundred(count) * 2 + per_hundred(count, per_order=3)

        popup_10 = self._popup(self.orders_10.with_env(self.env))
        popup_200 = self._popup(self.orders_200.with_env(self.env))
        counts = [
            self._measure(expected(10), popup_10.action_close),
            self._measure(expected(200), popup_200.action_close),
        ]
        if self.warm:  # exactly: fewer queries than expected would pass assertQueryCount
            self.assertEqual(counts, [expected(10), expected(200)])
        orders = self.orders_10 + self.orders_200
        self.assertEqual(set(orders.mapped("subscription_state")), {"6_churn"})
        self.assertEqual(len(orders.message_ids.filtered(lambda m: "Close Reason" in m.body)), 210)

    @users("sc_salesman")
    @warmup
    def test_reopen_query_count(self):
        (self.orders_10 + self.orders_200).sudo()._action_close(
            self.reason, (self.orders_10 + self.orders_200)._get_subscription_today()
        )
        self.env.flush_all()
        orders_10 = self.orders_10.with_env(self.env)
        orders_200 = self.orders_200.with_env(self.env)

        # Reopening N subscriptions:
        #   1  read the current user (access rights)
        #   1  read the orders (access check, state, tracked fields)
        #   2  read the user's partner and the company's (author, reply-to)
        #   1  read the former close reasons (their names in the tracking)
        #   1  read the company (timezone)
        #   1  look for draft prorated credit notes to cancel (none here)
        #   1  read the currencies (lost MRR back to zero)
        # (the period is invoiced and the next invoice date stays: sale's
        # figures of the lines do not change)
        # and per 100 subscriptions: 1 UPDATE sale_order, 1 INSERT
        # mail_message, 3 INSERT mail_tracking_value.
        def expected(count):
            return 8 + per_hundred(count) * 2 + per_hundred(count, per_order=3)

        counts = [
            self._measure(expected(10), orders_10.action_reopen),
            self._measure(expected(200), orders_200.action_reopen),
        ]
        if self.warm:
            self.assertEqual(counts, [expected(10), expected(200)])
        self.assertEqual(set(orders_200.mapped("subscription_state")), {"3_progress"})

    @users("sc_salesman")
    @warmup
    def test_constant_cost_per_chunk(self):
        """Large selections are closed by chunks: every further chunk costs the
        same number of queries (here with chunks of 5 orders: 2, 3, 4 chunks,
        after a first selection that loads what every closing reads once)."""
        orders = self.orders_200.with_env(self.env)
        counts = []
        offset = 0
        with patch("odoo.addons.subscription_close.models.sale_subscription_job.CHUNK_SIZE", 5):
            for size in (5, 10, 15, 20):
                selection = orders[offset : offset + size]
                offset += size
                end_dates = selection._get_subscription_today()
                self.env.flush_all()
                self.env.invalidate_all()
                before = self.cr.sql_log_count
                selection._action_close(self.reason.with_env(self.env), end_dates)
                self.env.flush_all()
                counts.append(self.cr.sql_log_count - before)
                self.assertEqual(set(selection.mapped("subscription_state")), {"6_churn"})
                closing_notes = selection.message_ids.filtered(lambda m: "Close Reason" in m.body)
                self.assertEqual(len(closing_notes), size)
        if self.warm:
            self.assertEqual(counts[3] - counts[2], counts[2] - counts[1], counts)


@tagged("post_install", "-at_install")
class TestPausePerformance(PerformanceCommon):
    """Query counts of pausing and resuming: a fixed part, plus what the
    ORM's batching of 100 rows per query adds; never a query per
    subscription."""

    # Pausing or resuming N subscriptions whose current period is invoiced:
    #   1  read the orders (access check, state, dates, tracked fields)
    #   2  read the user and their partner (author of the notes, name in them)
    #   2  read the orders' company and its partner (timezone, reply-to)
    # (the period is invoiced and not due: sale's figures of the lines do not
    # change and nothing of them is read nor recomputed)
    # and per 100 subscriptions (the ORM's batching):
    #   1  UPDATE sale_order (state, pause and resume dates)
    #   1  INSERT mail_message (one note per subscription)
    #   3  INSERT mail_tracking_value (3 tracked values per note: the status
    #      and the two dates)
    @staticmethod
    def _expected(count):
        return 5 + per_hundred(count) * 2 + per_hundred(count, per_order=3)

    @users("sc_salesman")
    @warmup
    def test_pause_query_count(self):
        orders_10 = self.orders_10.with_env(self.env)
        orders_200 = self.orders_200.with_env(self.env)
        resume_date = orders_10[0]._subscription_today() + relativedelta(months=1)
        counts = []
        for orders in (orders_10, orders_200):
            counts.append(
                self._measure(
                    self._expected(len(orders)),
                    lambda orders=orders: orders._action_pause(
                        dict.fromkeys(orders.ids, resume_date), reason="Holidays"
                    ),
                )
            )
        orders = orders_10 + orders_200
        self.assertEqual(set(orders.mapped("subscription_state")), {"4_paused"})
        self.assertEqual(set(orders.mapped("resume_date")), {resume_date})
        paused = orders.message_ids.filtered(lambda m: "Subscription paused by" in m.body)
        self.assertEqual(len(paused), 210)
        _logger.info("pause: %s queries for 10 subscriptions, %s for 200", *counts)
        if self.warm:  # exactly: fewer queries than expected would pass assertQueryCount
            self.assertEqual(counts, [self._expected(10), self._expected(200)])

    @users("sc_salesman")
    @warmup
    def test_resume_query_count(self):
        orders_10 = self.orders_10.with_env(self.env)
        orders_200 = self.orders_200.with_env(self.env)
        resume_date = orders_10[0]._subscription_today() + relativedelta(months=1)
        (orders_10 + orders_200)._action_pause(
            dict.fromkeys((orders_10 + orders_200).ids, resume_date)
        )
        counts = []
        for orders in (orders_10, orders_200):
            counts.append(self._measure(self._expected(len(orders)), orders.action_resume))
        orders = orders_10 + orders_200
        self.assertEqual(set(orders.mapped("subscription_state")), {"3_progress"})
        resumed = orders.message_ids.filtered(lambda m: "Subscription resumed by" in m.body)
        self.assertEqual(len(resumed), 210)
        _logger.info("resume: %s queries for 10 subscriptions, %s for 200", *counts)
        if self.warm:
            self.assertEqual(counts, [self._expected(10), self._expected(200)])
