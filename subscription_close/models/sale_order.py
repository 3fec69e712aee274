from collections import defaultdict

from odoo import api, fields, models
from odoo.fields import Domain

SUBSCRIPTION_STATES = [
    ("1_draft", "Quotation"),
    ("3_progress", "In Progress"),
    ("4_paused", "Paused"),
    ("6_churn", "Churned"),
]


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
        help="A quotation is a subscription when it has a recurring plan or a subscription "
        "product; a confirmed order when it has a recurring plan.",
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
        copy=False,
        tracking=True,
        help="First day of the next period to invoice: the start date until the first "
        "invoice, then moved one billing period forward by each recurring invoice.",
    )
    end_date = fields.Date(
        copy=False,
        tracking=True,
        help="Last day of the subscription.",
    )
    close_reason_id = fields.Many2one(
        "sale.order.close.reason",
        index="btree_not_null",
        copy=False,
        readonly=True,
        tracking=True,
    )
    is_closing = fields.Boolean(
        string="Closing",
        compute="_compute_is_closing",
        search="_search_is_closing",
        help="In progress, with a closing scheduled on its end date.",
    )
    subscription_badge = fields.Selection(
        [*SUBSCRIPTION_STATES[:2], ("4_closing", "Closing"), *SUBSCRIPTION_STATES[2:]],
        string="Subscription",
        compute="_compute_subscription_badge",
        help="Subscription status, with Closing for subscriptions whose closing is scheduled.",
    )
    recurring_monthly = fields.Monetary(
        string="Monthly Recurring Revenue",
        compute="_compute_recurring_monthly",
        store=True,
        currency_field="currency_id",
        help="Untaxed amount of the recurring lines normalised to one month with the billing "
        "period of the recurring plan (e.g. a yearly plan counts for a twelfth).",
    )
    close_mail_to_send = fields.Selection(
        [("closed", "Closed"), ("scheduled", "Closing scheduled"), ("kept", "Closing cancelled")],
        string="Closure Email to Send",
        copy=False,
        readonly=True,
        help="Closure email waiting to be sent to the customer by the scheduled action.",
    )

    @api.depends("plan_id", "state", "order_line.product_id.recurring_invoice")
    def _compute_is_subscription(self):
        # A confirmed order cannot lack a plan if it sells subscription products
        # (see _confirmation_error_message): once confirmed, the plan alone
        # decides, so ticking "Subscription" on a product later never turns
        # past ordinary sales into subscriptions.
        for order in self:
            order.is_subscription = bool(order.plan_id) or (
                order.state in ("draft", "sent")
                and any(order.order_line.product_id.mapped("recurring_invoice"))
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

    @api.depends("subscription_state", "end_date")
    def _compute_is_closing(self):
        for order in self:
            order.is_closing = order.subscription_state == "3_progress" and bool(order.end_date)

    def _search_is_closing(self, operator, value):
        if operator != "in":
            return NotImplemented  # the ORM negates "in" for "not in"
        closing = Domain("subscription_state", "=", "3_progress") & Domain("end_date", "!=", False)
        domains = []
        if True in value:
            domains.append(closing)
        if False in value:
            domains.append(~closing)
        return Domain.OR(domains) if domains else Domain.FALSE

    @api.depends("subscription_state", "is_closing")
    def _compute_subscription_badge(self):
        for order in self:
            order.subscription_badge = "4_closing" if order.is_closing else order.subscription_state

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
        """A confirmed subscription starts today (or on the start date given
        on the quotation): its first period is invoiced from that day."""
        res = super()._action_confirm()
        starting = self.filtered(lambda o: o.is_subscription and not o.next_invoice_date)
        today_by_id = starting._get_subscription_today()
        starts = defaultdict(list)
        for order in starting:
            starts[order.start_date or today_by_id[order.id]].append(order.id)
        for start, ids in starts.items():
            self.browse(ids).write({"start_date": start, "next_invoice_date": start})
        return res

    def action_draft(self):
        # A subscription set back to quotation starts again from scratch,
        # unless a period of it was invoiced: then its dates are facts.
        subscriptions = self.filtered(lambda o: o.is_subscription and o.state in ("cancel", "sent"))
        res = super().action_draft()
        if subscriptions:
            subscriptions.write(
                {"end_date": False, "close_reason_id": False, "close_mail_to_send": False}
            )
            fresh = subscriptions.filtered(lambda o: not o.subscription_invoiced)
            if fresh:
                fresh.write({"start_date": False, "next_invoice_date": False, "invoice_due": False})
        return res

    # ------------------------------------------------------------------
    # Portal
    # ------------------------------------------------------------------

    def _is_portal_closable(self):
        """Whether the customer may close this subscription from the portal."""
        self.ensure_one()
        return bool(
            self.is_subscription
            and self.subscription_state in ("3_progress", "4_paused")
            and not self.is_closing
            and self.plan_id.user_closable
        )

    def _is_portal_keepable(self):
        """Whether the customer may cancel the scheduled closing from the
        portal: same rules as closing, and not a closing the company decided
        with a protected reason."""
        self.ensure_one()
        return bool(
            self.is_subscription
            and self.is_closing
            and self.plan_id.user_closable
            and not self.close_reason_id.is_protected
        )

    def _get_portal_close_date(self):
        """The date a close from the portal takes effect, per the plan."""
        self.ensure_one()
        if self.plan_id.user_closable_options == "end_of_period":
            return self._get_period_end_dates()[self.id]
        return self._subscription_today()

    def _get_portal_close_reasons(self):
        """The reasons a customer may pick for this subscription: active,
        visible in the portal, not protected, of the order's company or
        shared. The portal offers these and accepts nothing else."""
        self.ensure_one()
        return (
            self.env["sale.order.close.reason"]
            .sudo()
            .search(
                [
                    ("visible_in_portal", "=", True),
                    ("is_protected", "=", False),
                    ("company_id", "in", [False, self.company_id.id]),
                ]
            )
        )

    def _get_portal_subscription_status(self):
        """(label, bootstrap colour) of the subscription badge in the portal."""
        self.ensure_one()
        if self.subscription_state == "6_churn":
            return self.env._("Closed"), "danger"
        if self.is_closing:
            return self.env._("Closing"), "warning"
        if self.subscription_state == "4_paused":
            return self.env._("Paused"), "secondary"
        if self.subscription_state == "3_progress":
            return self.env._("In Progress"), "success"
        return self.env._("Quotation"), "info"

    # ------------------------------------------------------------------
    # Dates
    # ------------------------------------------------------------------

    def _subscription_today(self):
        """Today for the subscription ``self`` (one order, or none for the
        current company): in the timezone of the user, or of the order's
        company when the user has none (crons run as a user that may have no
        timezone)."""
        return fields.Date.context_today(self.with_context(tz=self._subscription_tz()))

    def _subscription_tz(self):
        """The time zone of "today" for the subscription ``self`` (one order,
        or none for the current company): the user's, or the order's
        company's when the user has none (crons run as a user that may have
        no time zone)."""
        company = self.company_id if len(self) == 1 else self.env.company
        return self.env.user.tz or company.partner_id.tz or "UTC"

    def _get_subscription_today(self):
        """``{order_id: today}`` for the orders of ``self``, each in the
        timezone of the user or else of its company (one computation per
        company, whatever the number of orders)."""
        today_by_company = {}
        result = {}
        for order in self._subscription_prefetch(["company_id"]):
            company = order.company_id
            if company not in today_by_company:
                today_by_company[company] = order._subscription_today()
            result[order.id] = today_by_company[company]
        return result
