from odoo import api, fields, models


class SaleOrderClose(models.TransientModel):
    _name = "sale.order.close"
    _description = "Close Subscriptions"

    order_ids = fields.Many2many(
        "sale.order",
        string="Subscriptions",
        required=True,
    )
    order_count = fields.Integer(compute="_compute_order_count")
    company_ids = fields.Many2many("res.company", compute="_compute_company_ids")
    close_reason_id = fields.Many2one(
        "sale.order.close.reason",
        string="Reason",
        required=True,
        domain="[('company_id', 'in', company_ids + [False])]",
    )

    @api.depends("order_ids")
    def _compute_order_count(self):
        for wizard in self:
            wizard.order_count = len(wizard.order_ids)

    @api.depends("order_ids")
    def _compute_company_ids(self):
        for wizard in self:
            wizard.company_ids = wizard.order_ids.company_id

    def action_close(self):
        self.ensure_one()
        self.order_ids._action_close(self.close_reason_id)
        return {"type": "ir.actions.act_window_close"}
