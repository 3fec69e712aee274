from datetime import timedelta

from odoo.tests import tagged

from .common import SubscriptionCommon


@tagged("post_install", "-at_install")
class TestItalian(SubscriptionCommon):
    """The Italian labels are the words of the Italian documentation."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["res.lang"]._activate_lang("it_IT")
        cls.env["ir.module.module"]._load_module_terms(
            ["subscription_close"], ["it_IT"], overwrite=True
        )
        cls.env_it = cls.env(context=dict(cls.env.context, lang="it_IT"))

    def test_field_and_selection_labels(self):
        order_fields = self.env_it["sale.order"].fields_get(
            ["close_reason_id", "subscription_state", "plan_id"]
        )
        self.assertEqual(order_fields["close_reason_id"]["string"], "Motivo chiusura")
        states = dict(order_fields["subscription_state"]["selection"])
        self.assertEqual(states["3_progress"], "In corso")
        self.assertEqual(states["6_churn"], "Perso")
        self.assertEqual(order_fields["plan_id"]["string"], "Piano ricorrente")
        plan_fields = self.env_it["sale.subscription.plan"].fields_get(["user_closable"])
        self.assertEqual(plan_fields["user_closable"]["string"], "Chiudibile")
        self.assertEqual(states["4_paused"], "In pausa")
        plan_fields = self.env_it["sale.subscription.plan"].fields_get(
            ["user_pausable", "max_pause_months"]
        )
        self.assertEqual(plan_fields["user_pausable"]["string"], "Pausa consentita")
        self.assertEqual(plan_fields["max_pause_months"]["string"], "Pausa massima")
        report_fields = self.env_it["sale.subscription.retention.report"].fields_get(
            ["save_rate", "stayed_count"]
        )
        self.assertEqual(report_fields["save_rate"]["string"], "Tasso di recupero (%)")
        self.assertEqual(report_fields["stayed_count"]["string"], "Rimasti")
        wizard_fields = self.env_it["sale.order.close"].fields_get(["close_reason_id"])
        self.assertEqual(wizard_fields["close_reason_id"]["string"], "Motivo")

    def test_views(self):
        order_form = self.env_it["sale.order"].get_views([(False, "form")])["views"]["form"]
        self.assertIn('string="Chiudi"', order_form["arch"])
        self.assertIn('title="Perso"', order_form["arch"])
        self.assertIn('title="In chiusura"', order_form["arch"])
        self.assertIn('string="Pausa"', order_form["arch"])
        self.assertIn('string="Riprendi"', order_form["arch"])
        self.assertIn('title="In pausa"', order_form["arch"])
        pause = self.env_it["sale.order.pause"].get_views([(False, "form")])["views"]["form"]
        self.assertIn('string="Pausa"', pause["arch"])
        # "Keep Subscription" cannot be mistaken for the order's "Annulla" (Cancel).
        self.assertIn('string="Mantieni abbonamento"', order_form["arch"])
        self.assertNotIn("Annulla chiusura", order_form["arch"])
        wizard = self.env_it["sale.order.close"].get_views([(False, "form")])["views"]["form"]
        self.assertIn('string="Motivo chiusura"', wizard["arch"])
        self.assertIn('string="Invia"', wizard["arch"])
        plan_form = self.env_it["sale.subscription.plan"].get_views([(False, "form")])
        self.assertIn('string="Self-service"', plan_form["views"]["form"]["arch"])
        action = self.env_it.ref("subscription_close.sale_order_close_action")
        self.assertEqual(action.name, "Motivo chiusura")

    def test_menus(self):
        def menu_name(xmlid):
            return self.env_it.ref(xmlid).name

        self.assertEqual(menu_name("subscription_close.menu_subscription_root"), "Abbonamenti")
        self.assertEqual(menu_name("subscription_close.menu_subscription_plan"), "Piani ricorrenti")
        self.assertEqual(
            menu_name("subscription_close.menu_subscription_close_reason"), "Motivi chiusura"
        )
        self.assertEqual(
            menu_name("subscription_close.menu_subscription_retention"), "Fidelizzazione"
        )

    def test_chatter_message_in_italian(self):
        order = self._create_subscription()
        reason = self.env.ref("subscription_close.close_reason_too_expensive")
        self._close(order.with_env(self.env_it), reason.with_env(self.env_it))
        self.assertIn("Motivo chiusura: Troppo caro", order.message_ids[0].body)

    def test_pause_chatter_in_italian(self):
        order = self._create_subscription()
        today = order._subscription_today()
        order.with_env(self.env_it)._action_pause({order.id: today + timedelta(days=30)})
        self.assertIn("Abbonamento messo in pausa da", order.message_ids[0].body)
        order.with_env(self.env_it)._action_resume()
        self.assertIn("Abbonamento ripreso da", order.message_ids[0].body)
