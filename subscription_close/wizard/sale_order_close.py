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
    terms_move_end = fields.Boolean(compute="_compute_end_date_preview")

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
            wizard.terms_applied = wizard.terms_move_end = False
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
            wizard.terms_move_end = wizard._get_terms_end_dates(requested) != requested
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
        the plans, unless overridden. In the popup the terms bind whatever
        the reason: a salesperson ends a contract before its terms only with
        the right to override them (logged), never by choosing a reason of
        the company or of the system."""
        if self.override_terms:
            return requested
        return self._get_terms_end_dates(requested)

    def _get_terms_end_dates(self, requested):
        earliest = self.order_ids._origin._get_earliest_end_dates()
        return {order_id: max(day, earliest[order_id]) for order_id, day in requested.items()}

    def action_close(self):
        self.ensure_one()
        orders = self.order_ids
        if self.close_when == "date":
            today_by_id = orders._get_subscription_today()
            if not self.close_date or any(self.close_date <= day for day in today_by_id.values()):
                raise UserError(
                    self.env._("Choose a date after today, or close the subscriptions now.")
                )
        if self.close_reason_id._is_declared_by_customer():
            raise UserError(
                self.env._(
                    'The reason "%(reason)s" is given by the customer\'s own declaration on the '
                    "cancellation page: choose another reason.",
                    reason=self.close_reason_id.name,
                )
            )
        requested = self._get_requested_end_dates()
        orders._action_close(
            self.close_reason_id,
            self._get_end_dates(requested),
            comment=self.close_comment,
            # Logged as overridden only when the terms would have moved a date.
            override_terms=self.override_terms
            and self._get_terms_end_dates(requested) != requested,
        )
        return {"type": "ir.actions.act_window_close"}
