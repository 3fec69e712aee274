from odoo import models


class PaymentProvider(models.Model):
    _inherit = "payment.provider"

    def _is_tokenization_required(self, sale_order_id=None, **kwargs):
        """A subscription is paid with a saved card: paying a subscription
        quotation online saves it (only providers that save cards are then
        offered), so that the next periods are charged to it."""
        if sale_order_id:
            order = self.env["sale.order"].sudo().browse(sale_order_id).exists()
            if order.is_subscription:
                return True
        return super()._is_tokenization_required(sale_order_id=sale_order_id, **kwargs)
