from odoo import api, fields, models
from odoo.exceptions import UserError


class SaleAdvancePaymentInv(models.TransientModel):
    """Create Invoice on subscriptions: each period is invoiced in full,
    through the regular invoice. Down payments are refused on subscriptions:
    a down payment is deducted from an order's final invoice, and a
    subscription has none."""

    _inherit = "sale.advance.payment.inv"

    has_subscription = fields.Boolean(compute="_compute_has_subscription")

    @api.depends("sale_order_ids")
    def _compute_has_subscription(self):
        for wizard in self:
            wizard.has_subscription = any(wizard.sale_order_ids.mapped("is_subscription"))

    def create_invoices(self):
        self._check_no_subscription_down_payment()
        return super().create_invoices()

    def _check_no_subscription_down_payment(self):
        for wizard in self:
            if wizard.advance_payment_method == "delivered":
                continue
            subscriptions = wizard.sale_order_ids.filtered("is_subscription")
            if subscriptions:
                raise UserError(
                    self.env._(
                        "Down payments are not available on subscriptions: each period is "
                        "invoiced in full with a regular invoice. %(orders)s",
                        orders=", ".join(subscriptions.mapped("display_name")),
                    )
                )
