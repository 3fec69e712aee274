from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import format_date


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
    close_comment = fields.Text(
        string="Comment",
        help="What the customer said, or why the subscription is closed: kept on the order "
        "and shown in its chatter and in the churn analysis.",
    )
    comment_required = fields.Boolean(related="close_reason_id.comment_required")
    override_terms = fields.Boolean(
        string="Override the Notice Period",
        help="End the subscriptions on the day chosen, before the notice period and the "
        "minimum term of their plan allow (logged in the chatter).",
    )
    end_date_preview = fields.Char(
        string="Last Day",
        compute="_compute_end_date_preview",
        help="The day the subscriptions end, notice period and minimum term of their plan "
        "included.",
    )
    terms_applied = fields.Boolean(compute="_compute_end_date_preview")

    @api.depends("order_ids")
    def _compute_order_count(self):
        for wizard in self:
            wizard.order_count = len(wizard.order_ids)

    @api.depends("order_ids")
    def _compute_company_ids(self):
        for wizard in self:
            wizard.company_ids = wizard.order_ids.company_id

    @api.depends("order_ids", "close_when", "close_date", "close_reason_id", "override_terms")
    def _compute_end_date_preview(self):
        for wizard in self:
            wizard.end_date_preview = False
            wizard.terms_applied = False
            if not wizard.close_reason_id or (
                wizard.close_when == "date" and not wizard.close_date
            ):
                continue
            requested = wizard._get_requested_end_dates()
            end_dates = wizard._get_end_dates(requested)
            if not end_dates:
                continue
            first, last = min(end_dates.values()), max(end_dates.values())
            wizard.terms_applied = end_dates != requested
            wizard.end_date_preview = (
                format_date(self.env, first)
                if first == last
                else self.env._(
                    "from %(first)s to %(last)s",
                    first=format_date(self.env, first),
                    last=format_date(self.env, last),
                )
            )

    def _get_requested_end_dates(self):
        """``{order_id: date}``: the last days the popup asks for, before the
        plans' terms."""
        orders = self.order_ids._origin
        if self.close_when == "end_of_period":
            return orders._get_period_end_dates()
        if self.close_when == "date":
            return dict.fromkeys(orders.ids, self.close_date)
        return orders._get_subscription_today()

    def _get_end_dates(self, requested):
        """``requested`` moved by the notice period and the minimum term of
        the plans, unless overridden."""
        if self.override_terms:
            return requested
        return self.order_ids._origin._subscription_apply_terms(requested, self.close_reason_id)

    def action_close(self):
        self.ensure_one()
        orders = self.order_ids
        if self.close_when == "date":
            today_by_id = orders._get_subscription_today()
            if not self.close_date or any(self.close_date <= day for day in today_by_id.values()):
                raise UserError(
                    self.env._("Choose a date after today, or close the subscriptions now.")
                )
        end_dates = self._get_end_dates(self._get_requested_end_dates())
        orders._action_close(
            self.close_reason_id,
            end_dates,
            comment=self.close_comment,
            override_terms=self.override_terms,
        )
        return {"type": "ir.actions.act_window_close"}
