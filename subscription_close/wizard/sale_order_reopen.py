from odoo import api, fields, models


class SaleOrderReopen(models.TransientModel):
    _name = "sale.order.reopen"
    _description = "Reopen Subscriptions"

    order_ids = fields.Many2many("sale.order", string="Subscriptions", required=True)
    gap_start = fields.Date(
        string="Not Invoiced Since",
        compute="_compute_gap_start",
        help="First day not invoiced while the subscriptions were closed.",
    )
    invoice_gap = fields.Boolean(
        string="Invoice the periods since the closing",
        help="Invoice every period from the date shown, one invoice per period. Otherwise the "
        "invoicing starts again today.",
    )

    @api.depends("order_ids")
    def _compute_gap_start(self):
        for wizard in self:
            today_by_id = wizard.order_ids._get_subscription_today()
            late = wizard.order_ids.filtered(
                lambda order, today_by_id=today_by_id: (
                    order.next_invoice_date and order.next_invoice_date < today_by_id[order.id]
                )
            )
            wizard.gap_start = min(late.mapped("next_invoice_date"), default=False)

    def action_reopen(self):
        self.ensure_one()
        self.order_ids._action_reopen(invoice_gap=self.invoice_gap)
        return {"type": "ir.actions.act_window_close"}
