import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import ValidationError
from odoo.fields import Domain

_logger = logging.getLogger(__name__)

# Invoices charged per batch of the charging job: each charge is a request to
# the payment provider, then a payment posted and reconciled.
CHARGE_BATCH_SIZE = 50


class SaleOrder(models.Model):
    """Card payments: the saved card of a subscription is charged for each
    invoice the invoicing posts; a declined card is retried on the plan's
    schedule and reminded to the customer, and the subscription closes only
    when the invoice stays unpaid past the plan's grace period. Charges go
    through ``payment`` (``_charge_with_token``) and ``account_payment``
    (``_post_process`` pays and reconciles the invoice); the charges of
    invoices are in ``account_move`` and ``payment_transaction``."""

    _inherit = "sale.order"  # pylint: disable=consider-merging-classes-inherited

    payment_token_id = fields.Many2one(
        "payment.token",
        string="Saved Card",
        index="btree_not_null",
        copy=False,
        tracking=True,
        domain="[('partner_id.commercial_partner_id', '=', commercial_partner_id)]",
        help="The customer's saved payment method charged for each invoice of the subscription.",
    )
    commercial_partner_id = fields.Many2one(related="partner_id.commercial_partner_id")
    payment_exception = fields.Boolean(
        readonly=True,
        copy=False,
        tracking=True,
        help="The outcome of a charge of this subscription is unknown (the payment provider "
        "failed to answer, or a charge was interrupted): check it with the provider, then clear "
        "the exception. Nothing charges the card meanwhile.",
    )
    subscription_transaction_ids = fields.One2many(
        "payment.transaction",
        "subscription_id",
        string="Charges",
        readonly=True,
        copy=False,
        groups="account.group_account_invoice",
    )
    subscription_charge_count = fields.Integer(
        compute="_compute_subscription_charge_count",
        groups="account.group_account_invoice",
    )

    @api.depends("subscription_transaction_ids")
    def _compute_subscription_charge_count(self):
        counts = dict(
            self.env["payment.transaction"]._read_group(
                [("subscription_id", "in", self.ids)], ["subscription_id"], ["__count"]
            )
        )
        for order in self:
            order.subscription_charge_count = counts.get(order, 0)

    @api.constrains("payment_token_id", "partner_id", "company_id")
    def _check_payment_token(self):
        for order in self.filtered("payment_token_id"):
            refusal = order._get_payment_token_refusal(order.payment_token_id)
            if refusal:
                raise ValidationError(
                    self.env._(
                        "The saved card %(card)s cannot pay the subscription %(order)s: %(why)s.",
                        card=order.payment_token_id.display_name,
                        order=order.display_name,
                        why=refusal,
                    )
                )

    def _get_payment_token_refusal(self, token):
        """Why ``token`` may not pay the subscription ``self``, or ``False``:
        it must be the customer's (same commercial partner), active, of a
        provider of the subscription's company that is enabled (or in test
        mode) and saves cards."""
        self.ensure_one()
        token = token.sudo()
        if token.partner_id.commercial_partner_id != self.partner_id.commercial_partner_id:
            return self.env._("it belongs to another customer")
        if not token.active:
            return self.env._("it is archived")
        provider = token.provider_id
        if provider.state not in ("enabled", "test") or not provider.allow_tokenization:
            return self.env._("its payment provider does not charge saved cards")
        if provider.company_id != self.company_id:
            return self.env._("its payment provider belongs to another company")
        return False

    def _get_customer_payment_tokens(self):
        """The saved cards of the customer of ``self`` that may pay it."""
        self.ensure_one()
        tokens = (
            self.env["payment.token"]
            .sudo()
            .search(
                [
                    ("partner_id", "child_of", self.partner_id.commercial_partner_id.ids),
                    ("provider_id.company_id", "=", self.company_id.id),
                ]
            )
        )
        return tokens.filtered(lambda token: not self._get_payment_token_refusal(token))

    def _subscription_set_payment_token(self, token, author=None):
        """Charge ``token`` for the next invoices of the subscriptions of
        ``self`` (refused unless it may pay each of them)."""
        for order in self:
            refusal = order._get_payment_token_refusal(token)
            if refusal:
                order._subscription_refuse(
                    {order: refusal},
                    self.env._("This card cannot pay the subscription:"),
                    code="invalid_card",
                )
            if order.payment_token_id == token:
                continue
            order._subscription_write(
                {order.id: {"payment_token_id": token.id}},
                {
                    order.id: order._get_subscription_log_message(
                        "card_set", author=author, note=token
                    )
                },
                author=author,
            )

    # ------------------------------------------------------------------
    # Paying a subscription quotation online
    # ------------------------------------------------------------------

    @api.depends("is_subscription")
    def _compute_prepayment_percent(self):
        """A subscription quotation paid online is paid in full: its first
        period is invoiced in full (there are no down payments on
        subscriptions)."""
        res = super()._compute_prepayment_percent()
        for order in self.filtered("is_subscription"):
            order.prepayment_percent = 1.0
        return res

    def _has_to_be_paid(self):
        """A subscription quotation without a recurring plan cannot be
        confirmed: it is not offered for payment (never a paid order that
        cannot be confirmed)."""
        return super()._has_to_be_paid() and not (self.is_subscription and not self.plan_id)

    def action_clear_payment_exception(self):
        """The salesperson checked the charge with the provider: the card may
        be charged again."""
        orders = self.filtered("payment_exception")
        for order in orders:
            order._subscription_write(
                {order.id: {"payment_exception": False}},
                {order.id: order._get_subscription_log_message("payment_exception_cleared")},
            )
        orders.activity_ids.filtered(
            lambda activity: activity.summary == self._get_payment_exception_summary()
        ).action_done()
        return True

    def action_view_subscription_charges(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("payment.action_payment_transaction")
        action["domain"] = [("subscription_id", "=", self.id)]
        action["context"] = {"create": False}
        return action

    def _get_payment_exception_summary(self):
        return self.env._("Payment exception")

    def _subscription_mark_payment_exception(self, detail):
        """The outcome of a charge of ``self`` is unknown: stop charging it
        until the salesperson clears the mark (chatter, activity)."""
        for order in self.filtered(lambda order: not order.payment_exception):
            order._subscription_write(
                {order.id: {"payment_exception": True}},
                {order.id: order._get_subscription_log_message("payment_exception", note=detail)},
            )
            order.activity_schedule(
                "mail.mail_activity_data_todo",
                summary=self._get_payment_exception_summary(),
                note=detail,
                user_id=order.user_id.id or self.env.user.id,
            )
        _logger.info("Subscriptions %s: payment exception: %s", self.ids, detail)

    # ------------------------------------------------------------------
    # Charging
    # ------------------------------------------------------------------

    @api.model
    def _cron_charge_subscriptions(self, batch_size=CHARGE_BATCH_SIZE):
        """Charge the saved cards for the subscription invoices due to be
        charged (posted by the invoicing, or a declined card whose retry has
        come), then close the subscriptions whose invoice stays unpaid past
        the grace period.

        One process charges at a time (:meth:`_subscription_job_mutex`), so
        that a charge of this process still waiting for the provider is
        never taken by another for a lost one. Each batch of invoices is
        locked, its charges created and committed before the provider is
        asked (:meth:`account.move._subscription_charge`): a charge that a
        crash interrupted stays as a draft, which the next run marks as a
        payment exception instead of charging the card again."""
        cron_xmlid = "subscription_close.ir_cron_charge_subscriptions"
        with self._subscription_job_mutex("charging") as holder:
            if not holder:
                _logger.info("Subscription charging already running in another process.")
                self._subscription_retry_later(cron_xmlid)
                return
            self.env["ir.cron"]._commit_progress(0)
            Move = self.env["account.move"]
            Move._subscription_flag_interrupted_charges()
            Move._subscription_run_job(
                Move._get_charge_due_domain(),
                lambda moves: moves._subscription_charge(),
                batch_size,
                cron_xmlid,
            )
            self._subscription_run_job(
                self._get_payment_failed_domain(),
                lambda orders: orders._close_payment_failed(),
                batch_size,
                cron_xmlid,
            )

    @api.model
    def _get_payment_failed_domain(self):
        return Domain("subscription_state", "=", "3_progress") & Domain(
            "subscription_invoice_ids",
            "any",
            self.env["account.move"]._get_grace_over_domain(),
        )

    def _close_payment_failed(self):
        """Close, with the protected reason *Payment failed*, the
        subscriptions of ``self`` with an invoice still unpaid past the grace
        period of their plan after a declined card. Returns how many were
        closed and those left."""
        reason = self.env.ref("subscription_close.close_reason_payment_failed")
        today_by_id = self._get_subscription_today()
        failed = self.filtered(
            lambda order: (
                order.subscription_state == "3_progress"
                and order.subscription_invoice_ids.filtered_domain(
                    self.env["account.move"]._get_grace_over_domain()
                )
            )
        )
        failed._action_close(reason, {order.id: today_by_id[order.id] for order in failed})
        return len(failed), self - failed

    def _subscription_reopen_paid(self, invoices):
        """The invoices ``invoices`` of the subscriptions of ``self``, closed
        for a failed payment, were paid within the plan's delay: the
        subscriptions reopen (their invoicing goes on from today)."""
        reason = self.env.ref("subscription_close.close_reason_payment_failed")
        today_by_id = self._get_subscription_today()
        reopening = self.filtered(
            lambda order: (
                order.subscription_state == "6_churn"
                and order.close_reason_id == reason
                and order.plan_id.payment_reopen_days
                and order.end_date
                and today_by_id[order.id] - order.end_date
                <= timedelta(days=order.plan_id.payment_reopen_days)
            )
        )
        if reopening:
            reopening._action_reopen()
        return reopening
