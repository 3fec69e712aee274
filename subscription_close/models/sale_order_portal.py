from dateutil.relativedelta import relativedelta

from odoo import models

from .sale_order import SubscriptionRefused

# The pause lengths, in months, a customer may pick in the portal (up to the
# longest pause of the plan).
PORTAL_PAUSE_MONTHS = (1, 2, 3)


class SaleOrder(models.Model):
    """What a customer may do with their subscription themselves, whatever
    the channel (the portal today, an API or another website tomorrow): what
    is offered (closing, pausing, resuming, keeping, the reasons, the pause
    lengths, the retention offer), what is refused and why (a refusal
    *code*, worded by the channel), what must be acknowledged first (the
    retention offer of a reason) and which retention steps are recorded.

    Each ``_portal_*`` action checks everything itself, then goes through the
    one transition of ``sale_order``; the controller only reads the form and
    turns the result, or the :class:`SubscriptionRefused` code, into a
    message."""

    _inherit = "sale.order"  # pylint: disable=consider-merging-classes-inherited

    # ------------------------------------------------------------------
    # What is offered
    # ------------------------------------------------------------------

    def _is_portal_closable(self):
        """Whether the customer may close this subscription from the portal."""
        self.ensure_one()
        return bool(
            self.is_subscription
            and self.subscription_state in ("3_progress", "4_paused")
            and not self.is_closing
            and self.plan_id.user_closable
        )

    def _is_portal_keepable(self):
        """Whether the customer may cancel the scheduled closing from the
        portal: same rules as closing, and not a closing the company decided
        with a protected reason."""
        self.ensure_one()
        return bool(
            self.is_subscription
            and self.is_closing
            and self.plan_id.user_closable
            and not self.close_reason_id.is_protected
        )

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

    def _get_portal_close_date(self, on=None):
        """The date a close by the customer takes effect when they name
        none (the portal, the cancellation page): the day they close (``on``,
        today by default) or the end of its period, as the plan says, and
        not before its notice period and minimum term allow
        (:meth:`_get_earliest_end_dates`)."""
        self.ensure_one()
        day = on or self._subscription_today()
        if self.plan_id.user_closable_options == "end_of_period":
            day = self._get_period_end_dates(on={self.id: day})[self.id]
        return max(day, self._get_earliest_end_dates(on={self.id: on} if on else None)[self.id])

    def _get_portal_close_reasons(self):
        """The reasons a customer may pick for this subscription: active,
        visible in the portal, not protected, of the order's company or
        shared, voluntary (the customer's choice, bound by the plan's
        terms). The portal offers these and accepts nothing else."""
        self.ensure_one()
        return (
            self.env["sale.order.close.reason"]
            .sudo()
            .search(
                [
                    ("visible_in_portal", "=", True),
                    ("is_protected", "=", False),
                    ("churn_type", "=", "voluntary"),
                    ("company_id", "in", [False, self.company_id.id]),
                ]
            )
        )

    def _find_portal_close_reason(self, reason_id):
        """The reason ``reason_id`` (an integer, or anything else from a
        form) if it is one the portal offers for ``self``; else an empty
        recordset."""
        reasons = self._get_portal_close_reasons()
        if not isinstance(reason_id, int):
            return reasons.browse()
        return reasons.filtered(lambda reason: reason.id == reason_id)

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

    def _get_portal_retention_offer(self, reason):
        """What closing with ``reason`` offers the customer to stay: the
        reason's retention offer, the pause (when the plan allows it), both
        (``offer``, ``pause``, ``offer_pause``), or nothing (``False``)."""
        self.ensure_one()
        has_offer = bool(reason) and reason._has_retention_offer()
        pausable = self._is_portal_pausable()
        if has_offer and pausable:
            return "offer_pause"
        if has_offer:
            return "offer"
        return "pause" if pausable else False

    def _portal_offers_beside(self):
        """Whether the retention offers and the pause are shown beside the
        button that closes at once, never on a step before it (the plan's
        *Retention Offers* setting)."""
        self.ensure_one()
        return self.plan_id.retention_placement == "beside"

    def _portal_offer_must_be_seen(self, reason):
        """Whether the customer must see the retention offer of ``reason``
        before their closing is taken: on a step before confirming, unless
        the plan shows offers beside the confirm button."""
        self.ensure_one()
        return not self._portal_offers_beside() and reason._has_retention_offer()

    # ------------------------------------------------------------------
    # What is refused
    # ------------------------------------------------------------------

    def _get_portal_refusal(self, action):
        """The code of why the customer may not ``action`` (``close``,
        ``stay``, ``pause``, ``resume``, ``keep``, ``card``) the subscription
        ``self`` now, or ``False``."""
        self.ensure_one()
        if action in ("close", "stay"):
            return self._get_portal_close_refusal()
        return {
            "pause": self._get_portal_pause_refusal,
            "resume": self._get_portal_resume_refusal,
            "keep": self._get_portal_keep_refusal,
            "card": self._get_portal_card_refusal,
        }[action]()

    def _get_portal_close_refusal(self):
        if self.subscription_state == "6_churn":
            return "already_closed"
        return False if self._is_portal_closable() else "not_closable"

    def _get_portal_pause_refusal(self):
        if self.subscription_state == "6_churn":
            return "already_closed"
        if self.subscription_state == "4_paused":
            return "already_paused"
        if self.is_closing and self.plan_id.user_pausable:
            return "pause_closing"
        return False if self._is_portal_pausable() else "not_pausable"

    def _get_portal_resume_refusal(self):
        if self.subscription_state != "4_paused":
            return "not_paused"
        return False if self._is_portal_resumable() else "not_resumable"

    def _get_portal_keep_refusal(self):
        if not self.is_closing:
            return "not_closing"
        return False if self._is_portal_keepable() else "not_keepable"

    def _get_portal_card_refusal(self):
        return False if self.subscription_state in ("3_progress", "4_paused") else "not_running"

    def _portal_refuse(self, code):
        raise SubscriptionRefused(
            self.env._(
                "%(order)s: refused from the customer portal (%(code)s). Nothing was changed.",
                order=self.display_name,
                code=code,
            ),
            code=code,
        )

    def _portal_check(self, action):
        """Raise :class:`SubscriptionRefused` if the customer may not
        ``action`` the subscription ``self`` now."""
        code = self._get_portal_refusal(action)
        if code:
            self._portal_refuse(code)

    def _get_portal_close_reason(self, reason_id, with_offer=False):
        """The reason ``reason_id`` the customer picked, refused unless the
        portal offers it for ``self`` (and, ``with_offer``, it has a
        retention offer)."""
        reason = self._find_portal_close_reason(reason_id)
        if not reason or (with_offer and not reason._has_retention_offer()):
            self._portal_refuse("invalid_reason")
        return reason

    # ------------------------------------------------------------------
    # What the customer does
    # ------------------------------------------------------------------

    def _portal_close(self, reason_id, offer_seen, author, comment=None):
        """The customer closes ``self`` with the reason ``reason_id`` and
        their ``comment``: at the date the plan says
        (:meth:`_get_portal_close_date`). A reason with a retention offer
        shown before confirming (:meth:`_portal_offer_must_be_seen`) closes
        only once the offer was seen (``offer_seen``): before, the offer is
        recorded as shown and nothing changes. Returns ``retention`` (show
        the offer), ``closing`` or ``closed``."""
        self.ensure_one()
        self._portal_check("close")
        reason = self._get_portal_close_reason(reason_id)
        offer = self._get_portal_retention_offer(reason)
        must_see = self._portal_offer_must_be_seen(reason)
        if must_see and not offer_seen:
            reason._check_comment((comment or "").strip())
            self._portal_record_retention(None, reason, offer)
            return "retention"
        end_date = self._get_portal_close_date()
        if self.subscription_state == "4_paused" and end_date > self._subscription_today():
            # A paused subscription closes now only: it resumes for its notice.
            self._action_resume(author=author)
        self._action_close(
            reason,
            {self.id: end_date},
            author=author,
            retention_shown=must_see,
            comment=comment,
        )
        self._portal_record_retention("closed", reason, offer)
        return "closing" if self.is_closing else "closed"

    def _portal_stay(self, reason_id, author):
        """The customer keeps ``self`` after the retention offer of the
        reason ``reason_id``: nothing changes but the retention analysis,
        which counts them as kept."""
        self.ensure_one()
        self._portal_check("stay")
        reason = self._get_portal_close_reason(reason_id, with_offer=True)
        self._portal_record_retention("kept", reason, self._get_portal_retention_offer(reason))
        return "kept"

    def _portal_pause(self, months, author, reason_id=None, instead_of_closing=False):
        """The customer pauses ``self`` for ``months`` (one of the lengths
        offered), from the Pause popup or instead of closing it (with the
        reason picked there, if any: the retention analysis counts them as
        paused instead)."""
        self.ensure_one()
        self._portal_check("pause")
        resume_dates = dict(self._get_portal_pause_options())
        if months not in resume_dates:
            self._portal_refuse("invalid_duration")
        reason = self.env["sale.order.close.reason"]
        if reason_id is not None:
            reason = self._get_portal_close_reason(reason_id)
        offer = instead_of_closing and self._get_portal_retention_offer(reason)
        self._action_pause({self.id: resume_dates[months]}, author=author)
        if instead_of_closing:
            self._portal_record_retention("paused", reason, offer)
        return "paused"

    def _portal_resume(self, author):
        """The customer resumes ``self`` now."""
        self.ensure_one()
        self._portal_check("resume")
        self._action_resume(author=author)
        return "resumed"

    def _portal_keep(self, author):
        """The customer cancels the scheduled closing of ``self``."""
        self.ensure_one()
        self._portal_check("keep")
        self._action_cancel_close(author=author)
        return "kept"

    def _get_portal_payment_tokens(self):
        """The customer's own saved cards that may pay ``self``: the portal
        offers these and accepts nothing else."""
        self.ensure_one()
        if self._get_portal_refusal("card"):
            return self.env["payment.token"]
        return self._get_customer_payment_tokens()

    def _portal_set_card(self, token_id, author):
        """The customer picks another of their saved cards to pay ``self``."""
        self.ensure_one()
        self._portal_check("card")
        token = self._get_portal_payment_tokens().filtered(lambda token: token.id == token_id)
        if not token:
            self._portal_refuse("invalid_card")
        self._subscription_set_payment_token(token, author=author)
        return "card_set"

    def _portal_record_retention(self, outcome, reason, offer):
        """Record in the retention analysis that the customer started to
        close ``self`` with ``reason``, was shown ``offer`` (if any) and
        ``outcome`` (``kept``, ``paused``, ``closed``, or ``None`` while they
        have not decided)."""
        steps = ["started"]
        if offer:
            steps.append("shown")
        if outcome:
            steps.append(outcome)
        self.env["sale.subscription.retention.event"].sudo()._log(
            self, steps, close_reason=reason, offer=offer
        )
