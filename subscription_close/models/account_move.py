from markupsafe import Markup

from odoo import api, fields, models
from odoo.fields import Domain


class AccountMove(models.Model):
    """The invoices and credit notes of subscriptions: their period, the
    guard that a day is never billed twice, the period given back by a
    cancelled invoice, and the emails of subscription invoices."""

    _name = "account.move"
    _inherit = ("account.move", "sale.subscription.job")

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

    # Whatever the number of workers and runs, a day of a subscription is
    # invoiced once: two customer invoices (not cancelled) of a subscription
    # may not bill overlapping periods. The last guard behind the row locks of
    # the invoicing; ranges of integers and dates need no extension in GiST.
    _subscription_period_overlap = models.Constraint(
        "EXCLUDE USING gist ("
        "int4range(subscription_id, subscription_id, '[]') WITH &&, "
        "daterange(subscription_period_start, subscription_period_end, '[]') WITH &&"
        ") WHERE (move_type = 'out_invoice' AND state != 'cancel' "
        "AND subscription_id IS NOT NULL AND subscription_period_start IS NOT NULL "
        "AND subscription_period_end IS NOT NULL)",
        "A period of this subscription is already invoiced: two invoices of a subscription "
        "cannot bill the same days.",
    )

    def _get_subscription_periods_given_back(self):
        """``{order: period_start}`` for the recurring invoices of ``self``
        that are the last ones invoiced of their subscription: cancelled or
        deleted, they give their period back (the next invoice date moves back
        to its start), so that nothing is lost."""
        periods = {}
        for move in self.filtered(
            lambda move: (
                move.move_type == "out_invoice"
                and move.subscription_id
                and move.subscription_period_start
            )
        ):
            order = move.subscription_id
            if order.next_invoice_date == fields.Date.add(move.subscription_period_end, days=1):
                periods[order] = move.subscription_period_start
        return periods

    def _subscription_give_back_periods(self, periods):
        for order, period_start in periods.items():
            order.sudo().write({"next_invoice_date": period_start})

    def button_cancel(self):
        periods = self._get_subscription_periods_given_back()
        res = super().button_cancel()
        self._subscription_give_back_periods(periods)
        return res

    def unlink(self):
        periods = self._get_subscription_periods_given_back()
        res = super().unlink()
        self._subscription_give_back_periods(periods)
        return res

    @api.model
    def _cron_send_subscription_mails(self, batch_size=50):
        """Send the queued emails of subscription invoices (the invoice, or a
        reminder once it is overdue), in batches (:meth:`_subscription_run_job`)."""
        templates = {
            "invoice": self.env.ref("subscription_close.mail_template_subscription_invoice"),
            "overdue": self.env.ref("subscription_close.mail_template_subscription_overdue"),
        }

        def send(moves):
            for move in moves:
                move.message_post_with_source(
                    templates[move.subscription_mail_to_send],
                    subtype_xmlid="mail.mt_comment",
                    email_layout_xmlid="mail.mail_notification_light",
                )
            moves.write({"subscription_mail_to_send": False})
            return len(moves), moves.browse()

        self._subscription_run_job(
            Domain("subscription_mail_to_send", "!=", False),
            send,
            batch_size,
            "subscription_close.ir_cron_send_subscription_mails",
        )

    def _notify_by_email_prepare_rendering_context(
        self,
        message,
        msg_vals=False,
        model_description=False,
        force_email_company=False,
        force_email_lang=False,
        force_record_name=False,
    ):
        """Every email of a subscription invoice says where the customer
        manages (and may close) the subscription: its portal page."""
        render_context = super()._notify_by_email_prepare_rendering_context(
            message,
            msg_vals=msg_vals,
            model_description=model_description,
            force_email_company=force_email_company,
            force_email_lang=force_email_lang,
            force_record_name=force_record_name,
        )
        subscription = self.subscription_id if len(self) == 1 else False
        if subscription:
            url = subscription.get_base_url() + subscription.sudo().get_portal_url()
            link = Markup('<a href="%s">%s</a>') % (
                url,
                self.env._("Manage your subscription %(name)s", name=subscription.name),
            )
            render_context["subtitles"] = [*(render_context.get("subtitles") or []), link]
        return render_context
