from datetime import timedelta

from dateutil.relativedelta import relativedelta

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.fields import Domain
from odoo.tools import format_date

from .sale_order_closing import CLOSE_CHUNK_SIZE, REFUSALS_SHOWN

# The pause lengths, in months, a customer may pick in the portal (up to the
# longest pause of the plan).
PORTAL_PAUSE_MONTHS = (1, 2, 3)


class SaleOrder(models.Model):
    """Pausing subscriptions: nothing is invoiced while a subscription is
    paused, and when it resumes its next invoice date moves by the time it
    was paused, so the customer pays only for what they used.

    Every way of pausing (the Pause popup, the Action menu of the list, the
    customer portal) ends in :meth:`_action_pause`, every way of resuming
    (the Resume button, the portal, the scheduled action on the resume date)
    in :meth:`_action_resume`. Like the closing methods, both are
    all-or-nothing, work on any number of orders by chunks and write through
    ``write()`` with one chatter message per order.

    A subscription whose closing is scheduled cannot be paused (cancel the
    closing first); a paused subscription can be closed, but only now: its
    pause ends with it.
    """

    _inherit = "sale.order"  # pylint: disable=consider-merging-classes-inherited

    pause_start_date = fields.Date(
        string="Paused Since",
        readonly=True,
        copy=False,
        tracking=True,
        help="First day of the current pause: nothing is invoiced from this day on.",
    )
    resume_date = fields.Date(
        string="Resume On",
        readonly=True,
        copy=False,
        tracking=True,
        help="Day the paused subscription resumes by itself; empty: it stays paused until it "
        "is resumed by hand. On resuming, the next invoice date moves by the time paused.",
    )
    pause_reason = fields.Char(
        readonly=True,
        copy=False,
        help="Why the subscription is paused, as given when it was paused.",
    )

    # ------------------------------------------------------------------
    # Buttons
    # ------------------------------------------------------------------

    def action_open_pause_wizard(self):
        """Open the Pause popup for the subscriptions of ``self``."""
        self._check_can_pause()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "subscription_close.sale_order_pause_action"
        )
        action["context"] = {"dialog_size": "medium", "default_order_ids": self.ids}
        return action

    def action_resume(self):
        return self._action_resume()

    # ------------------------------------------------------------------
    # What may be paused
    # ------------------------------------------------------------------

    def _get_pause_refusals(self):
        """Return ``{order: why}`` for the orders of ``self`` that cannot be
        paused. Override to refuse more."""
        refusals = {}
        for order in self:
            if not order.is_subscription:
                refusals[order] = self.env._("not a subscription")
            elif order.subscription_state == "1_draft":
                refusals[order] = self.env._("still a quotation")
            elif order.subscription_state == "4_paused":
                refusals[order] = self.env._("already paused")
            elif order.subscription_state == "6_churn":
                refusals[order] = self.env._("already closed")
            elif order.subscription_state != "3_progress":
                refusals[order] = self.env._("not in progress")
            elif order.is_closing:
                refusals[order] = self.env._(
                    "its closing is scheduled on %(date)s: cancel the closing first",
                    date=format_date(self.env, order.end_date),
                )
        return refusals

    def _check_can_pause(self):
        refusals = {}
        for chunk in self._subscription_chunks():
            refusals.update(chunk._get_pause_refusals())
        if refusals:
            raise UserError(
                self.env._(
                    "Only subscriptions in progress can be paused. "
                    "Nothing was paused because of:\n%(orders)s",
                    orders=self._subscription_refusal_list(refusals),
                )
            )

    # ------------------------------------------------------------------
    # The pause API
    # ------------------------------------------------------------------

    def _action_pause(self, resume_dates, reason=None, author=None):
        """Pause the subscriptions of ``self`` from today: the one pausing
        method. All-or-nothing: if one order cannot be paused, nothing
        changes.

        :param resume_dates: ``{order_id: date or False}``, the day each
            subscription resumes by itself (after its today), or ``False`` to
            keep it paused until it is resumed by hand.
        :param reason: an optional text saying why, shown on the order and in
            the chatter.
        :param author: ``res.partner`` who pauses when it is not the current
            user (the customer, from the portal).
        """
        if not self:
            return True
        self.check_access("write")
        self._check_can_pause()
        missing = self.filtered(lambda order: order.id not in resume_dates)
        if missing:
            raise UserError(
                self.env._(
                    "No resume date was given to pause %(orders)s.",
                    orders=", ".join(missing[:REFUSALS_SHOWN].mapped("display_name")),
                )
            )
        today_by_id = self._get_subscription_today()
        too_early = self.filtered(
            lambda order: resume_dates[order.id] and resume_dates[order.id] <= today_by_id[order.id]
        )
        if too_early:
            raise UserError(
                self.env._(
                    "A pause resumes after today: choose a later resume date, or resume by "
                    "hand.\n%(orders)s",
                    orders=self._subscription_refusal_list(
                        {
                            order: format_date(self.env, resume_dates[order.id])
                            for order in too_early
                        }
                    ),
                )
            )
        reason = (reason or "").strip() or False
        for chunk in self._subscription_chunks():
            vals_by_id, event_by_id = {}, {}
            for order in chunk:
                resume_date = resume_dates[order.id] or False
                vals_by_id[order.id] = {
                    "subscription_state": "4_paused",
                    "pause_start_date": today_by_id[order.id],
                    "resume_date": resume_date,
                    "pause_reason": reason,
                }
                if order.invoice_due:
                    vals_by_id[order.id]["invoice_due"] = False  # nothing invoiced while paused
                event_by_id[order.id] = ("paused", resume_date)
            body_by_id = chunk._subscription_log_bodies(event_by_id, author=author, note=reason)
            chunk._subscription_write(vals_by_id, body_by_id, author=author)
        return True

    def _action_resume(self, author=None, scheduled=False):
        """Resume the paused subscriptions of ``self``: the one resuming
        method. All-or-nothing.

        Each subscription resumes today, or on its resume date if that has
        passed (the scheduled action ran late); its next invoice date moves
        by the days it was paused (:meth:`_prepare_resume_values`).

        :param author: as for :meth:`_action_pause`.
        :param scheduled: resumed by the scheduled action on the resume
            date (the chatter says so instead of naming who resumed).
        """
        if not self:
            return True
        self.check_access("write")
        not_paused = self.filtered(lambda order: order.subscription_state != "4_paused")
        if not_paused:
            raise UserError(
                self.env._(
                    "Only paused subscriptions can be resumed. Nothing was resumed because "
                    "of:\n%(orders)s",
                    orders=self._subscription_refusal_list(
                        dict.fromkeys(not_paused, self.env._("not paused"))
                    ),
                )
            )
        event = "pause_ended" if scheduled else "resumed"
        for chunk in self._subscription_chunks():
            today_by_id = chunk._get_subscription_today()
            vals_by_id, event_by_id = {}, {}
            for order in chunk:
                day = today_by_id[order.id]
                if order.resume_date and order.resume_date < day:
                    day = order.resume_date
                vals_by_id[order.id] = order._prepare_resume_values(day)
                event_by_id[order.id] = (event, day)
            body_by_id = chunk._subscription_log_bodies(event_by_id, author=author)
            chunk._subscription_write(vals_by_id, body_by_id, author=author)
        return True

    def _prepare_resume_values(self, resume_day):
        """The values that resume the paused subscription ``self`` on
        ``resume_day``: in progress again, and its next invoice date moved by
        the days paused (the periods then start on the day of the moved date,
        see ``_get_next_period_start``)."""
        self.ensure_one()
        vals = {
            "subscription_state": "3_progress",
            "pause_start_date": False,
            "resume_date": False,
            "pause_reason": False,
        }
        if self.next_invoice_date:
            next_date = self.next_invoice_date + timedelta(days=self._get_paused_days(resume_day))
            vals.update(self._prepare_next_invoice_values(next_date, self._subscription_today()))
        return vals

    def _get_paused_days(self, resume_day):
        """Days the subscription ``self`` is paused if it resumes on
        ``resume_day``: from its first paused day, included, to the resume
        day, excluded."""
        self.ensure_one()
        if not self.pause_start_date:
            return 0
        return max((resume_day - self.pause_start_date).days, 0)

    # ------------------------------------------------------------------
    # Closing, invoicing and the sale flow of paused subscriptions
    # ------------------------------------------------------------------

    def _action_close(self, reason, end_dates, author=None, retention_shown=False):
        """A paused subscription can be closed, but only now (its pause ends
        with it): scheduling its closing would leave it paused with an end
        date, neither running nor closing."""
        paused = self.filtered(lambda order: order.subscription_state == "4_paused")
        if paused:
            today_by_id = paused._get_subscription_today()
            later = paused.filtered(
                lambda order: (
                    end_dates.get(order.id) and end_dates[order.id] > today_by_id[order.id]
                )
            )
            if later:
                raise UserError(
                    self.env._(
                        "A paused subscription can only be closed now: resume it first to "
                        "schedule its closing.\n%(orders)s",
                        orders=self._subscription_refusal_list(
                            dict.fromkeys(later, self.env._("paused"))
                        ),
                    )
                )
        return super()._action_close(
            reason, end_dates, author=author, retention_shown=retention_shown
        )

    def _prepare_close_values(self, reason, end_date, state, mail):
        vals = super()._prepare_close_values(reason, end_date, state, mail)
        if self.subscription_state == "4_paused":
            vals.update({"pause_start_date": False, "resume_date": False, "pause_reason": False})
        return vals

    def _get_unused_start_dates(self, end_dates):
        """A paused subscription has not been used since its pause began."""
        starts = super()._get_unused_start_dates(end_dates)
        for order in self:
            if order.id in starts and order.pause_start_date:
                starts[order.id] = min(starts[order.id], order.pause_start_date)
        return starts

    def _get_period_end_dates(self):
        """A paused subscription has no current period: it ends today."""
        end_dates = super()._get_period_end_dates()
        paused = self.filtered(lambda order: order.subscription_state == "4_paused")
        if paused:
            end_dates.update(paused._get_subscription_today())
        return end_dates

    def action_draft(self):
        # A subscription set back to quotation starts again from scratch.
        paused = self.filtered(
            lambda order: (
                order.state in ("cancel", "sent") and (order.pause_start_date or order.resume_date)
            )
        )
        res = super().action_draft()
        if paused:
            paused.write({"pause_start_date": False, "resume_date": False, "pause_reason": False})
        return res

    def _track_subtype(self, init_values):
        """A pause or a resume made by a customer (from the portal) is posted
        with the "Subscription Paused" subtype, which notifies the
        followers; the same change made in the backend is a note."""
        self.ensure_one()
        subtype = super()._track_subtype(init_values)
        if subtype or "pause_start_date" not in init_values:
            return subtype
        authors = self.env.cr.precommit.data.get(f"mail.tracking.author.{self._name}", {})
        author = authors.get(self.id)
        if author and author.partner_share:
            return self.env.ref("subscription_close.mt_subscription_paused")
        return subtype

    # ------------------------------------------------------------------
    # Portal
    # ------------------------------------------------------------------

    def _get_portal_pause_options(self):
        """``[(months, resume_date)]``: the pauses the customer may choose
        for the subscription ``self`` in the portal (1, 2 or 3 months, up to
        the plan's longest pause); none if the plan is not pausable or the
        subscription cannot be paused now."""
        self.ensure_one()
        if not self._is_portal_pausable():
            return []
        today = self._subscription_today()
        return [
            (months, today + relativedelta(months=months))
            for months in PORTAL_PAUSE_MONTHS
            if months <= self.plan_id.max_pause_months
        ]

    def _is_portal_pausable(self):
        """Whether the customer may pause this subscription from the portal."""
        self.ensure_one()
        return bool(
            self.is_subscription
            and self.subscription_state == "3_progress"
            and not self.is_closing
            and self.plan_id.user_pausable
            and self.plan_id.max_pause_months >= 1
        )

    def _is_portal_resumable(self):
        """Whether the customer may resume this paused subscription from the
        portal: its plan is pausable."""
        self.ensure_one()
        return bool(
            self.is_subscription
            and self.subscription_state == "4_paused"
            and self.plan_id.user_pausable
        )

    # ------------------------------------------------------------------
    # Scheduled action
    # ------------------------------------------------------------------

    @api.model
    def _get_resume_due_domain(self):
        return (
            Domain("subscription_state", "=", "4_paused")
            & Domain("resume_date", "!=", False)
            & self._subscription_date_domain("resume_date", "<=")
        )

    @api.model
    def _cron_resume_paused(self, batch_size=CLOSE_CHUNK_SIZE):
        """Resume the paused subscriptions whose resume date has come.

        Batches of ``batch_size`` orders locked with SKIP LOCKED (two workers
        never resume the same order; those another transaction holds are
        tried again a minute later), resumed through :meth:`_action_resume`
        and committed with the cron progress. Running it twice resumes
        nothing more: resumed subscriptions are no longer paused.
        """
        domain = self._get_resume_due_domain()
        while True:
            orders = self._subscription_lock(
                domain, batch_size, retry_cron="subscription_close.ir_cron_resume_paused"
            )
            if not orders:
                break
            orders._action_resume(scheduled=True)
            orders._subscription_release_cache()
            remaining = self.search_count(domain)
            time_left = self.env["ir.cron"]._commit_progress(len(orders), remaining=remaining)
            if not remaining or not time_left:
                break
