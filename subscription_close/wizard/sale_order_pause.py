from odoo import api, fields, models
from odoo.exceptions import UserError


class SaleOrderPause(models.TransientModel):
    _name = "sale.order.pause"
    _description = "Pause Subscriptions"

    order_ids = fields.Many2many("sale.order", string="Subscriptions", required=True)
    order_count = fields.Integer(compute="_compute_order_count")
    resume_when = fields.Selection(
        [
            ("date", "On a date"),
            ("manual", "When resumed by hand"),
        ],
        string="Resume",
        required=True,
        default="date",
    )
    resume_date = fields.Date(
        string="Resume On",
        help="The subscriptions resume by themselves on this day; their next invoice date then "
        "moves by the time paused.",
    )
    pause_reason = fields.Char(string="Reason", help="Optional: why the subscriptions pause.")

    @api.depends("order_ids")
    def _compute_order_count(self):
        for wizard in self:
            wizard.order_count = len(wizard.order_ids)

    def action_pause(self):
        self.ensure_one()
        orders = self.order_ids
        if self.resume_when == "date":
            if not self.resume_date:
                raise UserError(self.env._("Choose a resume date after today, or resume by hand."))
            # A date that is not after today is refused by the pause itself.
            resume_dates = dict.fromkeys(orders.ids, self.resume_date)
        else:
            resume_dates = dict.fromkeys(orders.ids, False)
        orders._action_pause(resume_dates, reason=self.pause_reason)
        return {"type": "ir.actions.act_window_close"}
