import logging
from datetime import timedelta

from markupsafe import Markup

from odoo import api, fields, models
from odoo.fields import Domain

_logger = logging.getLogger(__name__)


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
        [
            ("invoice", "Invoice"),
            ("overdue", "Overdue reminder"),
            ("declined", "Card declined"),
        ],
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
    subscription_charge_declined_date = fields.Date(
        string="Card First Declined On",
        readonly=True,
        copy=False,
        index="btree_not_null",
        help="Day the saved card was first declined for this invoice: the retries and the "
        "grace period of the plan count from it.",
    )
    subscription_charge_attempts = fields.Integer(
        string="Declined Charges",
        readonly=True,
        copy=False,
    )
    subscription_next_charge_date = fields.Date(
        string="Next Charge On",
        readonly=True,
        copy=False,
        index="btree_not_null",
        help="Day the saved card is charged again for this invoice, after it was declined.",
    )
    subscription_recovered_date = fields.Date(
        string="Recovered On",
        readonly=True,
        copy=False,
        index="btree_not_null",
        help="Day this invoice was paid after its card had been declined: revenue recovered.",
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

    # ------------------------------------------------------------------
    # Charging the saved card of a subscription invoice
    # ------------------------------------------------------------------

    @api.model
    def _get_open_subscription_invoice_domain(self):
        """Posted customer invoices of subscriptions, not paid yet."""
        return (
            Domain("subscription_id", "!=", False)
            & Domain("move_type", "=", "out_invoice")
            & Domain("state", "=", "posted")
            & Domain("payment_state", "in", ("not_paid", "partial"))
        )

    @api.model
    def _get_charge_due_domain(self):
        """The invoices whose saved card is to be charged now: open, of an
        in-progress subscription whose plan charges its saved card, with no
        payment exception; never charged, or declined and due for a retry."""
        return (
            self._get_open_subscription_invoice_domain()
            & Domain("subscription_id.subscription_state", "=", "3_progress")
            & Domain("subscription_id.payment_token_id", "!=", False)
            & Domain("subscription_id.payment_exception", "=", False)
            & Domain("subscription_id.plan_id.charge_saved_card", "=", True)
            & (
                Domain("subscription_charge_attempts", "=", 0)
                | self._subscription_date_domain("subscription_next_charge_date", "<=")
            )
        )

    @api.model
    def _get_grace_over_domain(self):
        """The open invoices whose card was declined and whose grace period
        is over (one term per grace period in use)."""
        plans = self.env["sale.subscription.plan"].sudo().search([("charge_saved_card", "=", True)])
        terms = []
        companies = self.env["res.company"].sudo().search([])
        for grace in set(plans.mapped("payment_grace_days")):
            terms.append(
                Domain("subscription_id.plan_id.payment_grace_days", "=", grace)
                & Domain.OR(
                    Domain("company_id", "=", company.id)
                    & Domain(
                        "subscription_charge_declined_date",
                        "<=",
                        self._get_company_today(company) - timedelta(days=grace),
                    )
                    for company in companies
                )
            )
        return self._get_open_subscription_invoice_domain() & Domain.OR(terms or [Domain.FALSE])

    def _get_charge_refusal(self):
        """Why the saved card of the subscription of the invoice ``self``
        may not be charged now, or ``False``."""
        self.ensure_one()
        order = self.subscription_id
        if self.state != "posted" or self.payment_state not in ("not_paid", "partial"):
            return "paid"
        if self.currency_id.is_zero(self.amount_residual):
            return "paid"
        if not order.payment_token_id or order.payment_exception:
            return "no_card"
        if order._get_payment_token_refusal(order.payment_token_id):
            return "no_card"
        return False

    def _subscription_flag_interrupted_charges(self):
        """A charge this job created and never finished (the process died
        between asking the provider and recording its answer) may have been
        taken: its subscription is marked *payment exception*, so that the
        card is never charged twice for one invoice. Called by the one
        process that charges (see ``_cron_charge_subscriptions``)."""
        interrupted = (
            self.env["payment.transaction"]
            .sudo()
            .search([("subscription_id", "!=", False), ("state", "=", "draft")])
        )
        for tx in interrupted:
            tx.subscription_id._subscription_mark_payment_exception(
                self.env._(
                    "The charge %(reference)s was interrupted before the payment provider "
                    "answered: check with the provider whether it was taken.",
                    reference=tx.reference,
                )
            )
        if interrupted:
            interrupted._set_error(self.env._("Interrupted before the payment provider answered."))
            # Left to the salesperson: neither a decline to retry nor a payment.
            interrupted.is_post_processed = True

    def _subscription_charge(self):
        """Charge the saved cards for the invoices of ``self`` (a locked batch
        of the charging job): one transaction per invoice, never two.

        The transactions are created and committed first, then each is
        charged (``_charge_with_token``) and all are post-processed at once
        (``_post_process``: ``account_payment`` pays and reconciles the
        invoices of done charges; declined ones are retried later, see
        ``payment.transaction._subscription_charge_declined``). A provider
        that raises leaves the outcome unknown: a payment exception. Returns
        how many were charged and the invoices left for another run."""
        charging = self.filtered(lambda move: not move._get_charge_refusal())
        # Look for the invoice's own transactions before charging: one in
        # progress (the customer paying online, a charge the provider has
        # not answered yet) or done blocks a new charge.
        busy = (
            self.env["payment.transaction"]
            .sudo()
            .search(
                [
                    ("invoice_ids", "in", charging.ids),
                    ("state", "in", ("draft", "pending", "authorized", "done")),
                ]
            )
        )
        charging -= busy.invoice_ids
        if not charging:
            return 0, self
        transactions = (
            self.env["payment.transaction"]
            .sudo()
            .create([move._prepare_subscription_charge_values() for move in charging])
        )
        if self.env.context.get("ir_cron_progress_id"):
            # In the scheduled action, committed before the provider is
            # asked: a crash from here leaves the draft charges for the next
            # run to flag, never to repeat. (Called by hand, e.g. by demo
            # data, the charges stay in the caller's transaction.)
            self.env["ir.cron"]._commit_progress(0)
        charged = self.env["payment.transaction"]
        for tx in transactions:
            try:
                with self.env.cr.savepoint():
                    tx._charge_with_token()
            except Exception as error:  # noqa: BLE001 - any provider failure: outcome unknown
                _logger.info("Charge %s: the payment provider failed: %s", tx.reference, error)
                tx.subscription_id._subscription_mark_payment_exception(
                    self.env._(
                        "The payment provider failed to answer the charge %(reference)s: %(error)s",
                        reference=tx.reference,
                        error=str(error),
                    )
                )
                continue
            charged |= tx
        charged.filtered(lambda tx: tx.state != "draft")._post_process()
        return len(charged), self - charged.invoice_ids

    def _prepare_subscription_charge_values(self):
        """The values of the transaction that charges the saved card of the
        subscription of the invoice ``self`` for what it still owes."""
        self.ensure_one()
        order = self.subscription_id
        token = order.payment_token_id.sudo()
        return {
            "provider_id": token.provider_id.id,
            "payment_method_id": token.payment_method_id.id,
            "token_id": token.id,
            "amount": self.amount_residual,
            "currency_id": self.currency_id.id,
            "partner_id": self.partner_id.id,
            "operation": "offline",
            "invoice_ids": [fields.Command.set(self.ids)],
            "subscription_id": order.id,
            # The charging job post-processes its charges itself, in the
            # transaction that charges them: payment's own post-processing
            # job (which takes every transaction not post-processed) must not
            # take the drafts it commits before asking the provider. Once the
            # provider answers, payment resets the flag as for any
            # transaction (a pending charge is then post-processed as usual).
            "is_post_processed": True,
        }

    def _invoice_paid_hook(self):
        """An invoice of a subscription paid after its card was declined is
        recovered revenue, and stops the retries; a subscription closed for
        that failed payment reopens if the plan says so."""
        res = super()._invoice_paid_hook()
        recovered = self.filtered(
            lambda move: move.subscription_id and move.subscription_charge_declined_date
        )
        for company, moves in recovered.grouped("company_id").items():
            moves.write(
                {
                    "subscription_recovered_date": self._get_company_today(company),
                    "subscription_next_charge_date": False,
                }
            )
        recovered.subscription_id.sudo()._subscription_reopen_paid(recovered)
        return res

    @api.model
    def _cron_send_subscription_mails(self, batch_size=50):
        """Send the queued emails of subscription invoices (the invoice, or a
        reminder once it is overdue), in batches (:meth:`_subscription_run_job`)."""
        templates = {
            "invoice": self.env.ref("subscription_close.mail_template_subscription_invoice"),
            "overdue": self.env.ref("subscription_close.mail_template_subscription_overdue"),
            "declined": self.env.ref("subscription_close.mail_template_subscription_declined"),
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
