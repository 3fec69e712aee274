from odoo import api, fields, models

RETENTION_EVENT_TYPES = [
    ("started", "Started to close"),
    ("shown", "Offer shown"),
    ("kept", "Kept"),
    ("paused", "Paused instead"),
    ("closed", "Closed"),
]
RETENTION_OFFERS = [
    ("offer", "Retention offer"),
    ("pause", "Pause"),
    ("offer_pause", "Retention offer and pause"),
]


class SaleSubscriptionRetentionEvent(models.Model):
    """One step of a customer closing a subscription in the portal: they
    started to close (submitted the Close popup), were shown the retention
    offer of their reason or the pause, and kept the subscription, paused it
    instead, or closed it. Written by the portal when the step happens (never
    parsed from the chatter), read by the retention analysis."""

    _name = "sale.subscription.retention.event"
    _description = "Subscription Retention Event"
    _order = "date desc, id desc"
    _check_company_auto = True

    order_id = fields.Many2one(
        "sale.order",
        string="Subscription",
        required=True,
        index=True,
        ondelete="cascade",
        check_company=True,
    )
    partner_id = fields.Many2one("res.partner", string="Customer", required=True, index=True)
    company_id = fields.Many2one("res.company", required=True, index=True)
    close_reason_id = fields.Many2one(
        "sale.order.close.reason",
        index="btree_not_null",
        ondelete="set null",
    )
    event_type = fields.Selection(RETENTION_EVENT_TYPES, string="Step", required=True)
    offer = fields.Selection(
        RETENTION_OFFERS,
        string="Offered",
        help="What the customer was offered to stay in this closing: the retention offer of "
        "the reason, the pause, or both.",
    )
    date = fields.Date(required=True, index=True, default=fields.Date.context_today)

    @api.model
    def _log(self, order, event_types, close_reason=None, offer=False):
        """Record the steps ``event_types`` of the customer of the
        subscription ``order`` closing it with ``close_reason`` (if known),
        after being offered ``offer``. A step is counted once per
        subscription, reason and day: a repeated request (a refresh, a second
        click, the second screen of the same closing) adds nothing."""
        order.ensure_one()
        today = order._subscription_today()
        reason_id = close_reason.id if close_reason else False
        done = set(
            self.search(
                [
                    ("order_id", "=", order.id),
                    ("date", "=", today),
                    ("close_reason_id", "=", reason_id),
                    ("event_type", "in", list(event_types)),
                ]
            ).mapped("event_type")
        )
        return self.create(
            [
                {
                    "order_id": order.id,
                    "partner_id": order.partner_id.commercial_partner_id.id,
                    "company_id": order.company_id.id,
                    "close_reason_id": reason_id,
                    "event_type": event_type,
                    "offer": offer or False,
                    "date": today,
                }
                for event_type in event_types
                if event_type not in done
            ]
        )
