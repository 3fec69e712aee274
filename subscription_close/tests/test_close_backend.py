from datetime import date

from freezegun import freeze_time

from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.fields import Command
from odoo.tests import tagged

from .common import SubscriptionCommon


@tagged("post_install", "-at_install")
class TestCloseReason(SubscriptionCommon):
    def test_default_reasons(self):
        Reason = self.env["sale.order.close.reason"]
        portal = Reason.search([("visible_in_portal", "=", True), ("is_protected", "=", False)])
        self.assertGreaterEqual(len(portal), 5)
        expired = self.env.ref("subscription_close.close_reason_expired")
        company = self.env.ref("subscription_close.close_reason_company")
        for reason in expired + company:
            self.assertTrue(reason.is_protected)
            self.assertFalse(reason.visible_in_portal)

    def test_name_unique_per_language(self):
        Reason = self.env["sale.order.close.reason"]
        with self.assertRaisesText("already exists", ValidationError):
            Reason.create({"name": "too EXPENSIVE"})
        self.env["res.lang"]._activate_lang("it_IT")
        expensive = self.env.ref("subscription_close.close_reason_too_expensive")
        expensive.with_context(lang="it_IT").name = "Troppo caro"
        moved = Reason.create({"name": "Moved abroad"})
        with self.assertRaisesText('"troppo caro"', ValidationError):
            moved.with_context(lang="it_IT").name = "troppo caro"
        # Same word in different languages of different reasons is not a clash
        # as long as no language shows two reasons with the same name.
        moved.with_context(lang="it_IT").name = "Trasferito all'estero"

    def test_protected_reasons(self):
        expired = self.env.ref("subscription_close.close_reason_expired")
        with self.assertRaisesText("cannot be deleted", UserError):
            expired.unlink()
        with self.assertRaisesText("cannot be archived", UserError):
            expired.action_archive()
        manager_env = self.env(user=self.user_manager)
        with self.assertRaises(UserError):
            expired.with_env(manager_env).write({"is_protected": False})
        with self.assertRaises(UserError):
            manager_env["sale.order.close.reason"].create({"name": "Mine", "is_protected": True})
        self.assertTrue(expired.exists() and expired.active and expired.is_protected)
        free = manager_env["sale.order.close.reason"].create({"name": "Temporary"})
        free.unlink()
        self.assertFalse(free.exists())

    def test_access_rights(self):
        reason = self.env.ref("subscription_close.close_reason_other")
        Reason = self.env["sale.order.close.reason"]
        self.assertIn(reason, Reason.with_user(self.user_salesman).search([]))
        with self.assertRaises(AccessError):
            Reason.with_user(self.user_salesman).create({"name": "Salesman reason"})
        with self.assertRaises(AccessError):
            reason.with_user(self.user_salesman).write({"name": "Renamed"})
        with self.assertRaises(AccessError):
            reason.with_user(self.user_portal).read(["name"])
        Reason.with_user(self.user_manager).create({"name": "Manager reason"})

    def test_subscription_count_opens_subscriptions(self):
        reason = self.env.ref("subscription_close.close_reason_not_needed")
        orders = self._create_subscription() + self._create_subscription()
        self._close(orders, reason)
        self.assertEqual(reason.subscription_count, 2)
        action = reason.action_open_subscriptions()
        self.assertEqual(self.env["sale.order"].search(action["domain"]), orders)


