from collections import defaultdict
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.fields import Domain
from odoo.tools import format_amount, format_date

SUBSCRIPTION_STATES = [
    ("1_draft", "Quotation"),
    ("3_progress", "In Progress"),
    ("4_paused", "Paused"),
    ("6_churn", "Churned"),
]
# Orders named in a refusal message; the others are counted.
REFUSALS_SHOWN = 20
# The fields a customer's closing or pausing changes: from the portal, such a
# change is posted with the subtype that notifies the followers.
CLOSING_FIELDS = {"end_date", "close_reason_id"}
PAUSE_FIELDS = {"pause_start_date"}
CARD_EVENTS = (
    "charge_declined",
    "payment_exception",
    "payment_exception_cleared",
    "card_set",
    "card_archived",
)


class SubscriptionRefused(UserError):
    """A subscription change refused, with the reason in the message.
    ``code`` names the refusal for a channel that words it its own way (the
    customer portal)."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


class SaleOrder(models.Model):
    """Subscriptions: the subscription states, fields and transitions of a
    sales order, in one place.

    Every state change of a subscription is one method here, whatever the
    channel (a popup, the list's Action menu, the customer portal, a
    scheduled action): :meth:`_action_close`, :meth:`_action_reopen`,
    :meth:`_action_cancel_close`, :meth:`_action_pause`,
    :meth:`_action_resume`. Each is all-or-nothing, works on any number of
    orders by chunks, takes its values from a ``_prepare_*_values`` method,
    calls a hook before and after it writes (``_subscription_before_*`` /
    ``_subscription_after_*``, empty here, for other addons), and writes
    through ``write()`` (one call per group of equal values) with one chatter
    message per order, through mail's tracking (:meth:`_subscription_write`).
    What each concern adds to a transition is called by name from it:
    invoicing (``sale_order_invoicing``), closure emails
    (``sale_order_closing``), pause (``sale_order_pause``), churn figures
    (``sale_order_churn``), the portal's rules (``sale_order_portal``).
    """

    _name = "sale.order"
    _inherit = ("sale.order", "sale.subscription.job")

    plan_id = fields.Many2one(
        "sale.subscription.plan",
        string="Recurring Plan",
        compute="_compute_plan_id",
        store=True,
        readonly=False,
        precompute=True,
        index="btree_not_null",
        check_company=True,
        tracking=True,
    )
    is_subscription = fields.Boolean(
        string="Is a Subscription",
        compute="_compute_is_subscription",
        store=True,
        precompute=True,
        index=True,
        help="A quotation is a subscription when it has a recurring plan or a subscription "
        "product; a confirmed order when it has a recurring plan.",
    )
    subscription_state = fields.Selection(
        SUBSCRIPTION_STATES,
        string="Subscription Status",
        compute="_compute_subscription_state",
        store=True,
        index=True,
        tracking=True,
        copy=False,
        group_expand=True,
    )
    start_date = fields.Date(
        copy=False,
        tracking=True,
        help="First day of the subscription. Set when the subscription is confirmed.",
    )
    next_invoice_date = fields.Date(
        copy=False,
        tracking=True,
        help="First day of the next period to invoice: the start date until the first "
        "invoice, then moved one billing period forward by each recurring invoice.",
    )
    end_date = fields.Date(
        copy=False,
        tracking=True,
        help="Last day of the subscription.",
    )
    close_reason_id = fields.Many2one(
        "sale.order.close.reason",
        index="btree_not_null",
        copy=False,
        readonly=True,
        tracking=True,
    )
    close_comment = fields.Text(
        copy=False,
        readonly=True,
        help="What the customer or the salesperson wrote when closing, as given with the "
        "close reason.",
    )
    is_closing = fields.Boolean(
        string="Closing",
        compute="_compute_is_closing",
        search="_search_is_closing",
        help="In progress, with a closing scheduled on its end date.",
    )
    subscription_badge = fields.Selection(
        [*SUBSCRIPTION_STATES[:2], ("4_closing", "Closing"), *SUBSCRIPTION_STATES[2:]],
        string="Subscription",
        compute="_compute_subscription_badge",
        help="Subscription status, with Closing for subscriptions whose closing is scheduled.",
    )
    close_mail_to_send = fields.Selection(
        [
            ("closed", "Closed"),
            ("scheduled", "Closing scheduled"),
            ("kept", "Closing cancelled"),
            ("payment_failed", "Closed: payment failed"),
        ],
        string="Closure Email to Send",
        copy=False,
        readonly=True,
        help="Closure email waiting to be sent to the customer by the scheduled action.",
    )
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

    @api.depends("order_line.product_id")
    def _compute_plan_id(self):
        """A quotation selling a subscription product gets the product's
        recurring plan, if it has none yet (e.g. a cart of the online
        shop)."""
        for order in self:
            if order.plan_id or order.state not in ("draft", "sent", False):
                continue
            plans = order.order_line.product_id.product_tmpl_id.subscription_plan_id
            company = order.company_id
            plans = plans.filtered(
                lambda plan, company=company: plan.company_id in (company, plan.browse())
            )
            order.plan_id = plans[:1]

    @api.depends("plan_id", "state", "order_line.product_id.recurring_invoice")
    def _compute_is_subscription(self):
        # A confirmed order cannot lack a plan if it sells subscription products
        # (see _confirmation_error_message): once confirmed, the plan alone
        # decides, so ticking "Subscription" on a product later never turns
        # past ordinary sales into subscriptions.
        for order in self:
            order.is_subscription = bool(order.plan_id) or (
                order.state in ("draft", "sent")
                and any(order.order_line.product_id.mapped("recurring_invoice"))
            )

    @api.depends("is_subscription", "state")
    def _compute_subscription_state(self):
        for order in self:
            if not order.is_subscription or order.state == "cancel":
                order.subscription_state = False
            elif order.state in ("draft", "sent"):
                order.subscription_state = "1_draft"
            elif order.subscription_state in (False, "1_draft"):
                order.subscription_state = "3_progress"

    @api.depends("subscription_state", "end_date")
    def _compute_is_closing(self):
        for order in self:
            order.is_closing = order.subscription_state == "3_progress" and bool(order.end_date)

    def _search_is_closing(self, operator, value):
        if operator != "in":
            return NotImplemented  # the ORM negates "in" for "not in"
        closing = Domain("subscription_state", "=", "3_progress") & Domain("end_date", "!=", False)
        domains = []
        if True in value:
            domains.append(closing)
        if False in value:
            domains.append(~closing)
        return Domain.OR(domains) if domains else Domain.FALSE

    @api.depends("subscription_state", "is_closing")
    def _compute_subscription_badge(self):
        for order in self:
            order.subscription_badge = "4_closing" if order.is_closing else order.subscription_state

    # ------------------------------------------------------------------
    # Sale flow
    # ------------------------------------------------------------------

    def _confirmation_error_message(self):
        error = super()._confirmation_error_message()
        if not error and self.is_subscription and not self.plan_id:
            error = self.env._(
                "Choose a recurring plan for the subscription %(order)s before confirming it.",
                order=self.name,
            )
        return error

    def _action_confirm(self):
        """A confirmed subscription starts today (or on the start date given
        on the quotation): its first period is invoiced from that day."""
        res = super()._action_confirm()
        starting = self.filtered(lambda o: o.is_subscription and not o.next_invoice_date)
        today_by_id = starting._get_subscription_today()
        starts = defaultdict(list)
        for order in starting:
            starts[order.start_date or today_by_id[order.id]].append(order.id)
        for start, ids in starts.items():
            self.browse(ids).write({"start_date": start, "next_invoice_date": start})
        return res

    def action_draft(self):
        # A subscription set back to quotation starts again from scratch,
        # unless a period of it was invoiced: then its dates are facts.
        subscriptions = self.filtered(lambda o: o.is_subscription and o.state in ("cancel", "sent"))
        res = super().action_draft()
        if subscriptions:
            subscriptions.write(
                {
                    "end_date": False,
                    "close_reason_id": False,
                    "close_comment": False,
                    "close_mail_to_send": False,
                    "pause_start_date": False,
                    "resume_date": False,
                    "pause_reason": False,
                }
            )
            fresh = subscriptions.filtered(lambda o: not o.subscription_invoiced)
            if fresh:
                fresh.write({"start_date": False, "next_invoice_date": False, "invoice_due": False})
        return res

    def write(self, vals):
        """Once a period is invoiced, the start date, the plan and the
        periods billed are facts: refused through the ORM too
        (:meth:`_check_billed_periods`). Until then the next invoice date
        follows the start date, and whether the period of the next invoice
        date is due follows that date (:meth:`_subscription_date_values`)."""
        if not self or not vals.keys() & {"start_date", "plan_id", "next_invoice_date"}:
            return super().write(vals)
        self._check_billed_periods(vals)
        for ids, group_vals in self._subscription_date_values(vals).items():
            super(SaleOrder, self.browse(ids)).write(group_vals)
        return True

    # ------------------------------------------------------------------
    # Buttons
    # ------------------------------------------------------------------

    def action_open_close_wizard(self):
        """Open the Close Reason popup for the subscriptions of ``self``."""
        self._check_can_close()
        return self._subscription_wizard_action("subscription_close.sale_order_close_action")

    def action_open_reopen_wizard(self):
        """Open the Reopen popup, which asks whether to invoice the periods
        missed while the subscriptions were closed."""
        return self._subscription_wizard_action("subscription_close.sale_order_reopen_action")

    def action_open_pause_wizard(self):
        """Open the Pause popup for the subscriptions of ``self``."""
        self._check_can_pause()
        return self._subscription_wizard_action("subscription_close.sale_order_pause_action")

    def _subscription_wizard_action(self, xmlid):
        action = self.env["ir.actions.act_window"]._for_xml_id(xmlid)
        action["context"] = {"dialog_size": "medium", "default_order_ids": self.ids}
        return action

    def action_reopen(self):
        return self._action_reopen()

    def action_cancel_close(self):
        return self._action_cancel_close()

    def action_resume(self):
        return self._action_resume()

    # ------------------------------------------------------------------
    # What may change: refusals
    # ------------------------------------------------------------------

    def _subscription_refuse(self, refusals, headline, code=None):
        """Raise :class:`SubscriptionRefused` if ``refusals`` (``{order:
        why}``) is not empty: ``headline``, then the orders and why, the
        first :data:`REFUSALS_SHOWN` by name and how many more. The one way a
        subscription change is refused: by the transitions, the popups and
        the portal alike."""
        if refusals:
            raise SubscriptionRefused(
                f"{headline}\n{self._subscription_refusal_list(refusals)}", code=code
            )

    def _subscription_refusal_list(self, refusals):
        """``refusals`` (``{order: why}``) as lines for a message."""
        lines = [
            f"- {order.display_name}: {why}"
            for order, why in list(refusals.items())[:REFUSALS_SHOWN]
        ]
        if len(refusals) > REFUSALS_SHOWN:
            lines.append(self.env._("- and %(count)s more", count=len(refusals) - REFUSALS_SHOWN))
        return "\n".join(lines)

    def _get_close_refusals(self, end_dates=None):
        """Return ``{order: why}`` for the orders of ``self`` that cannot be
        closed (on ``end_dates``, ``{order_id: date}``, when known). A paused
        subscription closes now only: its pause ends with it, it cannot stay
        paused with an end date. Override to refuse more (e.g. an unpaid
        final invoice)."""
        end_dates = end_dates or {}
        today_by_id = self._get_subscription_today() if end_dates else {}
        refusals = {}
        for order in self:
            if not order.is_subscription:
                refusals[order] = self.env._("not a subscription")
            elif order.subscription_state == "1_draft":
                refusals[order] = self.env._("still a quotation")
            elif order.subscription_state == "6_churn":
                refusals[order] = self.env._("already closed")
            elif order.subscription_state not in ("3_progress", "4_paused"):
                refusals[order] = self.env._("not in progress")
            elif (
                order.subscription_state == "4_paused"
                and end_dates.get(order.id)
                and end_dates[order.id] > today_by_id[order.id]
            ):
                refusals[order] = self.env._(
                    "paused: it can only be closed now, resume it first to schedule its closing"
                )
        return refusals

    def _check_can_close(self, end_dates=None):
        refusals = {}
        for chunk in self._subscription_chunks():
            refusals.update(chunk._get_close_refusals(end_dates))
        self._subscription_refuse(
            refusals,
            self.env._(
                "Only subscriptions in progress can be closed. Nothing was closed because of:"
            ),
            code="not_closable",
        )

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
        self._subscription_refuse(
            refusals,
            self.env._(
                "Only subscriptions in progress can be paused. Nothing was paused because of:"
            ),
            code="not_pausable",
        )

    # ------------------------------------------------------------------
    # Extension points: called by each transition before and after it
    # writes; empty here, for other addons to override.
    # ------------------------------------------------------------------

    def _subscription_before_close(self, end_dates):
        """Before the subscriptions of ``self`` close (or schedule their
        closing) on ``end_dates`` (``{order_id: date}``)."""

    def _subscription_after_close(self, end_dates):
        """After the subscriptions of ``self`` closed (or scheduled their
        closing) on ``end_dates``."""

    def _subscription_before_reopen(self):
        """Before the churned subscriptions of ``self`` reopen."""

    def _subscription_after_reopen(self):
        """After the subscriptions of ``self`` reopened."""

    def _subscription_before_cancel_close(self):
        """Before the scheduled closing of ``self`` is cancelled."""

    def _subscription_after_cancel_close(self):
        """After the scheduled closing of ``self`` was cancelled."""

    def _subscription_before_pause(self, resume_dates):
        """Before the subscriptions of ``self`` pause until ``resume_dates``
        (``{order_id: date or False}``)."""

    def _subscription_after_pause(self, resume_dates):
        """After the subscriptions of ``self`` paused."""

    def _subscription_before_resume(self):
        """Before the paused subscriptions of ``self`` resume."""

    def _subscription_after_resume(self):
        """After the subscriptions of ``self`` resumed."""

    # ------------------------------------------------------------------
    # Transitions
    # ------------------------------------------------------------------

    def _action_close(
        self,
        reason,
        end_dates,
        author=None,
        retention_shown=False,
        comment=None,
        override_terms=False,
        declaration=None,
    ):
        """Close the subscriptions of ``self``: the one closing method.

        The Close popup (one or many orders), the customer portal and the
        scheduled actions all end here. All-or-nothing: if one order cannot
        be closed, nothing changes.

        :param reason: the ``sale.order.close.reason`` of the closing.
        :param end_dates: ``{order_id: date}``, the last day of each
            subscription, computed by the caller (today, the end of the
            current period, a chosen date, the end date already set). A date
            after the order's today schedules the closing: the subscription
            stays In Progress with that end date and the reason until the
            scheduled action closes it. A date up to today closes it now (a
            paused subscription closes now only).
        :param author: ``res.partner`` who closes when it is not the current
            user (the customer, from the portal).
        :param retention_shown: the customer saw the retention offer of the
            reason before confirming; the chatter says so.
        :param comment: what the customer or the salesperson wrote, kept on
            the order (``close_comment``) and shown in the chatter; required
            by a reason that says so.
        :param override_terms: end the subscriptions before what the notice
            period and the minimum term of their plan allow (the
            :meth:`_get_earliest_end_dates`); only for users of the group
            *Override Notice Periods and Minimum Terms*, logged in the chatter.
            Without it such an end date is refused (callers compute it with
            :meth:`_subscription_apply_terms`).
        :param declaration: the ``sale.subscription.cancellation`` the
            customer sent from the cancellation page, named in the chatter.

        Closing now a subscription whose plan says so also prepares a draft
        credit note for the days it does not use
        (:meth:`_create_close_credit_notes`); the closure email is queued
        (:meth:`_prepare_close_mail`).
        """
        if not self:
            return True
        self.check_access("write")
        missing = self.filtered(lambda order: not end_dates.get(order.id))
        if missing:
            raise UserError(
                self.env._(
                    "No end date was given to close %(orders)s.",
                    orders=", ".join(missing[:REFUSALS_SHOWN].mapped("display_name")),
                )
            )
        self._check_can_close(end_dates)
        reason._check_usable_for(self)
        comment = (comment or "").strip() or False
        reason._check_comment(comment)
        if override_terms:
            self._check_can_override_terms()
        else:
            # Declared on the cancellation page: the terms count from the
            # day of the declaration.
            declared_on = declaration and {
                order.id: declaration.with_env(self.env)._get_declared_date(order) for order in self
            }
            self._check_close_terms(reason, end_dates, on=declared_on or None)
        # Known before the closing changes the orders (e.g. ends their pause).
        unused_starts = self._get_unused_start_dates(end_dates)
        self._subscription_before_close(end_dates)
        closed_now = self.browse()
        for chunk in self._subscription_chunks():
            today_by_id = chunk._get_subscription_today()
            vals_by_id, event_by_id = {}, {}
            for order in chunk:
                end_date, today = end_dates[order.id], today_by_id[order.id]
                if end_date > today:
                    event, state = "close_scheduled", "3_progress"
                else:
                    event = "closed" if end_date == today else "expired"
                    state = "6_churn"
                    if end_date == today:
                        closed_now |= order
                vals_by_id[order.id] = order._prepare_close_values(
                    reason, end_date, state, comment=comment
                )
                event_by_id[order.id] = (event, end_date)
            body_by_id = chunk._subscription_log_bodies(
                event_by_id,
                author=author,
                reason=reason,
                retention_shown=retention_shown,
                note=comment,
                override_terms=override_terms,
                declaration=declaration,
            )
            chunk._subscription_write(vals_by_id, body_by_id, author=author)
        self._subscription_send_close_mails()
        closed_now._create_close_credit_notes(unused_starts)
        self._subscription_after_close(end_dates)
        return True

    def _prepare_close_values(self, reason, end_date, state, comment=False):
        """The values :meth:`_action_close` writes on the order ``self``
        (closed now when ``state`` is churned, else scheduled): the status,
        the end, the reason and the ``comment``, the closure email to send,
        the end of a pause, nothing left to invoice once closed. Override to
        write more; orders with equal values are written together."""
        self.ensure_one()
        vals = {
            "subscription_state": state,
            "end_date": end_date,
            "close_reason_id": reason.id,
            "close_comment": comment or False,
            "close_mail_to_send": self._prepare_close_mail(state, reason),
        }
        if self.subscription_state == "4_paused":
            vals.update({"pause_start_date": False, "resume_date": False, "pause_reason": False})
        if state == "6_churn" and self.invoice_due:
            vals["invoice_due"] = False
        return vals

    def _action_reopen(self, author=None, invoice_gap=False):
        """Put churned subscriptions back in progress, without end date nor
        close reason, and resume their invoicing: from the day of the
        reopening, or, with ``invoice_gap``, from their next invoice date
        (the invoicing then catches up one invoice per period missed). A
        draft prorated credit note of the closing is cancelled
        (:meth:`_cancel_draft_credit_notes`; the chatter names it).
        ``author`` as for :meth:`_action_close`."""
        if not self:
            return True
        self.check_access("write")
        self._subscription_refuse(
            {
                order: self.env._("not closed")
                for order in self
                if order.subscription_state != "6_churn"
            },
            self.env._(
                "Only closed subscriptions can be reopened. Nothing was reopened because of:"
            ),
            code="not_closed",
        )
        self._subscription_before_reopen()
        credit_notes = self._cancel_draft_credit_notes()
        for chunk in self._subscription_chunks():
            today_by_id = chunk._get_subscription_today()
            vals_by_id, body_by_id = {}, {}
            for order in chunk:
                vals_by_id[order.id] = order._prepare_reopen_values(
                    today_by_id[order.id], invoice_gap
                )
                body_by_id[order.id] = order._get_subscription_log_message(
                    "reopened",
                    author=author,
                    credit_notes=credit_notes.filtered(
                        lambda move, order=order: move.subscription_id == order
                    ),
                )
            chunk._subscription_write(vals_by_id, body_by_id, author=author)
        self._subscription_after_reopen()
        return True

    def _prepare_reopen_values(self, today, invoice_gap=False):
        """The values that reopen the churned subscription ``self`` on
        ``today``: in progress, without end nor reason; a next invoice date
        in the past moves to today unless the missed periods are invoiced
        (``invoice_gap``)."""
        self.ensure_one()
        vals = {
            "subscription_state": "3_progress",
            "end_date": False,
            "close_reason_id": False,
            "close_comment": False,
            "close_mail_to_send": False,
        }
        next_date = self.next_invoice_date
        if next_date:
            if next_date < today and not invoice_gap:
                next_date = today
            vals.update(self._prepare_next_invoice_values(next_date, today))
        return vals

    def _action_cancel_close(self, author=None):
        """Cancel the scheduled closing of the subscriptions of ``self``: they
        stay In Progress, without end date nor close reason. ``author`` as
        for :meth:`_action_close` (the customer keeping their subscription)."""
        if not self:
            return True
        self.check_access("write")
        self._subscription_refuse(
            {order: self.env._("no closing scheduled") for order in self if not order.is_closing},
            self.env._("These subscriptions have no scheduled closing to cancel:"),
            code="not_closing",
        )
        self._subscription_before_cancel_close()
        for chunk in self._subscription_chunks():
            vals_by_id = {order.id: order._prepare_cancel_close_values() for order in chunk}
            body_by_id = chunk._subscription_log_bodies(
                dict.fromkeys(chunk.ids, ("close_cancelled", None)), author=author
            )
            chunk._subscription_write(vals_by_id, body_by_id, author=author)
        self._subscription_send_close_mails()
        self._subscription_after_cancel_close()
        return True

    def _prepare_cancel_close_values(self):
        """The values that cancel the scheduled closing of ``self``, with the
        "your subscription goes on" email to send (:meth:`_get_close_cancelled_mail`)."""
        self.ensure_one()
        return {
            "end_date": False,
            "close_reason_id": False,
            "close_comment": False,
            "close_mail_to_send": self._get_close_cancelled_mail(),
        }

    def _action_pause(self, resume_dates, reason=None, author=None):
        """Pause the subscriptions of ``self`` from today: the one pausing
        method. All-or-nothing: if one order cannot be paused, nothing
        changes. Nothing is invoiced while a subscription is paused.

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
        self._subscription_refuse(
            {
                order: format_date(self.env, resume_dates[order.id])
                for order in self
                if resume_dates[order.id] and resume_dates[order.id] <= today_by_id[order.id]
            },
            self.env._(
                "A pause resumes after today: choose a later resume date, or resume by hand."
            ),
            code="invalid_duration",
        )
        reason = (reason or "").strip() or False
        self._subscription_before_pause(resume_dates)
        for chunk in self._subscription_chunks():
            vals_by_id, event_by_id = {}, {}
            for order in chunk:
                resume_date = resume_dates[order.id] or False
                vals_by_id[order.id] = order._prepare_pause_values(
                    today_by_id[order.id], resume_date, reason
                )
                event_by_id[order.id] = ("paused", resume_date)
            body_by_id = chunk._subscription_log_bodies(event_by_id, author=author, note=reason)
            chunk._subscription_write(vals_by_id, body_by_id, author=author)
        self._subscription_after_pause(resume_dates)
        return True

    def _prepare_pause_values(self, today, resume_date, reason):
        """The values that pause ``self`` from ``today`` until ``resume_date``
        (or by hand): nothing is to invoice while paused."""
        self.ensure_one()
        vals = {
            "subscription_state": "4_paused",
            "pause_start_date": today,
            "resume_date": resume_date,
            "pause_reason": reason,
        }
        if self.invoice_due:
            vals["invoice_due"] = False
        return vals

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
        self._subscription_refuse(
            {
                order: self.env._("not paused")
                for order in self
                if order.subscription_state != "4_paused"
            },
            self.env._("Only paused subscriptions can be resumed. Nothing was resumed because of:"),
            code="not_paused",
        )
        self._subscription_before_resume()
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
        self._subscription_after_resume()
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

    # ------------------------------------------------------------------
    # The chatter, through mail's tracking
    # ------------------------------------------------------------------

    def _get_subscription_log_message(
        self,
        event,
        author=None,
        reason=None,
        end_date=None,
        retention_shown=False,
        note=None,
        invoice=None,
        period=None,
        credit_notes=None,
        override_terms=False,
        declaration=None,
    ):
        """The chatter text logged on the order ``self`` for ``event``, the
        one place of every subscription message:

        - closing: ``closed``, ``expired`` (closed by the scheduled action on
          its end date), ``close_scheduled`` (``note`` is the comment of the
          closing, ``override_terms`` says the plan's notice period and
          minimum term were overridden, ``declaration`` the declaration of
          the cancellation page), ``close_cancelled``, ``reopened`` (with the
          draft ``credit_notes`` it cancelled);
        - pause: ``paused`` (``end_date`` is the resume date, ``note`` the
          reason), ``resumed``, ``pause_ended`` (``end_date`` is the day it
          resumes);
        - invoicing: ``invoiced`` (``invoice`` bills ``period``, a
          ``(start, end)`` pair; no invoice when there was nothing to bill);
        - card payments: ``charge_declined`` (``invoice``, ``note`` the
          transaction, ``end_date`` the next retry or ``False``),
          ``payment_exception`` (``note`` what happened),
          ``payment_exception_cleared``, ``card_set`` and ``card_archived``
          (``note`` the card).

        Override to change or add to the text (it is called for each order of
        a batch: read what it needs from ``self``, which prefetches for the
        whole batch); the tracked values are shown below it."""
        self.ensure_one()
        name = (author or self.env.user.partner_id).name
        if event == "closed":
            body = self._get_closed_log_message(name, reason)
        elif event == "expired":
            body = self.env._(
                "Subscription closed on its end date. Close Reason: %(reason)s",
                reason=reason.name,
            )
        elif event == "close_scheduled":
            body = self.env._(
                "Closing scheduled by %(name)s: the subscription will close on "
                "%(date)s. Close Reason: %(reason)s",
                name=name,
                date=format_date(self.env, end_date),
                reason=reason.name,
            )
        elif event == "reopened":
            body = self.env._("Subscription reopened by %(name)s.", name=name)
            if credit_notes:
                body = self.env._(
                    "%(message)s The draft credit note of its closing is cancelled: "
                    "%(credit_notes)s",
                    message=body,
                    credit_notes=", ".join(credit_notes.mapped("display_name")),
                )
        elif event == "close_cancelled":
            body = self.env._(
                "Subscription kept by %(name)s: the scheduled closing is cancelled and the "
                "subscription goes on.",
                name=name,
            )
        elif event == "paused":
            body = self._get_paused_log_message(name, end_date, note)
        elif event in ("resumed", "pause_ended"):
            body = self._get_resumed_log_message(event, name, end_date)
        elif event == "invoiced":
            label = self._get_subscription_period_label(*period)
            if invoice:
                body = self.env._(
                    "Period %(period)s invoiced: %(invoice)s",
                    period=label,
                    invoice=invoice._get_html_link(),
                )
            else:
                body = self.env._("Period %(period)s: nothing to invoice.", period=label)
        elif event in CARD_EVENTS:
            body = self._get_card_log_message(event, name, invoice, end_date, note)
        else:
            body = ""
        if event in ("closed", "expired", "close_scheduled"):
            body = self._get_close_details_log_message(
                body, name, note, override_terms, declaration
            )
        if retention_shown:
            body = self.env._(
                "%(message)s (a retention offer was shown before closing)", message=body
            )
        return body

    def _get_closed_log_message(self, name, reason):
        """A closing for an unpaid invoice names the invoice."""
        unpaid_reason_id = self.env["ir.model.data"]._xmlid_to_res_id(
            "subscription_close.close_reason_unpaid", raise_if_not_found=False
        )
        invoice = reason.id == unpaid_reason_id and self._get_overdue_invoices()[:1]
        if invoice:
            return self.env._(
                "Subscription closed: the invoice %(invoice)s, due on %(date)s, is still "
                "unpaid. Close Reason: %(reason)s",
                invoice=invoice.name,
                date=format_date(self.env, invoice.invoice_date_due),
                reason=reason.name,
            )
        return self.env._(
            "Subscription closed by %(name)s. Close Reason: %(reason)s",
            name=name,
            reason=reason.name,
        )

    def _get_close_details_log_message(self, body, name, comment, override_terms, declaration):
        """A closing's message with its comment, the override of the plan's
        terms and the declaration it comes from, if any."""
        if declaration:
            body = self.env._(
                "%(message)s Declared on the cancellation page on %(datetime)s: %(declaration)s",
                message=body,
                datetime=declaration._format_declared_at(self._subscription_tz()),
                declaration=declaration._get_html_link(),
            )
        if override_terms:
            body = self.env._(
                "%(message)s The notice period and the minimum term of the plan were "
                "overridden by %(name)s.",
                message=body,
                name=self.env.user.partner_id.name,
            )
        if comment:
            body = self.env._("%(message)s Comment: %(comment)s", message=body, comment=comment)
        return body

    def _get_card_log_message(self, event, name, invoice, next_charge, note):
        if event == "charge_declined":
            body = self.env._(
                "The card %(card)s was declined for %(amount)s of the invoice %(invoice)s "
                "(%(message)s).",
                card=note.token_id.display_name,
                amount=format_amount(self.env, note.amount, note.currency_id),
                invoice=invoice._get_html_link(),
                message=note.state_message or note.state,
            )
            if next_charge:
                return self.env._(
                    "%(message)s It is charged again on %(date)s; the customer is emailed a "
                    "link to pay now.",
                    message=body,
                    date=format_date(self.env, next_charge),
                )
            return self.env._(
                "%(message)s No retry is left: the subscription closes at the end of the grace "
                "period if the invoice is not paid.",
                message=body,
            )
        if event == "payment_exception":
            return self.env._(
                "Payment exception: %(detail)s Nothing charges the card until the exception is "
                "cleared.",
                detail=note,
            )
        if event == "payment_exception_cleared":
            return self.env._(
                "Payment exception cleared by %(name)s: the card may be charged again.",
                name=name,
            )
        if event == "card_set":
            return self.env._(
                "Card %(card)s set by %(name)s: it pays the next invoices.",
                card=note.display_name,
                name=name,
            )
        return self.env._(
            "The card %(card)s was archived: it no longer pays this subscription. Its invoices "
            "are to be paid by hand until another card is set.",
            card=note.display_name,
        )

    def _get_paused_log_message(self, name, resume_date, note):
        if resume_date:
            body = self.env._(
                "Subscription paused by %(name)s until %(date)s: nothing is invoiced until then.",
                name=name,
                date=format_date(self.env, resume_date),
            )
        else:
            body = self.env._(
                "Subscription paused by %(name)s until it is resumed by hand: nothing is "
                "invoiced until then.",
                name=name,
            )
        if note:
            body = self.env._("%(message)s Reason: %(reason)s", message=body, reason=note)
        return body

    def _get_resumed_log_message(self, event, name, resume_day):
        days = self._get_paused_days(resume_day)
        if event == "resumed":
            body = self.env._(
                "Subscription resumed by %(name)s after %(days)s days of pause.",
                name=name,
                days=days,
            )
        else:
            body = self.env._(
                "Subscription resumed on its resume date after %(days)s days of pause.",
                days=days,
            )
        if days and self.next_invoice_date:
            body = self.env._(
                "%(message)s The next invoice moves by as much, to %(date)s.",
                message=body,
                date=format_date(self.env, self.next_invoice_date + timedelta(days=days)),
            )
        return body

    def _subscription_log_bodies(self, event_by_id, **kwargs):
        """``{order_id: body}`` from ``event_by_id`` (``{order_id: (event,
        end_date)}``), each body given by :meth:`_get_subscription_log_message`."""
        return {
            order.id: order._get_subscription_log_message(
                event_by_id[order.id][0], end_date=event_by_id[order.id][1], **kwargs
            )
            for order in self
        }

    def _subscription_write(self, vals_by_id, body_by_id, author=None):
        """Write ``vals_by_id[order.id]`` on the orders of ``self`` with one
        ``write()`` per group of orders with equal values, and log
        ``body_by_id[order.id]`` with the tracked changes in each chatter, in
        the name of ``author`` (a partner) if given: one message per order.

        One order (a customer in the portal, a popup on one subscription) is
        logged by mail itself: the body and the author are handed to its
        tracking (``_track_set_log_message``, ``_track_set_author``), the
        order is written, and the cursor is flushed (``cr.flush()``, what a
        commit runs first: the ORM's pending writes and the precommit hooks,
        mail's tracking among them), so that mail logs the message at once,
        in the environment of the write, whose user decides the subtype
        (:meth:`_track_subtype`): a tracked edit made earlier in the same
        transaction is in the same message. Many orders are logged in batch
        through mail's public batch API (:meth:`_subscription_log_batch`):
        logging them one by one through mail's tracking costs about ten times
        the whole closing (measured in the README)."""
        if len(self) == 1:
            self._track_set_log_message(body_by_id.get(self.id, ""))
            self._track_set_author(author or self.env.user.partner_id)
            self.write(vals_by_id[self.id])
            self.env.cr.flush()
            return
        self._subscription_log_batch(vals_by_id, body_by_id, author=author)

    def _subscription_log_batch(self, vals_by_id, body_by_id, author=None):
        """:meth:`_subscription_write` for many orders: the writes, then one
        message per order with its tracked values, as mail's tracking logs
        them (the same values from ``_mail_track``, the same subtype from
        :meth:`_track_subtype`, the same body or ``_track_get_default_log_message``,
        the same templates from ``_track_template``), the notes created with
        one ``_message_log_batch`` and their tracked values with one
        ``create``. The changes still pending in mail's tracking are logged
        first (``cr.flush()``, as at a commit), so that every change is logged
        once."""
        tracked = self._track_get_fields() & {
            fname for vals in vals_by_id.values() for fname in vals
        }
        self.env.cr.flush()
        initial_by_id = {order.id: {fname: order[fname] for fname in tracked} for order in self}
        ids_by_vals = defaultdict(list)
        for order_id, vals in vals_by_id.items():
            ids_by_vals[tuple(sorted(vals.items()))].append(order_id)
        for vals, ids in ids_by_vals.items():
            # Tracked here, in batch, not once more by mail at the commit.
            self.browse(ids).with_context(mail_notrack=True).write(dict(vals))
        tracked_fields = self.fields_get(
            list(tracked), attributes=("string", "type", "selection", "currency_field")
        )
        author_id = author.id if author else None
        bodies, tracking, changes_by_id = {}, {}, {}
        for order in self.sudo():
            initial = initial_by_id[order.id]
            changes, tracking_value_ids = order._mail_track(tracked_fields, initial)
            changes_by_id[order.id] = changes
            if not changes:
                continue
            body = (
                body_by_id[order.id]
                if order.id in body_by_id
                else order._track_get_default_log_message(changes)
            )
            subtype = order._track_subtype({fname: initial[fname] for fname in changes})
            if subtype:
                order.message_post(
                    body=body,
                    author_id=author_id,
                    subtype_id=subtype.id,
                    tracking_value_ids=tracking_value_ids,
                )
            elif tracking_value_ids:
                bodies[order.id] = body
                tracking[order.id] = tracking_value_ids
        if bodies:
            logged = self.browse(list(bodies))
            # One message per order, in the orders' order.
            messages = logged._message_log_batch(bodies=bodies, author_id=author_id)
            self.env["mail.tracking.value"].sudo().create(
                [
                    dict(command[2], mail_message_id=message.id)
                    for order_id, message in zip(logged.ids, messages, strict=True)
                    for command in tracking[order_id]
                ]
            )
        for order in self.sudo():
            order._message_track_post_template(changes_by_id[order.id])

    def _track_subtype(self, init_values):
        """A change of closing or of pause made by a customer (a portal or
        public user: closing, keeping, pausing or resuming from the portal)
        is posted with the "Subscription Closed" or "Subscription Paused"
        subtype, which notifies the followers; the same change made in the
        backend is a note."""
        self.ensure_one()
        subtype = super()._track_subtype(init_values)
        if subtype or not self.env.user.share:
            return subtype
        if init_values.keys() & CLOSING_FIELDS:
            return self.env.ref("subscription_close.mt_subscription_closed")
        if init_values.keys() & PAUSE_FIELDS:
            return self.env.ref("subscription_close.mt_subscription_paused")
        return subtype

    # ------------------------------------------------------------------
    # Dates
    # ------------------------------------------------------------------

    def _subscription_today(self):
        """Today for the subscription ``self`` (one order, or none for the
        current company): in the calendar of its company."""
        company = self.company_id if len(self) == 1 else self.env.company
        return self._get_company_today(company)

    def _subscription_tz(self):
        """The time zone of :meth:`_subscription_today`."""
        company = self.company_id if len(self) == 1 else self.env.company
        return self._get_company_tz(company)

    def _get_subscription_today(self):
        """``{order_id: today}`` for the orders of ``self``, each in the
        calendar of its company (one computation per company, whatever the
        number of orders)."""
        today_by_company = {}
        result = {}
        for order in self._subscription_prefetch(["company_id"]):
            company = order.company_id
            if company not in today_by_company:
                today_by_company[company] = self._get_company_today(company)
            result[order.id] = today_by_company[company]
        return result

    def _get_period_end_dates(self, on=None):
        """``{order_id: date}``: the last day of the billing period that
        contains today, or the day ``on[order_id]`` when given (of the
        periods already invoiced, the last one), i.e. the day before the
        first period start after that day. A paused subscription has no
        current period: it ends on that day."""
        day_by_id = on or self._get_subscription_today()
        end_dates = {}
        for order in self:
            day = day_by_id[order.id]
            boundary = order.next_invoice_date
            if order.subscription_state == "4_paused" or not (boundary and order.plan_id):
                end_dates[order.id] = day
                continue
            while boundary <= day:
                boundary = order._get_next_period_start(boundary)
            end_dates[order.id] = boundary - timedelta(days=1)
        return end_dates
