from odoo import api, fields, models
from odoo.exceptions import UserError


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
    close_when = fields.Selection(
        [
            ("now", "Now"),
            ("end_of_period", "At the end of the current period"),
            ("date", "On a chosen date"),
        ],
        string="When",
        required=True,
        default="now",
    )
    close_date = fields.Date(
        string="Close On",
        help="Last day of the subscriptions: they stay In Progress until then.",
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
        orders = self.order_ids
        if self.close_when == "end_of_period":
            end_dates = orders._get_period_end_dates()
        elif self.close_when == "date":
            today_by_id = orders._get_subscription_today()
            if not self.close_date or any(self.close_date <= day for day in today_by_id.values()):
                raise UserError(
                    self.env._("Choose a date after today, or close the subscriptions now.")
                )
            end_dates = dict.fromkeys(orders.ids, self.close_date)
        else:
            end_dates = orders._get_subscription_today()
        orders._action_close(self.close_reason_id, end_dates)
        return {"type": "ir.actions.act_window_close"}
