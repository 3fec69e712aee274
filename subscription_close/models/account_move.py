from odoo import fields, models


class AccountMove(models.Model):
    _inherit = "account.move"

    subscription_id = fields.Many2one(
        "sale.order",
        index="btree_not_null",
        readonly=True,
        copy=False,
        help="The subscription this recurring invoice or credit note bills.",
    )
    subscription_period_start = fields.Date(
        string="Period Start",
        readonly=True,
        copy=False,
        help="First day of the subscription period this invoice bills.",
    )
    subscription_period_end = fields.Date(
        string="Period End",
        readonly=True,
        copy=False,
        help="Last day of the subscription period this invoice bills.",
    )
    subscription_mail_to_send = fields.Selection(
        [("invoice", "Invoice"), ("overdue", "Overdue reminder")],
        string="Subscription Email to Send",
        readonly=True,
        copy=False,
        help="Email waiting to be sent to the customer by the scheduled action.",
    )
    subscription_reminder_sent = fields.Boolean(
        string="Overdue Reminder Sent",
        readonly=True,
        copy=False,
    )

    # Whatever the number of workers and runs, a period of a subscription is
    # invoiced once: the last guard behind the row locks of the invoicing job.
    _subscription_period_unique = models.UniqueIndex(
        "(subscription_id, subscription_period_start) "
        "WHERE move_type = 'out_invoice' AND state != 'cancel' AND subscription_id IS NOT NULL",
        "This period of the subscription is already invoiced.",
    )

    def _subscription_give_back_periods(self):
        """A recurring invoice cancelled or deleted gives its period back to
        its subscription, if it was the last one invoiced: the next invoice
        date moves back to its start, so that nothing is lost."""
        for move in self.filtered(
            lambda move: (
                move.move_type == "out_invoice"
                and move.subscription_id
                and move.subscription_period_start
            )
        ):
            order = move.subscription_id.sudo()
            if order.next_invoice_date == fields.Date.add(move.subscription_period_end, days=1):
                order.write({"next_invoice_date": move.subscription_period_start})

    def button_cancel(self):
        res = super().button_cancel()
        self._subscription_give_back_periods()
        return res

    def unlink(self):
        self._subscription_give_back_periods()
        return super().unlink()
