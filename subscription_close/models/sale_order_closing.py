from odoo import api, models
from odoo.fields import Domain

from .sale_subscription_job import CHUNK_SIZE

# Closure emails posted per batch of their scheduled action. Odoo runs a
# job's method at least ten times in a row while it reports work left, each
# run doing at least one batch, all within the cron's time limit (120 s by
# default): a batch must stay short, and posting an email costs about 0.1 s.
CLOSE_MAIL_BATCH_SIZE = 20


class SaleOrder(models.Model):
    """Closings that take effect later and what the customer is told: the
    scheduled action that closes the subscriptions whose end date has passed,
    and the closure emails ("closed", "will close", "goes on") queued by the
    transitions of ``sale_order`` and sent by their own scheduled action."""

    _inherit = "sale.order"  # pylint: disable=consider-merging-classes-inherited

    # ------------------------------------------------------------------
    # Closure emails
    # ------------------------------------------------------------------

    def _prepare_close_mail(self, state, reason):
        """The closure email to queue when ``self`` closes (``state``
        churned) or schedules its closing with ``reason``, if its plan sends
        them. A closing for a failed card payment is always told, with the
        way to pay and come back; one the customer declared on the
        cancellation page is told by its confirmation."""
        self.ensure_one()
        payment_failed_id = self.env["ir.model.data"]._xmlid_to_res_id(
            "subscription_close.close_reason_payment_failed", raise_if_not_found=False
        )
        if reason.id == payment_failed_id:
            return "payment_failed"
        if reason._is_declared_by_customer():
            return False
        if not self.plan_id.send_close_mail:
            return False
        return "closed" if state == "6_churn" else "scheduled"

    def _get_close_cancelled_mail(self):
        """The email to queue when the scheduled closing of ``self`` is
        cancelled: "your subscription goes on" (``kept``) when the plan sends
        closure emails, unless the "will close" email is still waiting, in
        which case the customer was told nothing and nothing is sent."""
        self.ensure_one()
        if not self.plan_id.send_close_mail or self.close_mail_to_send == "scheduled":
            return False
        return "kept"

    def _subscription_send_close_mails(self):
        """Have the closure emails queued on ``self`` sent at once."""
        if any(self._subscription_prefetch(["close_mail_to_send"]).mapped("close_mail_to_send")):
            self.env.ref("subscription_close.ir_cron_send_close_mails")._trigger()

    @api.model
    def _cron_send_close_mails(self, batch_size=CLOSE_MAIL_BATCH_SIZE):
        """Send the closure emails waiting on subscriptions, in batches
        (:meth:`_subscription_run_job`). The emails are queued (as every
        email of a scheduled action): the mail queue is triggered to send
        them at once rather than within the hour."""
        templates = {
            "closed": self.env.ref("subscription_close.mail_template_subscription_closed"),
            "scheduled": self.env.ref("subscription_close.mail_template_subscription_closing"),
            "kept": self.env.ref("subscription_close.mail_template_subscription_kept"),
            "payment_failed": self.env.ref(
                "subscription_close.mail_template_subscription_payment_failed"
            ),
        }

        def send(orders):
            for order in orders:
                order.message_post_with_source(
                    templates[order.close_mail_to_send],
                    subtype_xmlid="mail.mt_comment",
                    email_layout_xmlid="mail.mail_notification_light",
                )
            orders.write({"close_mail_to_send": False})
            self.env.ref("mail.ir_cron_mail_scheduler_action")._trigger()
            return len(orders), orders.browse()

        self._subscription_run_job(
            Domain("close_mail_to_send", "!=", False),
            send,
            batch_size,
            "subscription_close.ir_cron_send_close_mails",
        )

    # ------------------------------------------------------------------
    # Scheduled closing
    # ------------------------------------------------------------------

    @api.model
    def _cron_close_expired(self, batch_size=CHUNK_SIZE):
        """Close the subscriptions whose end date has passed, through
        :meth:`_action_close` (one call per close reason), in batches
        (:meth:`_subscription_run_job`). Running it twice closes nothing
        more: closed subscriptions are no longer due."""
        expired = self.env.ref("subscription_close.close_reason_expired")

        def close(orders):
            for reason, group in orders.grouped(lambda o: o.close_reason_id or expired).items():
                group._action_close(reason, {order.id: order.end_date for order in group})
            return len(orders), orders.browse()

        self._subscription_run_job(
            Domain("subscription_state", "=", "3_progress")
            & self._subscription_date_domain("end_date", "<"),
            close,
            batch_size,
            "subscription_close.ir_cron_close_expired",
        )
