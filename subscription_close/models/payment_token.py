from odoo import models


class PaymentToken(models.Model):
    _inherit = "payment.token"

    def _get_subscriptions(self):
        return (
            self.env["sale.order"]
            .sudo()
            .search([("payment_token_id", "in", self.ids), ("is_subscription", "=", True)])
        )

    def get_linked_records_info(self):
        """The subscriptions that charge this saved card: named when the
        customer or a user archives it."""
        res = super().get_linked_records_info()
        for order in self._get_subscriptions():
            res.append(
                {
                    "description": order.env._("Subscription"),
                    "id": order.id,
                    "name": order.name,
                    "url": order.access_url,
                }
            )
        return res

    def _handle_archiving(self):
        """An archived card no longer pays the subscriptions that used it:
        each says so in its chatter and waits for another card (its open
        invoices can still be paid by hand or online)."""
        res = super()._handle_archiving()
        for order in self._get_subscriptions():
            order._subscription_write(
                {order.id: {"payment_token_id": False}},
                {
                    order.id: order._get_subscription_log_message(
                        "card_archived", note=order.payment_token_id
                    )
                },
            )
        return res
