from dateutil.relativedelta import relativedelta

from odoo import api, fields, models
from odoo.exceptions import ValidationError

PERIOD_UNITS = [
    ("week", "Weeks"),
    ("month", "Months"),
    ("year", "Years"),
]
# The same units for a billing period of 1: "1 Month", not "1 Months".
PERIOD_UNITS_ONE = [
    ("week", "Week"),
    ("month", "Month"),
    ("year", "Year"),
]


class SaleSubscriptionPlan(models.Model):
    _name = "sale.subscription.plan"
    _description = "Recurring Plan"
    _order = "sequence, id"
    _check_company_auto = True

    name = fields.Char(required=True, translate=True)
    active = fields.Boolean(default=True)
    sequence = fields.Integer(default=10)
    company_id = fields.Many2one(
        "res.company",
        index=True,
        default=lambda self: self.env.company,
        help="Leave empty to share the plan between all companies.",
    )
    billing_period_value = fields.Integer(
        string="Billing Period",
        required=True,
        default=1,
        help="Number of units between two invoices.",
    )
    billing_period_unit = fields.Selection(
        PERIOD_UNITS,
        required=True,
        default="month",
    )
    billing_period_unit_one = fields.Selection(
        PERIOD_UNITS_ONE,
        string="Billing Period Unit (one)",
        compute="_compute_billing_period_unit_one",
        inverse="_inverse_billing_period_unit_one",
        help="The billing period unit, named in the singular: shown instead of the unit "
        "when the billing period is 1.",
    )
    billing_period_display = fields.Char(
        string="Billing Every",
        compute="_compute_billing_period_display",
    )
    user_closable = fields.Boolean(
        string="Closable",
        help="Customers may close their own subscriptions from the customer portal.",
    )
    user_closable_options = fields.Selection(
        [
            ("now", "Immediately"),
            ("end_of_period", "At the end of the current period"),
        ],
        string="Customer Closing",
        required=True,
        default="now",
        help="When a subscription closed by the customer from the portal stops: at once, or "
        "on the last day of the period already invoiced (the day before the next invoice "
        "date); until then it stays In Progress and the customer may change their mind.",
    )
    user_pausable = fields.Boolean(
        string="Pausable",
        help="Customers may pause their own subscriptions from the customer portal (1, 2 or 3 "
        "months, up to the longest pause), and are offered to pause instead when they close.",
    )
    max_pause_months = fields.Integer(
        string="Longest Pause",
        default=3,
        help="The longest pause, in months, a customer may choose in the portal.",
    )
    send_close_mail = fields.Boolean(
        string="Closure Email",
        default=True,
        help="Email the customer when one of their subscriptions is closed, when a closing "
        "is scheduled and when a scheduled closing is cancelled.",
    )
    auto_post_invoices = fields.Boolean(
        string="Post Invoices",
        default=True,
        help="Post the recurring invoices at once; otherwise they are left as drafts to check "
        "and post by hand.",
    )
    send_invoice_mail = fields.Boolean(
        string="Email Invoices",
        default=True,
        help="Email each posted recurring invoice to the customer, with a link to the "
        "subscription in their portal.",
    )
    close_refund = fields.Selection(
        [
            ("none", "No refund"),
            ("prorated", "Prorated credit note"),
        ],
        string="On Immediate Close",
        required=True,
        default="none",
        help="When a subscription is closed at once, before the end of the period already "
        "invoiced: refund nothing, or prepare a draft credit note for the unused days.",
    )
    auto_close_days = fields.Integer(
        string="Automatic Closing",
        default=0,
        help="Close the subscription when one of its invoices is still unpaid this many days "
        "after its due date (0: never).",
    )
    send_overdue_reminder = fields.Boolean(
        string="Overdue Reminder",
        help="Email the customer once when an invoice of their subscription becomes overdue.",
    )
    notice_days = fields.Integer(
        string="Notice Period",
        help="Days between a customer's cancellation and the day the subscription ends, at "
        "the earliest (0: none).",
    )
    notice_end_of_period = fields.Boolean(
        string="End at the End of a Period",
        help="A cancelled subscription ends at the end of the billing period in which its "
        "notice period ends (the periods already invoiced are used in full).",
    )
    minimum_term_months = fields.Integer(
        string="Minimum Term",
        help="Months from the start during which the subscription cannot end (0: none).",
    )
    withdrawal_days = fields.Integer(
        string="Withdrawal Period",
        default=14,
        help="Days from the start during which the customer may withdraw from the contract on "
        "the cancellation page: the subscription closes at once and what was paid is credited "
        "(0: no withdrawal).",
    )
    withdrawal_refund = fields.Selection(
        [("full", "Credit what was paid"), ("prorated", "Credit the days not used")],
        string="Withdrawal Credit",
        required=True,
        default="full",
    )
    retention_placement = fields.Selection(
        [
            ("before", "Before confirming"),
            ("beside", "Beside the confirm button"),
        ],
        string="Retention Offers",
        required=True,
        default=lambda self: self._default_retention_placement(),
        help="Where the customer who closes in the portal sees the retention offer of their "
        "reason and the pause: on a step before the closing is taken, or on the same screen, "
        "beside the button that closes at once (as consumer law asks in Germany and "
        "California: the default for companies there).",
    )
    annual_reminder = fields.Boolean(
        help="Email the customer once a year, on the anniversary of the subscription, what is "
        "charged, how often, and how to cancel.",
    )
    charge_saved_card = fields.Boolean(
        string="Charge the Saved Card",
        default=True,
        help="Charge the customer's saved card (the subscription's payment method) for each "
        "invoice the invoicing posts.",
    )
    payment_retry_days = fields.Char(
        string="Retry a Declined Card After",
        default="1,3,7,14",
        help="Days after the first declined charge of an invoice when the card is charged again, "
        "separated by commas (e.g. 1,3,7,14). Paying by hand or with another card stops it.",
    )
    payment_grace_days = fields.Integer(
        string="Grace Period",
        default=21,
        help="Days after the first declined charge of an invoice: still unpaid then, the "
        "subscription closes with the reason Payment failed.",
    )
    payment_reopen_days = fields.Integer(
        string="Reopen When Paid Within",
        default=30,
        help="Days after a closing for a failed payment during which paying the invoice reopens "
        "the subscription (0: never).",
    )
    subscription_count = fields.Integer(compute="_compute_subscription_count")

    _cancellation_terms_positive = models.Constraint(
        "CHECK(notice_days >= 0 AND minimum_term_months >= 0 AND withdrawal_days >= 0)",
        "The notice period, the minimum term and the withdrawal period of a plan cannot be "
        "negative.",
    )
    _payment_grace_days_positive = models.Constraint(
        "CHECK(payment_grace_days >= 0 AND payment_reopen_days >= 0)",
        "The grace period and the reopening delay of a plan cannot be negative.",
    )
    _auto_close_days_positive = models.Constraint(
        "CHECK(auto_close_days >= 0)",
        "The days before an automatic closing cannot be negative.",
    )
    _max_pause_months_positive = models.Constraint(
        "CHECK(max_pause_months > 0)",
        "The longest pause of a recurring plan must be at least one month.",
    )
    _billing_period_value_positive = models.Constraint(
        "CHECK(billing_period_value > 0)",
        "The billing period of a recurring plan must be a positive number.",
    )

    @api.model
    def _default_retention_placement(self, company=None):
        """Offers beside the confirm button for the companies of Germany
        (§312k BGB) and California (Automatic Renewal Law), before confirming
        elsewhere: for ``company``, by default the plan's (the current one
        for a shared plan)."""
        company = company or self.env.company
        country, state = company.country_id.code, company.state_id.code
        if country == "DE" or (country == "US" and state == "CA"):
            return "beside"
        return "before"

    @api.model_create_multi
    def create(self, vals_list):
        Company = self.env["res.company"]
        for vals in vals_list:
            if "retention_placement" not in vals and vals.get("company_id"):
                vals["retention_placement"] = self._default_retention_placement(
                    Company.browse(vals["company_id"])
                )
        return super().create(vals_list)

    @api.onchange("company_id")
    def _onchange_company_id_retention_placement(self):
        if self.company_id:
            self.retention_placement = self._default_retention_placement(self.company_id)

    @api.constrains("payment_retry_days", "payment_grace_days")
    def _check_payment_retry_days(self):
        for plan in self:
            days = plan._get_payment_retry_days()  # raises on a malformed value
            if days and plan.payment_grace_days and days[-1] >= plan.payment_grace_days:
                raise ValidationError(
                    self.env._(
                        "The last retry of a declined card (day %(day)s) must come before the end "
                        "of the grace period (day %(grace)s) of the plan %(plan)s.",
                        day=days[-1],
                        grace=plan.payment_grace_days,
                        plan=plan.name,
                    )
                )

    def _get_payment_retry_days(self):
        """The retry schedule of a declined card: days after the first
        declined charge, increasing (``[1, 3, 7, 14]``)."""
        self.ensure_one()
        text = (self.payment_retry_days or "").replace(" ", "")
        if not text:
            return []
        try:
            days = [int(part) for part in text.split(",")]
        except ValueError:
            days = []
        if not days or any(day <= 0 for day in days) or days != sorted(set(days)):
            raise ValidationError(
                self.env._(
                    'The retry schedule "%(days)s" of the plan %(plan)s must be increasing '
                    "numbers of days, separated by commas (e.g. 1,3,7,14).",
                    days=self.payment_retry_days,
                    plan=self.name,
                )
            )
        return days

    @api.depends("billing_period_unit")
    def _compute_billing_period_unit_one(self):
        for plan in self:
            plan.billing_period_unit_one = plan.billing_period_unit

    def _inverse_billing_period_unit_one(self):
        for plan in self.filtered("billing_period_unit_one"):
            plan.billing_period_unit = plan.billing_period_unit_one

    @api.onchange("billing_period_unit_one")
    def _onchange_billing_period_unit_one(self):
        if self.billing_period_unit_one:
            self.billing_period_unit = self.billing_period_unit_one

    @api.depends("billing_period_value", "billing_period_unit")
    def _compute_billing_period_display(self):
        for plan in self:
            value, unit = plan.billing_period_value, plan.billing_period_unit
            if value == 1:
                label = {
                    "week": self.env._("Weekly"),
                    "month": self.env._("Monthly"),
                    "year": self.env._("Yearly"),
                }.get(unit, "")
            elif unit == "week":
                label = self.env._("Every %(count)s weeks", count=value)
            elif unit == "month":
                label = self.env._("Every %(count)s months", count=value)
            elif unit == "year":
                label = self.env._("Every %(count)s years", count=value)
            else:
                label = ""
            plan.billing_period_display = label

    def _compute_subscription_count(self):
        counts = dict(
            self.env["sale.order"]._read_group(
                [("plan_id", "in", self.ids), ("is_subscription", "=", True)],
                ["plan_id"],
                ["__count"],
            )
        )
        for plan in self:
            plan.subscription_count = counts.get(plan, 0)

    def _get_billing_period(self):
        """Return the billing period of the plan as a ``relativedelta``."""
        self.ensure_one()
        unit = {"week": "weeks", "month": "months", "year": "years"}[self.billing_period_unit]
        return relativedelta(**{unit: self.billing_period_value})

    def _next_period_start(self, period_start, anchor_day):
        """The day after the billing period that starts on ``period_start``.

        ``anchor_day`` is the day of the month the periods start on (the day
        of the subscription's start): a period that starts on a shortened
        month end (28 February for a subscription started on the 31st) is
        followed by one that starts on the anchor day again (31 March).
        """
        self.ensure_one()
        period = self._get_billing_period()
        if self.billing_period_unit == "week":
            return period_start + period
        return period_start + relativedelta(
            years=period.years, months=period.months, day=anchor_day
        )

    def action_open_subscriptions(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "subscription_close.sale_subscription_action"
        )
        action["domain"] = [("plan_id", "=", self.id)]
        action["context"] = {"default_plan_id": self.id}
        return action
