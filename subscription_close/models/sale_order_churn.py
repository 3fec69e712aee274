from odoo import api, fields, models


class SaleOrder(models.Model):
    """Churn figures: the monthly recurring revenue of a subscription, and
    what its closing lost, frozen when it closed, in the company currency
    (Reporting ‣ Churn, a close reason's count)."""

    _inherit = "sale.order"  # pylint: disable=consider-merging-classes-inherited

    recurring_monthly = fields.Monetary(
        string="Monthly Recurring Revenue",
        compute="_compute_recurring_monthly",
        store=True,
        currency_field="currency_id",
        help="Untaxed amount of the recurring lines normalised to one month with the billing "
        "period of the recurring plan (e.g. a yearly plan counts for a twelfth).",
    )
    company_currency_id = fields.Many2one(
        related="company_id.currency_id",
        string="Company Currency",
    )
    churn_type = fields.Selection(
        [("voluntary", "Voluntary"), ("involuntary", "Involuntary")],
        compute="_compute_churn_type",
        store=True,
        help="Voluntary: closed by the customer or a salesperson with one of the close "
        "reasons. Involuntary: closed by the system (end date reached, invoice unpaid, "
        "closed by the company).",
    )
    churned_mrr = fields.Monetary(
        string="Lost MRR",
        compute="_compute_churned_mrr",
        store=True,
        currency_field="company_currency_id",
        help="Monthly recurring revenue lost with the closing, in the company currency, as it "
        "was when the subscription closed.",
    )

    @api.depends(
        "is_subscription",
        "order_line.price_subtotal",
        "order_line.product_id.recurring_invoice",
        "plan_id.billing_period_value",
        "plan_id.billing_period_unit",
    )
    def _compute_recurring_monthly(self):
        months_per_unit = {"week": 12 / 52, "month": 1, "year": 12}
        for order in self:
            plan = order.plan_id
            if order.is_subscription and plan:
                months = plan.billing_period_value * months_per_unit[plan.billing_period_unit]
                amount = sum(order._get_recurring_lines().mapped("price_subtotal"))
                order.recurring_monthly = amount / months
            else:
                order.recurring_monthly = 0.0

    @api.depends("subscription_state", "close_reason_id.churn_type")
    def _compute_churn_type(self):
        for order in self:
            if order.subscription_state != "6_churn":
                order.churn_type = False
            else:
                order.churn_type = order.close_reason_id.churn_type or "voluntary"

    @api.depends("subscription_state")
    def _compute_churned_mrr(self):
        # Only the status triggers it: the figure is frozen at the closing and
        # does not follow later changes of the lines or of the rates.
        rates = {}
        for order in self:
            if order.subscription_state != "6_churn":
                order.churned_mrr = 0.0
                continue
            company = order.company_id
            day = order.end_date or self._get_company_today(company)
            key = (order.currency_id, company, day)
            if key not in rates:
                rates[key] = self.env["res.currency"]._get_conversion_rate(
                    order.currency_id, company.currency_id, company, day
                )
            order.churned_mrr = company.currency_id.round(order.recurring_monthly * rates[key])
