from odoo import fields, models, tools
from odoo.tools import SQL

from ..models.sale_subscription_retention_event import RETENTION_EVENT_TYPES, RETENTION_OFFERS


class SaleSubscriptionRetentionReport(models.Model):
    """Retention analysis: one row per retention event with a 0/1 column
    per step, so that the pivot and graph sum them per close reason, month,
    plan..., and a save rate that is 100 on a row where the customer stayed
    (kept or paused), 0 where they closed and empty otherwise: its average
    over any group is stayed / (stayed + closed), in percent."""

    _name = "sale.subscription.retention.report"
    _description = "Subscription Retention Analysis"
    _auto = False
    _rec_name = "order_id"
    _order = "date desc, id desc"
    # What the view reads: flushed before the report is read.
    _depends = {  # noqa: RUF012
        "sale.subscription.retention.event": [
            "date",
            "order_id",
            "partner_id",
            "company_id",
            "close_reason_id",
            "event_type",
            "offer",
        ],
        "sale.order": ["plan_id", "user_id"],
    }

    date = fields.Date(readonly=True)
    order_id = fields.Many2one("sale.order", string="Subscription", readonly=True)
    partner_id = fields.Many2one("res.partner", string="Customer", readonly=True)
    company_id = fields.Many2one("res.company", readonly=True)
    close_reason_id = fields.Many2one("sale.order.close.reason", readonly=True)
    plan_id = fields.Many2one("sale.subscription.plan", string="Recurring Plan", readonly=True)
    user_id = fields.Many2one("res.users", string="Salesperson", readonly=True)
    event_type = fields.Selection(RETENTION_EVENT_TYPES, string="Step", readonly=True)
    offer = fields.Selection(RETENTION_OFFERS, string="Offered", readonly=True)
    started_count = fields.Integer(
        string="Started", readonly=True, help="Customers who started to close in the portal."
    )
    shown_count = fields.Integer(
        string="Shown an Offer",
        readonly=True,
        help="Customers shown the retention offer of their reason or the pause.",
    )
    kept_count = fields.Integer(
        string="Kept", readonly=True, help="Customers who kept their subscription after an offer."
    )
    paused_count = fields.Integer(
        string="Paused Instead", readonly=True, help="Customers who paused instead of closing."
    )
    stayed_count = fields.Integer(
        string="Stayed",
        readonly=True,
        help="Customers who kept or paused their subscription. Leaving the Close popup without "
        "closing is not staying.",
    )
    closed_count = fields.Integer(
        string="Closed Anyway",
        readonly=True,
        help="Customers who closed their subscription (after an offer, if one was shown).",
    )
    save_rate = fields.Float(
        string="Save Rate (%)",
        readonly=True,
        aggregator="avg",
        digits=(16, 1),
        help="Stayed / (stayed + closed), in percent.",
    )

    def _query(self):
        return SQL(
            """
            SELECT event.id,
                   event.date,
                   event.order_id,
                   event.partner_id,
                   event.company_id,
                   event.close_reason_id,
                   sale_order.plan_id,
                   sale_order.user_id,
                   event.event_type,
                   event.offer,
                   (event.event_type = 'started')::int AS started_count,
                   (event.event_type = 'shown')::int AS shown_count,
                   (event.event_type = 'kept')::int AS kept_count,
                   (event.event_type = 'paused')::int AS paused_count,
                   (event.event_type IN ('kept', 'paused'))::int AS stayed_count,
                   (event.event_type = 'closed')::int AS closed_count,
                   CASE
                       WHEN event.event_type IN ('kept', 'paused') THEN 100.0
                       WHEN event.event_type = 'closed' THEN 0.0
                   END AS save_rate
              FROM sale_subscription_retention_event event
              JOIN sale_order ON sale_order.id = event.order_id
            """
        )

    def init(self):
        tools.drop_view_if_exists(self.env.cr, self._table)
        self.env.cr.execute(
            SQL("CREATE OR REPLACE VIEW %s AS (%s)", SQL.identifier(self._table), self._query())
        )
