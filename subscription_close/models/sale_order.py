from odoo import api, fields, models

SUBSCRIPTION_STATES = [
    ("1_draft", "Quotation"),
    ("3_progress", "In Progress"),
    ("6_churn", "Churned"),
]
# Subscription states of a confirmed order that is (still) running.
SUBSCRIPTION_PROGRESS_STATES = ("3_progress",)


class SaleOrder(models.Model):
    _inherit = "sale.order"

    plan_id = fields.Many2one(
        "sale.subscription.plan",
        string="Recurring Plan",
        index="btree_not_null",
        check_company=True,
        tracking=True,
    )
    is_subscription = fields.Boolean(
        string="Is a Subscription",
        compute="_compute_is_subscription",
        store=True,
        index=True,
    )
    subscription_state = fields.Selection(
        SUBSCRIPTION_STATES,
        string="Subscription Status",
        compute="_compute_subscription_state",
        store=True,
        index=True,
        tracking=True,
        copy=False,
        group_expand=True,
    )
    start_date = fields.Date(
        copy=False,
        tracking=True,
        help="First day of the subscription. Set when the subscription is confirmed.",
    )
    next_invoice_date = fields.Date(
        compute="_compute_next_invoice_date",
        store=True,
        readonly=False,
        copy=False,
        tracking=True,
        help="Start date moved forward by one billing period of the recurring plan.",
    )
    end_date = fields.Date(
        copy=False,
        tracking=True,
        help="Last day of the subscription.",
    )

    @api.depends("plan_id", "order_line.product_id.recurring_invoice")
    def _compute_is_subscription(self):
        for order in self:
            order.is_subscription = bool(order.plan_id) or any(
                order.order_line.product_id.mapped("recurring_invoice")
            )

    @api.depends("is_subscription", "state")
    def _compute_subscription_state(self):
        for order in self:
            if not order.is_subscription or order.state == "cancel":
                order.subscription_state = False
            elif order.state in ("draft", "sent"):
                order.subscription_state = "1_draft"
            elif order.subscription_state in (False, "1_draft"):
                order.subscription_state = "3_progress"

    @api.depends("start_date", "plan_id.billing_period_value", "plan_id.billing_period_unit")
    def _compute_next_invoice_date(self):
        for order in self:
            if order.start_date and order.plan_id:
                order.next_invoice_date = order.plan_id._add_periods(order.start_date)
            else:
                order.next_invoice_date = False

    # ------------------------------------------------------------------
    # Sale flow
    # ------------------------------------------------------------------

    def _confirmation_error_message(self):
        error = super()._confirmation_error_message()
        if not error and self.is_subscription and not self.plan_id:
            error = self.env._(
                "Choose a recurring plan for the subscription %(order)s before confirming it.",
                order=self.name,
            )
        return error

    def _action_confirm(self):
        res = super()._action_confirm()
        subscriptions = self.filtered(lambda o: o.is_subscription and not o.start_date)
        if subscriptions:
            subscriptions.start_date = self._subscription_today()
        return res

    def action_draft(self):
        # A subscription set back to quotation starts again from scratch.
        subscriptions = self.filtered(lambda o: o.is_subscription and o.state in ("cancel", "sent"))
        res = super().action_draft()
        if subscriptions:
            subscriptions.write({"start_date": False, "end_date": False})
        return res

    # ------------------------------------------------------------------
    # Helpers
    # ------------------------------------------------------------------

    def _subscription_today(self):
        """Today in the timezone of the user, or of the company when the user
        has none (crons run as a user that may have no timezone)."""
        tz = self.env.user.tz or self.env.company.partner_id.tz or "UTC"
        return fields.Date.context_today(self.with_context(tz=tz))
