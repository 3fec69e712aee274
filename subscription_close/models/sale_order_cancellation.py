from datetime import timedelta

from dateutil.relativedelta import relativedelta

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.fields import Domain
from odoo.tools import format_date

from .sale_order import REFUSALS_SHOWN
from .sale_subscription_job import CHUNK_SIZE

# Annual reminders emailed per batch of their scheduled action (about 0.1 s
# each, see CLOSE_MAIL_BATCH_SIZE).
REMINDER_BATCH_SIZE = 20


class SaleOrder(models.Model):
    """The terms of a customer's cancellation, as consumer law and the plan
    say: the notice period and the minimum term (the earliest day a closing
    the customer chose may take effect, checked by :meth:`_action_close`),
    the withdrawal period (closing at once, what was paid credited), the
    declarations of the public cancellation page (``sale.subscription.
    cancellation``) and the yearly reminder of what is charged and how to
    cancel."""

    _inherit = "sale.order"  # pylint: disable=consider-merging-classes-inherited

    subscription_cancellation_ids = fields.One2many(
        "sale.subscription.cancellation",
        "order_id",
        string="Cancellations",
        readonly=True,
        groups="sales_team.group_sale_salesman",
    )
    subscription_cancellation_count = fields.Integer(
        string="Cancellation Declarations",
        compute="_compute_subscription_cancellation_count",
        groups="sales_team.group_sale_salesman",
    )
    annual_reminder_date = fields.Date(
        string="Annual Reminder Sent On",
        readonly=True,
        copy=False,
        help="Day the last annual reminder of what is charged and how to cancel was emailed.",
    )

    def _compute_subscription_cancellation_count(self):
        counts = dict(
            self.env["sale.subscription.cancellation"]._read_group(
                [("order_id", "in", self.ids)], ["order_id"], ["__count"]
            )
        )
        for order in self:
            order.subscription_cancellation_count = counts.get(order, 0)

    def action_view_subscription_cancellations(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "subscription_close.sale_subscription_cancellation_action"
        )
        action["domain"] = [("order_id", "=", self.id)]
        action["context"] = {"create": False}
        return action

    # ------------------------------------------------------------------
    # Notice period and minimum term
    # ------------------------------------------------------------------

    def _get_earliest_end_dates(self, on=None):
        """``{order_id: date}``: the earliest last day of the subscriptions
        of ``self`` when the customer cancels on ``on`` (``{order_id: date}``,
        their today by default): the notice period of the plan after that
        day, not before the end of the minimum term (counted from the start),
        then the end of the billing period of that day if the plan says so.
        Without terms, that day itself: the subscription may close at once."""
        day_by_id = on or self._get_subscription_today()
        earliest = {}
        for order in self:
            plan = order.plan_id
            day = day_by_id[order.id] + timedelta(days=plan.notice_days)
            if plan.minimum_term_months and order.start_date:
                term_end = (
                    order.start_date
                    + relativedelta(months=plan.minimum_term_months)
                    - timedelta(days=1)
                )
                day = max(day, term_end)
            earliest[order.id] = day
        at_period_end = self.filtered(lambda order: order.plan_id.notice_end_of_period)
        if at_period_end:
            earliest.update(
                at_period_end._get_period_end_dates(
                    on={order.id: earliest[order.id] for order in at_period_end}
                )
            )
        return earliest

    def _subscription_apply_terms(self, end_dates, reason, on=None):
        """``end_dates`` (``{order_id: date}``) moved to the earliest day the
        terms of each plan allow (:meth:`_get_earliest_end_dates`, for a
        declaration made on ``on``) when ``reason`` is bound by them: what
        the Close popup, the portal and the cancellation page show before
        confirming, and close on."""
        if not reason._is_bound_by_terms():
            return dict(end_dates)
        earliest = self._get_earliest_end_dates(on=on)
        return {
            order_id: max(end_date, earliest[order_id]) for order_id, end_date in end_dates.items()
        }

    def _get_close_terms_refusals(self, reason, end_dates, on=None):
        """``{order: why}`` for the orders of ``self`` that ``end_dates``
        would end before the notice period and the minimum term of their
        plan allow, when ``reason`` is bound by them. A closing already
        scheduled on its own end date (the scheduled action closing it) was
        checked when it was scheduled."""
        if not reason._is_bound_by_terms():
            return {}
        earliest = self._get_earliest_end_dates(on=on)
        return {
            order: self.env._(
                "its plan's notice period and minimum term let it end on %(date)s at the earliest",
                date=format_date(self.env, earliest[order.id]),
            )
            for order in self
            if end_dates[order.id] < earliest[order.id]
            and not (order.is_closing and order.end_date == end_dates[order.id])
        }

    def _check_close_terms(self, reason, end_dates, on=None):
        refusals = {}
        for chunk in self._subscription_chunks():
            refusals.update(chunk._get_close_terms_refusals(reason, end_dates, on=on))
        self._subscription_refuse(
            refusals,
            self.env._(
                "These subscriptions cannot end so early (a user of the group Override Notice "
                "Periods and Minimum Terms may end them earlier). Nothing was closed because of:"
            ),
            code="too_early",
        )

    def _check_can_override_terms(self):
        if not (
            self.env.su
            or self.env.user.has_group("subscription_close.group_subscription_terms_override")
        ):
            raise AccessError(
                self.env._(
                    "Only the users of the group Override Notice Periods and Minimum Terms may "
                    "end a subscription before its notice period and minimum term allow."
                )
            )

    def _get_terms_description(self):
        """What the plan of ``self`` says about ending it, in a sentence, or
        ``""`` when it may end at once."""
        self.ensure_one()
        plan = self.plan_id
        parts = []
        if plan.notice_days:
            parts.append(self.env._("a notice period of %(days)s days", days=plan.notice_days))
        if plan.minimum_term_months and self.start_date:
            parts.append(
                self.env._(
                    "a minimum term until %(date)s",
                    date=format_date(
                        self.env,
                        self.start_date
                        + relativedelta(months=plan.minimum_term_months)
                        - timedelta(days=1),
                    ),
                )
            )
        if not parts:
            return ""
        text = self.env._("Its plan has %(terms)s.", terms=self.env._(" and ").join(parts))
        if plan.notice_end_of_period:
            text = self.env._("%(terms)s It then ends at the end of a billing period.", terms=text)
        return text

    # ------------------------------------------------------------------
    # Withdrawal
    # ------------------------------------------------------------------

    def _get_withdrawal_last_day(self):
        """The last day the customer may withdraw from the subscription
        ``self`` (the withdrawal period of its plan from its start), or
        ``False`` when its plan has none or it has not started."""
        self.ensure_one()
        days = self.plan_id.withdrawal_days
        if not days or not self.start_date:
            return False
        return self.start_date + timedelta(days=days)

    def _subscription_withdraw(self, declaration=None, author=None):
        """The customer withdraws from the subscriptions of ``self``: they
        close today with the protected reason *Withdrawal* (whatever the
        notice period and the minimum term), and get a draft credit note of
        what was paid (:meth:`_create_withdrawal_credit_notes`), left to the
        accountant to post and refund."""
        reason = self.env.ref("subscription_close.close_reason_withdrawal")
        # The credit note of a withdrawal replaces the one of closing.
        self.with_context(subscription_close_credit_notes=False)._action_close(
            reason,
            self._get_subscription_today(),
            author=author,
            comment=declaration.comment if declaration else None,
            declaration=declaration,
        )
        return self._create_withdrawal_credit_notes()

    def _create_withdrawal_credit_notes(self):
        """Draft credit notes for the withdrawn subscriptions of ``self``:
        of every posted invoice (``full``), or of the days not used of the
        last one (``prorated``), as their plan says. Refused when an invoice
        to credit already has a credit note: what is left to credit would be
        guessed."""
        Move = self.env["account.move"]
        full = self.filtered(lambda order: order.plan_id.withdrawal_refund == "full")
        invoices = Move.sudo().search(
            [
                ("subscription_id", "in", full.ids),
                ("move_type", "=", "out_invoice"),
                ("state", "=", "posted"),
            ],
            order="invoice_date, id",
        )
        credited = invoices.filtered(
            lambda move: move.reversal_move_ids.filtered(lambda rev: rev.state != "cancel")
        )
        if credited:
            raise UserError(
                self.env._(
                    "The withdrawal cannot be credited automatically: these invoices already "
                    "have a credit note, credit what is left by hand: %(invoices)s",
                    invoices=", ".join(credited[:REFUSALS_SHOWN].mapped("name")),
                )
            )
        credit_notes = Move
        if invoices:
            credit_notes = invoices._reverse_moves(
                default_values_list=[
                    {
                        "ref": self.env._("Withdrawal from %(order)s", order=move.invoice_origin),
                        "subscription_id": move.subscription_id.id,
                        "subscription_period_start": move.subscription_period_start,
                        "subscription_period_end": move.subscription_period_end,
                        "invoice_date": False,
                    }
                    for move in invoices
                ]
            )
            notes = credit_notes.grouped("subscription_id")
            full.filtered(lambda order: order in notes)._message_log_batch(
                bodies={
                    order.id: self.env._(
                        "Withdrawal: draft credit notes of what was invoiced: %(credit_notes)s",
                        credit_notes=", ".join(
                            notes[order].mapped(lambda move: move._get_html_link())
                        ),
                    )
                    for order in notes
                }
            )
        prorated = self - full
        if prorated:
            credit_notes |= prorated._create_prorated_credit_notes(
                {order.id: order.end_date + timedelta(days=1) for order in prorated}
            )
        return credit_notes

    # ------------------------------------------------------------------
    # The cancellation page
    # ------------------------------------------------------------------

    def _get_cancellation_url(self):
        """The public cancellation page, prefilled with the subscription
        ``self`` (its access token proves the visitor may see it)."""
        self.ensure_one()
        self._portal_ensure_token()
        return f"/subscriptions/cancel?order_id={self.id}&access_token={self.access_token}"

    def _get_cancellation_options(self):
        """What the cancellation page shows for the subscription ``self``
        (a visitor who may see it): ``{order, end_date, terms,
        withdrawal_until}``, the day it ends if cancelled today at the
        earliest, what its plan says, and the last day to withdraw (or
        ``False``)."""
        self.ensure_one()
        today = self._subscription_today()
        end_date = self._get_portal_close_date()
        if self.is_closing:
            end_date = min(end_date, self.end_date)
        withdrawal_until = self._get_withdrawal_last_day()
        return {
            "order": self,
            "end_date": end_date,
            "terms": self._get_terms_description(),
            "withdrawal_until": withdrawal_until
            if withdrawal_until and today <= withdrawal_until
            else False,
        }

    def _subscription_cancel_declared(self, declaration):
        """Close the subscription ``self`` as the ``declaration`` of the
        cancellation page asks (its customer declared it on the day
        ``declaration`` says, in the order's calendar): a withdrawal within
        the withdrawal period closes today (:meth:`_subscription_withdraw`);
        any other cancellation, or a withdrawal too late, ends the
        subscription on the wished day, or as soon as the plan's terms allow
        (an extraordinary cancellation too: a salesperson reviews its reason
        and may end it earlier). A closing already scheduled earlier is kept.
        Returns ``(outcome, end_date)``, the outcome being ``withdrawn``,
        ``closed``, ``closing`` or ``already_closed``."""
        self.ensure_one()
        # In the calendar of this environment, as its today.
        declared_on = declaration.with_env(self.env)._get_declared_date(self)
        if self.subscription_state == "6_churn":
            last_day = self._get_withdrawal_last_day()
            if (
                declaration.kind == "withdrawal"
                and last_day
                and declared_on <= last_day
                and self.close_reason_id
                != self.env.ref("subscription_close.close_reason_withdrawal")
            ):
                # Closed, maybe credited in part: what is left to credit
                # would be guessed.
                raise UserError(
                    self.env._(
                        "The customer withdrew within the withdrawal period from a subscription "
                        "already closed: credit what they paid by hand."
                    )
                )
            return "already_closed", self.end_date
        today = self._subscription_today()
        author = self.partner_id
        if declaration.kind == "withdrawal":
            last_day = self._get_withdrawal_last_day()
            if last_day and declared_on <= last_day:
                self._subscription_withdraw(declaration, author=author)
                return "withdrawn", self.end_date
        reason = self.env.ref("subscription_close.close_reason_cancelled_online")
        requested = max(
            declaration.wished_end_date or self._get_portal_close_date(on=declared_on), today
        )
        end_date = self._subscription_apply_terms(
            {self.id: requested}, reason, on={self.id: declared_on}
        )[self.id]
        if self.is_closing and self.end_date <= end_date:
            return "closing", self.end_date
        if self.subscription_state == "4_paused" and end_date > today:
            # A paused subscription closes now only: it resumes for its notice.
            self._action_resume(author=author)
        self._action_close(
            reason,
            {self.id: end_date},
            author=author,
            comment=declaration.comment,
            declaration=declaration,
        )
        return ("closing" if self.is_closing else "closed"), end_date

    # ------------------------------------------------------------------
    # Annual reminder
    # ------------------------------------------------------------------

    @api.model
    def _get_annual_reminder_domain(self):
        """Subscriptions in progress, not closing, whose plan sends the
        annual reminder and which started, or were last reminded, a year ago
        or more (in the calendar of their company)."""
        companies = self.env["res.company"].sudo().search([])
        due = Domain.OR(
            Domain("company_id", "=", company.id)
            & (
                (
                    Domain("annual_reminder_date", "=", False)
                    & Domain(
                        "start_date",
                        "<=",
                        self._get_company_today(company) - relativedelta(years=1),
                    )
                )
                | Domain(
                    "annual_reminder_date",
                    "<=",
                    self._get_company_today(company) - relativedelta(years=1),
                )
            )
            for company in companies
        )
        return (
            Domain("subscription_state", "=", "3_progress")
            # Closing already: its closing email said what is left.
            & Domain("end_date", "=", False)
            & Domain("plan_id.annual_reminder", "=", True)
            & due
        )

    @api.model
    def _cron_send_annual_reminders(self, batch_size=REMINDER_BATCH_SIZE):
        """Email each subscription whose plan says so, once a year on the
        anniversary of its start, what it is charged, how often, and the
        link to the cancellation page, in batches (:meth:`_subscription_run_job`)."""
        template = self.env.ref("subscription_close.mail_template_subscription_annual_reminder")

        def remind(orders):
            for order in orders:
                order.message_post_with_source(
                    template,
                    subtype_xmlid="mail.mt_comment",
                    email_layout_xmlid="mail.mail_notification_light",
                )
            for today, group in orders.grouped(lambda order: order._subscription_today()).items():
                group.write({"annual_reminder_date": today})
            self.env.ref("mail.ir_cron_mail_scheduler_action")._trigger()
            return len(orders), orders.browse()

        self._subscription_run_job(
            self._get_annual_reminder_domain(),
            remind,
            min(batch_size, CHUNK_SIZE),
            "subscription_close.ir_cron_send_annual_reminders",
        )