@tagged("post_install", "-at_install")
class TestCloseSubscription(SubscriptionCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()

    @freeze_time("2026-05-20")
    def test_close_from_popup(self):
        order = self._create_subscription()
        self.flush_tracking()
        result = self._close_with_wizard(order, self.reason)
        self.assertEqual(result, {"type": "ir.actions.act_window_close"})
        self.assertEqual(order.subscription_state, "6_churn")
        self.assertEqual(order.end_date, date(2026, 5, 20))
        self.assertEqual(order.close_reason_id, self.reason)
        # Closing is not cancelling: the sales order itself stays confirmed.
        self.assertEqual(order.state, "sale")

        message = order.message_ids[0]
        self.assertEqual(message.author_id, self.user_salesman.partner_id)
        self.assertIn("Close Reason: Too expensive", message.body)
        self.assertIn(self.user_salesman.name, message.body)
        self.assertEqual(message.subtype_id, self.env.ref("mail.mt_note"))
        tracking = {
            t.field_id.name: (t.old_value_char, t.new_value_char)
            for t in message.tracking_value_ids
        }
        self.assertEqual(tracking["subscription_state"], ("In Progress", "Churned"))
        self.assertEqual(tracking["close_reason_id"], ("", "Too expensive"))

    def test_new_reason_typed_in_popup(self):
        """A manager types a reason that does not exist yet: it is created."""
        order = self._create_subscription()
        Wizard = self.env["sale.order.close"].with_user(self.user_manager)
        reason_id, _name = (
            self.env["sale.order.close.reason"].with_user(self.user_manager).name_create("Moved")
        )
        wizard = Wizard.create(
            {"order_ids": [Command.set(order.ids)], "close_reason_id": reason_id}
        )
        wizard.action_close()
        self.assertEqual(order.close_reason_id.name, "Moved")
        self.assertEqual(order.subscription_state, "6_churn")

    def test_popup_offers_creation_to_managers_only(self):
        def reason_node(user):
            arch = self.env["sale.order.close"].with_user(user).get_views([(False, "form")])
            arch = arch["views"]["form"]["arch"]
            start = arch.index('name="close_reason_id"')
            return arch[arch.rindex("<field", 0, start) : arch.index("/>", start)]

        self.assertIn('can_create="False"', reason_node(self.user_salesman))
        self.assertIn('can_create="True"', reason_node(self.user_manager))
        with self.assertRaises(AccessError):
            self.env["sale.order.close.reason"].with_user(self.user_salesman).name_create("X")

    def test_close_invoiced_subscription_keeps_invoices(self):
        order = self._create_subscription()
        invoice = order._create_invoices()  # a draft, as sale leaves it
        invoice.action_post()
        self.assertEqual(invoice.state, "posted")
        self._close_with_wizard(order, self.reason)
        self.assertEqual(order.subscription_state, "6_churn")
        self.assertEqual(order.invoice_ids, invoice)
        self.assertEqual(invoice.state, "posted")

    @freeze_time("2026-05-20")
    def test_reopen(self):
        order = self._create_subscription()
        self._close(order, self.reason)
        self.flush_tracking()
        order.with_user(self.user_salesman).action_reopen()
        self.assertEqual(order.subscription_state, "3_progress")
        self.assertFalse(order.end_date)
        self.assertFalse(order.close_reason_id)
        message = order.message_ids[0]
        self.assertIn("reopened", message.body)
        self.assertEqual(
            message.tracking_value_ids.filtered(
                lambda t: t.field_id.name == "subscription_state"
            ).new_value_char,
            "In Progress",
        )
        with self.assertRaisesText("Only closed subscriptions can be reopened", UserError):
            order.action_reopen()

    def test_batch_close(self):
        orders = self.env["sale.order"]
        for _i in range(4):
            orders |= self._create_subscription()
        self._close_with_wizard(orders, self.reason)
        self.assertEqual(set(orders.mapped("subscription_state")), {"6_churn"})
        self.assertEqual(orders.close_reason_id, self.reason)
        for order in orders:
            self.assertIn("Close Reason: Too expensive", order.message_ids[0].body)

    def test_batch_close_all_or_nothing(self):
        running = self._create_subscription() + self._create_subscription()
        quotation = self._create_subscription(confirm=False)
        churned = self._create_subscription()
        self._close(churned, self.reason)
        ordinary = self.sale_order
        ordinary.action_confirm()
        selection = running + quotation + churned + ordinary
        self.flush_tracking()
        messages_before = self.env["mail.message"].search_count([])
        with self.assertRaises(UserError) as caught:
            self._close_with_wizard(selection, self.reason)
        error = str(caught.exception)
        for order in quotation + churned + ordinary:
            self.assertIn(order.name, error)
        for order in running:
            self.assertNotIn(order.name, error)
        with self.assertRaises(UserError):
            self._close(selection, self.reason)
        self.assertEqual(running.mapped("subscription_state"), ["3_progress"] * 2)
        self.assertFalse(running.close_reason_id)
        self.assertEqual(quotation.subscription_state, "1_draft")
        self.assertFalse(ordinary.subscription_state)
        self.assertEqual(self.env["mail.message"].search_count([]), messages_before)

    def test_bad_input_is_a_user_error(self):
        quotation = self._create_subscription(confirm=False)
        ordinary = self.sale_order
        ordinary.action_confirm()
        churned = self._create_subscription()
        self._close(churned, self.reason)
        for order, why in (
            (quotation, "still a quotation"),
            (ordinary, "not a subscription"),
            (churned, "already closed"),
        ):
            with self.assertRaisesText(why):
                order.action_open_close_wizard()
            with self.assertRaisesText(why):
                self._close(order, self.reason)

        order = self._create_subscription()
        archived = self.env["sale.order.close.reason"].create({"name": "Old reason"})
        archived.action_archive()
        with self.assertRaisesText("archived", UserError):
            self._close(order, archived)
        other_company = self.env["res.company"].create({"name": "Other Co"})
        foreign = self.env["sale.order.close.reason"].create(
            {"name": "Foreign reason", "company_id": other_company.id}
        )
        with self.assertRaisesText("belongs to Other Co", UserError):
            self._close(order, foreign)
        with self.assertRaisesText("one close reason", UserError):
            self._close(order, self.env["sale.order.close.reason"])
        self.assertEqual(order.subscription_state, "3_progress")

    def test_user_without_sales_rights(self):
        order = self._create_subscription()
        with self.assertRaises(AccessError):
            self.env["sale.order.close"].with_user(self.user_internal).create(
                {"order_ids": [Command.set(order.ids)], "close_reason_id": self.reason.id}
            )
        with self.assertRaises(AccessError):
            self._close(order.with_user(self.user_internal), self.reason)
        self.assertEqual(order.subscription_state, "3_progress")

    def test_salesperson_limited_to_own_documents(self):
        order = self._create_subscription(user_id=self.user_salesman.id)
        with self.assertRaises(AccessError):
            self._close(order.with_user(self.user_salesman_own), self.reason)
        own = self._create_subscription(user_id=self.user_salesman_own.id)
        self._close_with_wizard(own, self.reason, user=self.user_salesman_own)
        self.assertEqual(own.subscription_state, "6_churn")
        self.assertEqual(order.subscription_state, "3_progress")

    def test_portal_user_cannot_close(self):
        order = self._create_subscription()
        order._portal_ensure_token()
        with self.assertRaises(AccessError):
            self.env["sale.order.close"].with_user(self.user_portal).create(
                {"order_ids": [Command.set(order.ids)], "close_reason_id": self.reason.id}
            )
        with self.assertRaises(AccessError):
            order.with_user(self.user_portal).write(
                {"close_reason_id": self.reason.id, "subscription_state": "6_churn"}
            )
        with self.assertRaises(AccessError):
            order.with_user(self.user_portal).action_reopen()
        self.assertEqual(order.subscription_state, "3_progress")
        self.assertFalse(order.close_reason_id)
