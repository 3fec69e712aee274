from odoo import api, models
from odoo.fields import Domain

from .sale_subscription_job import CHUNK_SIZE


class SaleOrder(models.Model):
    """Pause: nothing is invoiced while a subscription is paused, and when it
    resumes its next invoice date moves by the time it was paused, so that
    the customer pays only for what they used. The transitions are
    ``sale_order``'s :meth:`_action_pause` and :meth:`_action_resume`; here,
    the days paused and the scheduled action that resumes the subscriptions
    on their resume date."""

    _inherit = "sale.order"  # pylint: disable=consider-merging-classes-inherited

    def _get_paused_days(self, resume_day):
        """Days the subscription ``self`` is paused if it resumes on
        ``resume_day``: from its first paused day, included, to the resume
        day, excluded."""
        self.ensure_one()
        if not self.pause_start_date:
            return 0
        return max((resume_day - self.pause_start_date).days, 0)

    @api.model
    def _get_resume_due_domain(self):
        return (
            Domain("subscription_state", "=", "4_paused")
            & Domain("resume_date", "!=", False)
            & self._subscription_date_domain("resume_date", "<=")
        )

    @api.model
    def _cron_resume_paused(self, batch_size=CHUNK_SIZE):
        """Resume the paused subscriptions whose resume date has come,
        through :meth:`_action_resume`, in batches
        (:meth:`_subscription_run_job`). Running it twice resumes nothing
        more: resumed subscriptions are no longer paused."""

        def resume(orders):
            orders._action_resume(scheduled=True)
            return len(orders), orders.browse()

        self._subscription_run_job(
            self._get_resume_due_domain(),
            resume,
            batch_size,
            "subscription_close.ir_cron_resume_paused",
        )
