from odoo import api, fields, models


class PaymentTransaction(models.Model):
    """The charges of subscriptions: linked to the invoice they pay (as any
    invoice payment) and to the subscription, and what their outcome means
    for the subscription (its card, the retries of a declined card)."""

    _inherit = "payment.transaction"

    subscription_id = fields.Many2one(
        "sale.order",
        index="btree_not_null",
        readonly=True,
        copy=False,
        help="The subscription whose saved card this transaction charges.",
    )

    @api.constrains("token_id")
    def _check_token_is_active(self):
        """``payment`` checks ``self.token_id.active`` for the whole
        recordset, which fails (expected singleton) when a batch of charges
        uses several cards: checked one transaction at a time."""
        for tx in self:
            super(PaymentTransaction, tx)._check_token_is_active()
        return True

    def _post_process(self):
        """After ``payment``, ``account_payment`` and ``sale``: a paid
        subscription quotation keeps the card it was paid with; a declined
        charge of a subscription is logged, reminded to the customer and
        retried on the plan's schedule."""
        res = super()._post_process()
        for tx in self.filtered(lambda tx: tx.state == "done" and tx.token_id):
            orders = tx.sale_order_ids.filtered(
                lambda order: (
                    order.is_subscription and order.state == "sale" and not order.payment_token_id
                )
            )
            if orders:
                orders._subscription_set_payment_token(tx.token_id)
        self.filtered(
            lambda tx: tx.subscription_id and tx.state in ("cancel", "error")
        )._subscription_charge_declined()
        return res

    def _subscription_charge_declined(self):
        """The charges of ``self`` were declined: their invoices stay open;
        the next retry is scheduled (days after the first decline, per the
        plan), the customer is emailed (amount, card, *Pay now*) and the
        subscription's chatter says so."""
        for tx in self:
            order = tx.subscription_id
            for invoice in tx.invoice_ids.filtered(lambda move: move.subscription_id):
                today = invoice._get_company_today(invoice.company_id)
                declined_on = invoice.subscription_charge_declined_date or today
                attempts = invoice.subscription_charge_attempts + 1
                retry_days = order.plan_id._get_payment_retry_days()
                next_charge = False  # no retry left: the grace period decides
                if attempts <= len(retry_days):
                    next_charge = fields.Date.add(declined_on, days=retry_days[attempts - 1])
                invoice.write(
                    {
                        "subscription_charge_declined_date": declined_on,
                        "subscription_charge_attempts": attempts,
                        "subscription_next_charge_date": next_charge,
                        "subscription_mail_to_send": "declined",
                    }
                )
                order.message_post(
                    body=order._get_subscription_log_message(
                        "charge_declined", invoice=invoice, end_date=next_charge, note=tx
                    ),
                    subtype_xmlid="mail.mt_note",
                )
        if self:
            self.env.ref("subscription_close.ir_cron_send_subscription_mails")._trigger()
