from contextlib import contextmanager
from datetime import date
from unittest.mock import patch

from freezegun import freeze_time

from odoo.fields import Command
from odoo.tests import new_test_user, tagged

from .common import SubscriptionCommon, SubscriptionPortalCommon

CLOSING_MODULE = "odoo.addons.subscription_close.models.sale_subscription_job"


@tagged("post_install", "-at_install")
class TestStateChangesThroughWrite(SubscriptionPortalCommon):
    """Every subscription state change goes through ``write()``: automation
    rules fire and ``write`` overrides see the new values, whatever the way
    (popup, portal, scheduled action, reopen, cancel closing)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # One automation rule per change, each writing its own mark in the
        # customer reference of the order ("set a field" action).
        cls._add_rule("churned", "subscription_state", "[('subscription_state', '=', '6_churn')]")
        cls._add_rule(
            "reopened",
            "subscription_state",
            "[('subscription_state', '=', '3_progress')]",
            pre_domain="[('subscription_state', '=', '6_churn')]",
        )
        cls._add_rule(
            "closing",
            "end_date",
            "[('subscription_state', '=', '3_progress'), ('end_date', '!=', False)]",
        )
        cls._add_rule(
            "kept",
            "end_date",
            "[('subscription_state', '=', '3_progress'), ('end_date', '=', False)]",
            pre_domain="[('subscription_state', '=', '3_progress'), ('end_date', '!=', False)]",
        )
        cls._add_rule("paused", "subscription_state", "[('subscription_state', '=', '4_paused')]")
        cls._add_rule(
            "resumed",
            "subscription_state",
            "[('subscription_state', '=', '3_progress')]",
            pre_domain="[('subscription_state', '=', '4_paused')]",
        )

    @classmethod
    def _add_rule(cls, mark, field_name, domain, pre_domain=None):
        model = cls.env.ref("sale.model_sale_order")
        field = cls.env["ir.model.fields"]._get("sale.order", field_name)
        rule = cls.env["base.automation"].create(
            {
                "name": f"Subscription {mark}",
                "model_id": model.id,
                "trigger": "on_create_or_write",
                "trigger_field_ids": [Command.set(field.ids)],
                "filter_domain": domain,
                "filter_pre_domain": pre_domain or False,
            }
        )
        cls.env["ir.actions.server"].create(
            {
                "name": f"Mark {mark}",
                "base_automation_id": rule.id,
                "model_id": model.id,
                "state": "object_write",
                "update_path": "client_order_ref",
                "value": mark,
            }
        )

    @contextmanager
    def _watch_writes(self):
        """Patch ``sale.order.write`` (as another addon's override would) and
        yield the ``{order_id: {field: value}}`` it was called with."""
        SaleOrder = type(self.env["sale.order"])
        original = SaleOrder.write
        seen = {}

        def write(records, vals):
            for order_id in records.ids:
                seen.setdefault(order_id, {}).update(vals)
            return original(records, vals)

        with patch.object(SaleOrder, "write", write):
            yield seen

    def test_popup_one_and_many(self):
        one = self._create_subscription()
        many = self._create_subscription() + self._create_subscription()
        for orders in (one, many):
            with self._watch_writes() as seen:
                self._close_with_wizard(orders)
            for order in orders:
                self.assertEqual(order.client_order_ref, "churned")
                self.assertEqual(seen[order.id]["subscription_state"], "6_churn")
                self.assertEqual(seen[order.id]["close_reason_id"], self.reason.id)

    @freeze_time("2026-06-10")
    def test_schedule_cron_cancel_and_reopen(self):
        kept, due = self._create_subscription(), self._create_subscription()
        with self._watch_writes() as seen:
            self._close_with_wizard(kept + due, when="date", close_date=date(2026, 6, 20))
        for order in kept + due:
            self.assertEqual(order.client_order_ref, "closing")
            self.assertEqual(seen[order.id]["end_date"], date(2026, 6, 20))

        with self._watch_writes() as seen:
            kept.with_user(self.user_salesman).action_cancel_close()
        self.assertEqual(kept.client_order_ref, "kept")
        self.assertIs(seen[kept.id]["end_date"], False)

        with freeze_time("2026-06-21"), self._watch_writes() as seen:
            self._run_cron("subscription_close.ir_cron_close_expired")
        self.assertEqual(due.client_order_ref, "churned")
        self.assertEqual(seen[due.id]["subscription_state"], "6_churn")
        self.assertNotIn(kept.id, seen)

        with self._watch_writes() as seen:
            due.with_user(self.user_salesman).action_reopen()
        self.assertEqual(due.client_order_ref, "reopened")
        self.assertEqual(seen[due.id]["subscription_state"], "3_progress")

    @freeze_time("2026-06-10")
    def test_pause_popup_resume_button_and_cron(self):
        by_hand, by_cron = self._create_subscription(), self._create_subscription()
        with self._watch_writes() as seen:
            self.env["sale.order.pause"].with_user(self.user_salesman).create(
                {
                    "order_ids": [Command.set((by_hand + by_cron).ids)],
                    "resume_date": date(2026, 6, 20),
                    "pause_reason": "Holidays",
                }
            ).action_pause()
        for order in by_hand + by_cron:
            self.assertEqual(order.client_order_ref, "paused")
            self.assertEqual(seen[order.id]["subscription_state"], "4_paused")
            self.assertEqual(seen[order.id]["resume_date"], date(2026, 6, 20))

        with freeze_time("2026-06-15"), self._watch_writes() as seen:
            by_hand.with_user(self.user_salesman).action_resume()
        self.assertEqual(by_hand.client_order_ref, "resumed")
        self.assertEqual(seen[by_hand.id]["subscription_state"], "3_progress")
        self.assertEqual(seen[by_hand.id]["next_invoice_date"], date(2026, 6, 15))

        with freeze_time("2026-06-20"), self._watch_writes() as seen:
            self._run_cron("subscription_close.ir_cron_resume_paused")
        self.assertEqual(by_cron.client_order_ref, "resumed")
        self.assertEqual(seen[by_cron.id]["subscription_state"], "3_progress")
        self.assertEqual(seen[by_cron.id]["next_invoice_date"], date(2026, 6, 20))
        self.assertNotIn(by_hand.id, seen)

    @freeze_time("2026-06-10")
    def test_portal_pause_and_resume(self):
        self.plan_month.user_pausable = True
        order = self._create_subscription()
        self._login()
        with self._watch_writes() as seen:
            response = self._post(order, "pause", pause_months="1")
        self.assertEqual(self._redirect_code(response), "paused")
        self.env.invalidate_all()
        self.assertEqual(order.client_order_ref, "paused")
        self.assertEqual(seen[order.id]["resume_date"], date(2026, 7, 10))
        with self._watch_writes() as seen:
            self.assertEqual(self._redirect_code(self._post(order, "resume")), "resumed")
        self.env.invalidate_all()
        self.assertEqual(order.client_order_ref, "resumed")
        self.assertEqual(seen[order.id]["subscription_state"], "3_progress")
        subtype = self.env.ref("subscription_close.mt_subscription_paused")
        messages = order.message_ids.filtered(lambda m: m.subtype_id == subtype)
        self.assertEqual(messages.author_id, self.customer)
        self.assertEqual(len(messages), 2)

    def test_portal_close_and_keep(self):
        order = self._create_subscription()
        self.plan_month.user_closable_options = "end_of_period"
        self._login()
        with self._watch_writes() as seen:
            response = self._post_close(order, close_reason_id=self.reason.id)
        self.assertEqual(self._redirect_code(response), "closing")
        self.env.invalidate_all()
        self.assertEqual(order.client_order_ref, "closing")
        self.assertEqual(seen[order.id]["close_reason_id"], self.reason.id)

        with self._watch_writes() as seen:
            self.assertEqual(self._redirect_code(self._post(order, "keep")), "kept")
        self.env.invalidate_all()
        self.assertEqual(order.client_order_ref, "kept")
        self.assertIs(seen[order.id]["close_reason_id"], False)

        self.plan_month.user_closable_options = "now"
        with self._watch_writes() as seen:
            response = self._post_close(order, close_reason_id=self.reason.id)
        self.assertEqual(self._redirect_code(response), "closed")
        self.env.invalidate_all()
        self.assertEqual(order.client_order_ref, "churned")
        self.assertEqual(seen[order.id]["subscription_state"], "6_churn")
        # Posted in the customer's name with the addon's subtype.
        message = self._closing_messages(order)[0]
        self.assertEqual(message.author_id, self.customer)
        self.assertIn("Subscription closed by", message.body)


@tagged("post_install", "-at_install")
class TestClosingChatterAndBatches(SubscriptionCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()

    def test_one_message_per_change_in_a_transaction(self):
        order = self._create_subscription()
        self.flush_tracking()
        before = order.message_ids
        order.next_invoice_date = date(2031, 1, 1)
        self._close(order, self.reason)
        self.flush_tracking()
        self.env.invalidate_all()
        new = order.message_ids - before
        self.assertEqual(len(new), 1, new.mapped("body"))
        tracked = set(new.tracking_value_ids.field_id.mapped("name"))
        self.assertEqual(
            tracked, {"next_invoice_date", "subscription_state", "end_date", "close_reason_id"}
        )
        self.assertIn("Close Reason: Too expensive", new.body)

    def test_a_second_change_is_a_second_message(self):
        order = self._create_subscription()
        self.flush_tracking()
        before = order.message_ids
        self._close(order, self.reason)
        order._action_reopen()
        self.flush_tracking()
        self.env.invalidate_all()
        new = order.message_ids - before
        self.assertEqual(len(new), 2)
        self.assertIn("reopened", new[0].body)
        self.assertIn("closed", new[1].body)

    def test_all_or_nothing_across_chunks(self):
        running = self._create_subscription() + self._create_subscription()
        running += self._create_subscription()
        quotation = self._create_subscription(confirm=False)
        selection = running + quotation  # the refused order is in the second chunk
        self.flush_tracking()
        messages = self.env["mail.message"].search_count([("model", "=", "sale.order")])
        with (
            patch(f"{CLOSING_MODULE}.CHUNK_SIZE", 2),
            self.assertRaisesText(f"{quotation.name}: still a quotation"),
        ):
            self._close(selection, self.reason)
        self.assertEqual(set(running.mapped("subscription_state")), {"3_progress"})
        self.assertFalse(running.close_reason_id)
        self.assertEqual(
            self.env["mail.message"].search_count([("model", "=", "sale.order")]), messages
        )
        # Without the refused order, every chunk is closed.
        with patch(f"{CLOSING_MODULE}.CHUNK_SIZE", 2):
            self._close(running, self.reason)
        self.assertEqual(set(running.mapped("subscription_state")), {"6_churn"})

    def test_refusal_names_the_first_twenty(self):
        quotations = self.env["sale.order"].create(
            [
                {
                    "partner_id": self.customer.id,
                    "plan_id": self.plan_month.id,
                    "order_line": [Command.create({"product_id": self.product_sub.id})],
                }
                for _i in range(25)
            ]
        )
        with self.assertRaisesText("- and 5 more") as caught:
            quotations.action_open_close_wizard()
        message = str(caught.exception)
        self.assertEqual(message.count("still a quotation"), 20)
        for order in quotations[:20]:
            self.assertIn(order.name, message)
        for order in quotations[20:]:
            self.assertNotIn(f"{order.name}:", message)

    def test_missing_end_date_is_a_user_error(self):
        orders = self._create_subscription() + self._create_subscription()
        with self.assertRaisesText("No end date was given"):
            orders._action_close(self.reason, {orders[0].id: date(2026, 1, 1)})
        self.assertEqual(set(orders.mapped("subscription_state")), {"3_progress"})

    def test_product_switched_to_subscription_leaves_past_orders_alone(self):
        product = self.env["product.product"].create(
            {"name": "Printer paper", "type": "service", "list_price": 12.0}
        )
        past = self.env["sale.order"].create(
            {
                "partner_id": self.customer.id,
                "order_line": [Command.create({"product_id": product.id})],
            }
        )
        past.action_confirm()
        product.recurring_invoice = True
        self.env.flush_all()
        self.env.invalidate_all()
        self.assertFalse(past.is_subscription)
        self.assertFalse(past.subscription_state)
        self.assertNotIn(past, self.env["sale.order"].search([("is_subscription", "=", True)]))
        with self.assertRaisesText("not a subscription"):
            self._close(past, self.reason)
        # A new quotation with the product is a subscription, and needs a plan.
        quotation = self.env["sale.order"].create(
            {
                "partner_id": self.customer.id,
                "order_line": [Command.create({"product_id": product.id})],
            }
        )
        self.assertTrue(quotation.is_subscription)
        with self.assertRaisesText("Choose a recurring plan"):
            quotation.action_confirm()

    @freeze_time("2026-03-31 12:00:00")
    def test_two_companies_two_timezones_in_one_popup(self):
        Company = self.env["res.company"]
        auckland = Company.create({"name": "Kiwi Co"})
        auckland.partner_id.tz = "Pacific/Auckland"  # already 1 April there
        los_angeles = Company.create({"name": "Pacific Co"})
        los_angeles.partner_id.tz = "America/Los_Angeles"  # still 31 March there
        user = new_test_user(
            self.env,
            login="sc_two_companies",
            groups="sales_team.group_sale_salesman_all_leads",
            company_id=auckland.id,
            company_ids=[Command.set((auckland + los_angeles).ids)],
            tz=False,
        )
        self.plan_month.company_id = False
        orders = self.env["sale.order"]
        for company in (auckland, los_angeles):
            orders |= self._create_subscription(company_id=company.id)
        env = self.env(user=user, context={"allowed_company_ids": (auckland + los_angeles).ids})
        wizard = env["sale.order.close"].create(
            {"order_ids": [Command.set(orders.ids)], "close_reason_id": self.reason.id}
        )
        wizard.action_close()
        self.assertEqual(orders[0].end_date, date(2026, 4, 1))
        self.assertEqual(orders[1].end_date, date(2026, 3, 31))
        self.assertEqual(set(orders.mapped("subscription_state")), {"6_churn"})
