import logging
from collections import defaultdict
from datetime import timedelta

from psycopg2 import IntegrityError

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.fields import Command, Domain
from odoo.tools import format_date

_logger = logging.getLogger(__name__)

# Subscriptions invoiced per batch (one transaction each in the scheduled
# action): an invoice costs far more than a closing, so batches are smaller.
INVOICE_BATCH_SIZE = 100
# Date format of the period on invoice lines ("1 Dec 2026 – 31 Dec 2026").
PERIOD_DATE_FORMAT = "d MMM y"


class SaleOrder(models.Model):
    """Recurring invoicing of subscriptions, and closing what is not paid.

    Each period of an In Progress subscription is invoiced once, through
    sale's own invoicing (:meth:`_create_invoices`: sale's invoiceable lines,
    line preparation and ``_create_account_invoices``), so sections, notes,
    combos, analytic distribution and labels come as for any sales order.
    While a period is due (``invoice_due``) the recurring lines are to
    invoice for sale (Orders to Invoice, Create Invoice); the invoice bills
    it, carries its period in its own fields and in each recurring line's
    label, and moves the next invoice date one billing period forward. The
    daily scheduled action (:meth:`_cron_create_recurring_invoices`) invoices
    every due period and posts it when the plan says so; sale's *Create
    Invoice* leaves a draft, as for any order. Invoices are dated when they
    are issued, never at the start of a past period: due dates, reminders and
    Automatic Closing count from the day the customer is billed.

    A subscription whose invoice stays unpaid too long is closed by
    :meth:`_cron_close_unpaid` with the protected "Unpaid invoice" reason.
    """

    _inherit = "sale.order"  # pylint: disable=consider-merging-classes-inherited

    subscription_invoice_ids = fields.One2many(
        "account.move",
        "subscription_id",
        string="Subscription Invoices",
        readonly=True,
        copy=False,
    )
    subscription_invoiced = fields.Boolean(
        string="Period Invoiced",
        compute="_compute_subscription_invoiced",
        help="A period of the subscription is invoiced: its start date, its plan and the "
        "periods already billed can no longer change.",
    )
    invoice_due = fields.Boolean(
        string="Period Due",
        readonly=True,
        copy=False,
        help="The period starting on the next invoice date has begun and is not invoiced yet: "
        "its recurring lines are to invoice. Set when the period begins (at confirmation, then "
        "by a scheduled action each hour), cleared once it is invoiced.",
    )
    next_invoice_amount = fields.Monetary(
        compute="_compute_next_invoice_amount",
        currency_field="currency_id",
        help="Total of the recurring lines, taxes included: what the next invoice bills.",
    )
    invoice_to_check = fields.Boolean(
        string="Invoicing to Check",
        readonly=True,
        copy=False,
        help="The last attempt to invoice this subscription failed (see its chatter): fix the "
        "cause, the next run of the invoicing retries it.",
    )

    @api.depends(
        "subscription_invoice_ids.state",
        "subscription_invoice_ids.move_type",
        "subscription_invoice_ids.subscription_period_start",
    )
    def _compute_subscription_invoiced(self):
        for order in self:
            order.subscription_invoiced = bool(order._get_billed_invoices())

    @api.depends("order_line.price_total", "order_line.product_id.recurring_invoice")
    def _compute_next_invoice_amount(self):
        for order in self:
            order.next_invoice_amount = sum(order._get_recurring_lines().mapped("price_total"))

    # ------------------------------------------------------------------
    # Periods
    # ------------------------------------------------------------------

    def _get_recurring_lines(self):
        """The lines billed every period: subscription products (and the
        items of a subscription combo). The one definition of a recurring
        line: the MRR, the recurring invoice and the portal's next amount all
        use it."""
        self.ensure_one()
        return self.order_line.filtered(
            lambda line: (
                not line.display_type
                and (
                    line.product_id.recurring_invoice
                    or (line.combo_item_id and line.linked_line_id.product_id.recurring_invoice)
                )
            )
        )

    def _get_billed_invoices(self):
        """The customer invoices (not cancelled) that bill a period of the
        subscription ``self``, oldest period first."""
        self.ensure_one()
        return self.subscription_invoice_ids.filtered(
            lambda move: (
                move.move_type == "out_invoice"
                and move.state != "cancel"
                and move.subscription_period_start
            )
        ).sorted("subscription_period_start")

    def _get_next_period_start(self, period_start):
        """The day after the billing period of ``self`` starting on
        ``period_start``. Periods start on the day of the month of the start
        date (31 January, 28 February, 31 March...), unless the schedule was
        moved (e.g. by a pause): then on the day of ``period_start``."""
        self.ensure_one()
        anchor_day = period_start.day
        start = self.start_date
        if start and start.day > period_start.day:
            next_day = period_start + timedelta(days=1)
            if next_day.month != period_start.month:  # a shortened month end
                anchor_day = start.day
        return self.plan_id._next_period_start(period_start, anchor_day)

    def _get_invoice_period(self):
        """``(first day, last day)`` of the period of ``self`` that starts on
        its next invoice date: the one its next invoice bills."""
        self.ensure_one()
        start = self.next_invoice_date
        return start, self._get_next_period_start(start) - timedelta(days=1)

    def _get_current_period_day(self):
        """A day of the current period of ``self``, the one sale's figures
        speak of: the next invoice date while that period is due, else the
        last day of the period billed last (``False`` before the start)."""
        self.ensure_one()
        if not self.next_invoice_date:
            return False
        if self.invoice_due:
            return self.next_invoice_date
        return self.next_invoice_date - timedelta(days=1)

    def _get_subscription_period_label(self, period_start, period_end):
        """ "1 Dec 2026 – 31 Dec 2026", in the language of the context."""
        start = format_date(self.env, period_start, date_format=PERIOD_DATE_FORMAT)
        end = format_date(self.env, period_end, date_format=PERIOD_DATE_FORMAT)
        return f"{start} – {end}"

    def _is_invoice_due(self, today=None):
        """Whether the period starting on the next invoice date of ``self``
        must be invoiced now: the subscription is in progress, that date has
        come, and no closing is scheduled before it."""
        self.ensure_one()
        today = today or self._subscription_today()
        return self._is_period_due(
            self.next_invoice_date, today, self.subscription_state, self.end_date
        )

    @api.model
    def _is_period_due(self, next_invoice_date, today, state, end_date):
        return bool(
            state == "3_progress"
            and next_invoice_date
            and next_invoice_date <= today
            and (not end_date or next_invoice_date <= end_date)
        )

    def _prepare_next_invoice_values(self, next_date, today):
        """The values that make ``next_date`` the next invoice date of the
        subscription ``self``, back in progress on ``today`` (reopened,
        resumed): only what changes, so that an unchanged date recomputes
        nothing of sale's figures."""
        self.ensure_one()
        due = self._is_period_due(next_date, today, "3_progress", False)
        vals = {}
        if next_date != self.next_invoice_date:
            vals.update(next_invoice_date=next_date, invoice_due=due)
        elif due != self.invoice_due:
            vals["invoice_due"] = due
        return vals

    def _subscription_open_due_periods(self, today_by_id=None):
        """Mark due the periods of ``self`` that have begun (their recurring
        lines become to invoice for sale): each hour for the periods that
        begin (:meth:`_cron_open_due_periods`), and before invoicing. Returns
        the subscriptions whose period is due."""
        today_by_id = today_by_id or self._get_subscription_today()
        due = self.filtered(lambda order: order._is_invoice_due(today_by_id[order.id]))
        opening = due.filtered(lambda order: not order.invoice_due)
        if opening:
            opening.write({"invoice_due": True})
        return due

    # ------------------------------------------------------------------
    # Periods are facts
    # ------------------------------------------------------------------

    def _check_billed_periods(self, vals):
        """Raise a ``UserError`` if ``vals`` would move the periods already
        invoiced of a subscription of ``self``."""
        refusals = {}
        for order in self.filtered("is_subscription"):
            billed = order._get_billed_invoices()
            if not billed:
                continue
            if "start_date" in vals and fields.Date.to_date(vals["start_date"]) != order.start_date:
                refusals[order] = self.env._("the start date")
            elif "plan_id" in vals and (vals["plan_id"] or False) != order.plan_id.id:
                refusals[order] = self.env._("the recurring plan")
            elif "next_invoice_date" in vals:
                next_date = fields.Date.to_date(vals["next_invoice_date"])
                last_billed = max(billed.mapped("subscription_period_end"))
                if not next_date or next_date <= last_billed:
                    refusals[order] = self.env._(
                        "the next invoice date, before the end of the periods already "
                        "invoiced (%(date)s)",
                        date=format_date(self.env, last_billed),
                    )
        self._subscription_refuse(
            refusals,
            self.env._(
                "A period of these subscriptions is invoiced: what it billed can no longer "
                "change. Cancel its invoice first, or close the subscription and make a new one. "
                "Nothing was changed because of:"
            ),
        )

    def _subscription_date_values(self, vals):
        """``{ids: vals}``: ``vals`` for each group of orders of ``self``,
        with what follows from it: the next invoice date of a subscription
        not invoiced yet follows its start date, and ``invoice_due`` follows
        the next invoice date."""
        today_by_id = self._get_subscription_today()
        groups = defaultdict(list)  # {derived values: ids}
        for order in self:
            derived = {}
            next_date = vals.get("next_invoice_date")
            if (
                "start_date" in vals
                and "next_invoice_date" not in vals
                and order.is_subscription
                and order.next_invoice_date
                and not order._get_billed_invoices()
            ):
                next_date = derived["next_invoice_date"] = fields.Date.to_date(vals["start_date"])
            if ("next_invoice_date" in vals or derived) and "invoice_due" not in vals:
                derived["invoice_due"] = self._is_period_due(
                    fields.Date.to_date(next_date),
                    today_by_id[order.id],
                    vals.get("subscription_state", order.subscription_state),
                    fields.Date.to_date(vals.get("end_date", order.end_date)),
                )
            groups[tuple(sorted(derived.items()))].append(order.id)
        return {tuple(ids): {**vals, **dict(derived)} for derived, ids in groups.items()}

    # ------------------------------------------------------------------
    # Invoicing, through sale
    # ------------------------------------------------------------------

    def _get_invoice_refusals(self):
        """``{order: why}`` for the subscriptions of ``self`` that cannot be
        invoiced now."""
        refusals = {}
        for order in self:
            if order.subscription_state == "4_paused":
                refusals[order] = self.env._(
                    "nothing is invoiced while it is paused (since %(date)s): resume it first",
                    date=format_date(self.env, order.pause_start_date),
                )
            elif order.subscription_state != "3_progress":
                refusals[order] = self.env._("only subscriptions in progress are invoiced")
        return refusals

    def _create_invoices(self, grouped=False, final=False, date=None):
        """Sale's invoicing of subscriptions bills their due period: one
        invoice per subscription (never grouped with other orders, its period
        is its own), from sale's invoiceable lines (the recurring lines of a
        due period, the one-off lines still to invoice, sections and notes),
        then the next invoice date moves one period forward. The invoices are
        left as sale leaves them, in draft, but when the scheduled action
        invoices the plans that post (context ``subscription_post_invoices``).
        Other orders are invoiced as usual."""
        subscriptions = self.filtered(
            lambda order: order.is_subscription and order.subscription_state
        )
        if not subscriptions:
            return super()._create_invoices(grouped=grouped, final=final, date=date)
        self._subscription_refuse(
            subscriptions._get_invoice_refusals(),
            self.env._("These subscriptions cannot be invoiced now:"),
        )
        subscriptions.lock_for_update(allow_referencing=True)
        subscriptions._subscription_open_due_periods()
        nothing = subscriptions.filtered(
            lambda order: (
                not order.invoice_due and not any(line.qty_to_invoice for line in order.order_line)
            )
        )
        others = self - subscriptions
        if nothing and not self.env.context.get("raise_if_nothing_to_invoice", True):
            # As sale does when asked not to raise (e.g. a paid online order).
            subscriptions -= nothing
            nothing = nothing.browse()
        self._subscription_refuse(
            {
                order: self.env._(
                    "next invoice on %(date)s", date=format_date(self.env, order.next_invoice_date)
                )
                for order in nothing
            },
            self.env._(
                "Nothing to invoice yet on these subscriptions: the current period is already "
                "invoiced, or the subscription closes before the next one."
            ),
        )
        periods = {
            order.id: order._get_invoice_period() for order in subscriptions if order.invoice_due
        }
        subscriptions.browse(periods)._check_periods_not_billed(periods)
        # Sale prepares each order in its own environment (its customer's
        # language and company), which reads the lines' taxes and invoice
        # lines order by order: read them for the whole batch at once.
        subscriptions.order_line.fetch(["tax_ids", "invoice_lines"])
        moves = self.env["account.move"]
        if subscriptions:
            moves = super(SaleOrder, subscriptions)._create_invoices(
                grouped=True, final=final, date=date
            )
        if self.env.context.get("subscription_post_invoices"):
            self._subscription_post_invoices(moves)
        subscriptions.browse(periods)._subscription_periods_invoiced(moves, periods)
        if others:
            moves |= super(SaleOrder, others)._create_invoices(
                grouped=grouped, final=final, date=date
            )
        return moves

    def _prepare_invoice(self):
        """An invoice of a subscription belongs to it; the one that bills
        its due period carries that period. It is dated when it is issued
        (left empty here, as sale does: set when it is posted)."""
        values = super()._prepare_invoice()
        if self.is_subscription and self.subscription_state:
            values["subscription_id"] = self.id
            if self.invoice_due:
                period_start, period_end = self._get_invoice_period()
                values["subscription_period_start"] = period_start
                values["subscription_period_end"] = period_end
            if self.env.context.get("subscription_post_invoices"):
                # Issued now by the scheduled action, which posts it.
                values["invoice_date"] = self._subscription_today()
        return values

    def _check_periods_not_billed(self, periods):
        """Refuse to bill ``periods`` (``{order_id: (start, end)}``) that
        overlap a period already invoiced (an invoice not cancelled): the
        check the database makes too, with a message that names the invoice.
        Called under the subscriptions' lock."""
        if not periods:
            return
        billed = self.env["account.move"].search(
            [
                ("subscription_id", "in", list(periods)),
                ("move_type", "=", "out_invoice"),
                ("state", "!=", "cancel"),
                ("subscription_period_start", "!=", False),
                ("subscription_period_start", "<=", max(end for _start, end in periods.values())),
                ("subscription_period_end", ">=", min(start for start, _end in periods.values())),
            ]
        )
        refusals = {}
        for move in billed:
            start, end = periods[move.subscription_id.id]
            if move.subscription_period_start <= end and move.subscription_period_end >= start:
                refusals[move.subscription_id] = self.env._(
                    "%(period)s is already billed by %(invoice)s",
                    period=move.subscription_id._get_subscription_period_label(start, end),
                    invoice=move.name or move.display_name,
                )
        self._subscription_refuse(
            refusals,
            self.env._("A period is never invoiced twice. Nothing was invoiced because of:"),
        )

    def _subscription_periods_invoiced(self, moves, periods):
        """Move the next invoice date of the subscriptions of ``self`` past
        the period ``periods[order.id]`` their invoice among ``moves`` bills,
        with one chatter message each."""
        invoice_by_order = {
            move.subscription_id.id: move for move in moves if move.subscription_period_start
        }
        vals_by_id, body_by_id = {}, {}
        for order in self:
            period_start, period_end = periods[order.id]
            invoice = invoice_by_order.get(order.id)
            vals_by_id[order.id] = {
                "next_invoice_date": period_end + timedelta(days=1),
                "invoice_to_check": False,
            }
            body_by_id[order.id] = order._get_subscription_log_message(
                "invoiced", end_date=period_end, invoice=invoice, period=(period_start, period_end)
            )
        self._subscription_write(vals_by_id, body_by_id)

    def _create_recurring_invoices(self):
        """Invoice the due period of each subscription of ``self`` (the
        scheduled action's batch, locked by the caller) through sale's
        invoicing (:meth:`_create_invoices`); the invoices of the plans that
        say so are dated today, posted by the job's user and queued to be
        emailed. Returns the invoices."""
        if not self:
            return self.env["account.move"]
        posting = self.filtered(lambda order: order.plan_id.auto_post_invoices)
        if posting and not self._subscription_may_post():
            self._subscription_log_not_posted(posting)
            posting = self.browse()
        # Each invoice gets sale's message naming its order: the "Invoice
        # Created" message of each new invoice is not logged on top of it.
        moves = self.env["account.move"]
        for orders, post in ((posting, True), (self - posting, False)):
            if orders:
                moves |= orders.with_context(
                    subscription_post_invoices=post, mail_create_nolog=True
                )._create_invoices(grouped=True)
        to_mail = moves.filtered(
            lambda move: move.state == "posted" and move.subscription_id.plan_id.send_invoice_mail
        )
        if to_mail:
            to_mail.write({"subscription_mail_to_send": "invoice"})
            self.env.ref("subscription_close.ir_cron_send_subscription_mails")._trigger()
        return moves

    def _subscription_post_invoices(self, moves):
        """Post ``moves``, as the current user (the job's), never in sudo:
        sale creates invoices in sudo for salespeople, who may not post
        journal entries. They are dated today (see :meth:`_prepare_invoice`)."""
        moves.with_env(self.env).action_post()

    def _subscription_may_post(self):
        """Whether the current user (the scheduled action's) may post
        invoices: only users with billing rights post journal entries."""
        return self.env.su or self.env.user.has_group("account.group_account_invoice")

    def _subscription_log_not_posted(self, orders):
        _logger.info(
            "Recurring invoices of %s left in draft: %s may not post invoices.",
            orders.ids,
            self.env.user.login,
        )
        for order in orders:
            order.message_post(
                body=self.env._(
                    "The invoice of this period is left in draft: %(user)s, who runs the "
                    "invoicing, may not post invoices.",
                    user=self.env.user.name,
                ),
                subtype_xmlid="mail.mt_note",
            )

    def _create_recurring_invoices_safely(self):
        """:meth:`_create_recurring_invoices` that does not let one
        subscription stop the others: the batch runs in a savepoint; if it
        fails, each subscription is retried alone, and those that still fail
        are logged (:meth:`_subscription_invoicing_failed`). Returns the
        invoices and the subscriptions that failed."""
        try:
            with self.env.cr.savepoint():
                return self._create_recurring_invoices(), self.browse()
        except (UserError, ValidationError, IntegrityError) as error:
            if len(self) == 1:
                self._subscription_invoicing_failed(error)
                return self.env["account.move"], self
        moves, failed = self.env["account.move"], self.browse()
        for order in self:
            order_moves, order_failed = order._create_recurring_invoices_safely()
            moves |= order_moves
            failed |= order_failed
        return moves, failed

    def _subscription_invoicing_failed(self, error):
        """Log why the subscription ``self`` could not be invoiced, mark it to
        check, and give its salesperson an activity (one at a time)."""
        self.ensure_one()
        if isinstance(error, IntegrityError):
            # e.g. a product without income account: the database refuses the
            # invoice line.
            message = self.env._(
                "the invoice could not be saved (%(detail)s). Check the income accounts of "
                "the products and the sales journal.",
                detail=(error.diag.message_primary or str(error)).strip(),
            )
        else:
            message = error.args[0] if error.args else str(error)
        # The period stays due (to invoice for sale) until it is invoiced.
        self.write({"invoice_to_check": True, "invoice_due": self._is_invoice_due()})
        self.message_post(
            body=self.env._(
                "The period starting on %(date)s could not be invoiced: %(error)s "
                "The invoicing will try again at its next run.",
                date=format_date(self.env, self.next_invoice_date),
                error=message,
            ),
            subtype_xmlid="mail.mt_note",
        )
        activity_type = self.env.ref("mail.mail_activity_data_todo")
        if not self.activity_ids.filtered(
            lambda activity: (
                activity.activity_type_id == activity_type
                and activity.summary == self._get_invoicing_activity_summary()
            )
        ):
            self.activity_schedule(
                activity_type_id=activity_type.id,
                summary=self._get_invoicing_activity_summary(),
                note=message,
                user_id=self.user_id.id or self.env.user.id,
            )
        _logger.info("Subscription %s could not be invoiced: %s", self.name, message)

    def _get_invoicing_activity_summary(self):
        return self.env._("Recurring invoice failed")

    @api.model
    def _get_invoice_due_domain(self):
        return (
            Domain("subscription_state", "=", "3_progress")
            & Domain("plan_id", "!=", False)
            & self._subscription_date_domain("next_invoice_date", "<=")
        )

    @api.model
    def _cron_open_due_periods(self, batch_size=INVOICE_BATCH_SIZE * 10):
        """Mark due the periods that have begun (their first day has come in
        the company's time zone): from then on sale shows the subscription
        under *Orders to Invoice* with its recurring lines to invoice, until
        the invoicing bills them. Runs every hour: cheap (one write per
        batch), so that the figures turn on the period's first day, not at
        the daily invoicing (:meth:`_subscription_run_job`)."""

        def open_periods(orders):
            opened = orders._subscription_open_due_periods()
            # Those closing before their next period have nothing due.
            return len(opened), orders - opened

        self._subscription_run_job(
            self._get_invoice_due_domain() & Domain("invoice_due", "=", False),
            open_periods,
            batch_size,
            "subscription_close.ir_cron_open_due_periods",
        )

    @api.model
    def _cron_create_recurring_invoices(self, batch_size=INVOICE_BATCH_SIZE):
        """Invoice every subscription whose next invoice date has come, in
        batches (:meth:`_subscription_run_job`): two workers never invoice
        the same period, and running the job twice invoices nothing more (the
        next invoice date moves in the same transaction). A subscription that
        cannot be invoiced is logged and left to the next run; one that
        missed several periods gets one invoice per period. One process
        invoices at a time (:meth:`_subscription_job_mutex`): another run
        meanwhile looks again a minute later."""
        cron_xmlid = "subscription_close.ir_cron_create_recurring_invoices"
        with self._subscription_job_mutex("recurring_invoicing") as holder:
            if not holder:
                # Another process is invoicing: it goes on until nothing is
                # due; this run looks again a minute later.
                _logger.info("Recurring invoicing already running in another process.")
                self._subscription_retry_later(cron_xmlid)
                return
            # A fresh snapshot, taken once the job is ours.
            self.env["ir.cron"]._commit_progress(0)
            self._subscription_run_job(
                self._get_invoice_due_domain(),
                lambda orders: orders._create_recurring_invoices_batch(),
                batch_size,
                cron_xmlid,
            )
        # The saved cards are charged for the invoices just posted.
        self.env.ref("subscription_close.ir_cron_charge_subscriptions")._trigger()

    def _create_recurring_invoices_batch(self):
        """Invoice the subscriptions of ``self`` (a locked batch of the
        scheduled action) whose period is due; one that fails does not stop
        the others. Returns how many were invoiced and those to leave for the
        next run (not due after all, or failed)."""
        today_by_id = self._get_subscription_today()
        not_due = self.filtered(lambda order: not order._is_invoice_due(today_by_id[order.id]))
        _moves, failed = (self - not_due)._create_recurring_invoices_safely()
        return len(self) - len(not_due) - len(failed), not_due | failed

    # ------------------------------------------------------------------
    # Closing and billing together
    # ------------------------------------------------------------------

    def _create_close_credit_notes(self, unused_starts):
        """The subscriptions of ``self`` closed now whose plan says so get a
        draft credit note for the days they do not use
        (:meth:`_create_prorated_credit_notes`), unless the context says
        ``subscription_close_credit_notes=False`` (a withdrawal credits its
        own way). Called by :meth:`_action_close`."""
        # Big selections left the cache by chunks: only the fields used here
        # are read again.
        if self.env.context.get("subscription_close_credit_notes") is False:
            return
        orders = self._subscription_prefetch(["plan_id"])
        prorated = orders.filtered(lambda order: order.plan_id.close_refund == "prorated")
        if prorated:
            prorated.with_env(self.env)._create_prorated_credit_notes(unused_starts)

    def _cancel_draft_credit_notes(self):
        """Cancel the draft prorated credit notes of the subscriptions of
        ``self`` (reopened: the days they credit are used after all) and
        return them. Posted ones are left to the accountant."""
        credit_notes = self.env["account.move"].search(
            [
                ("subscription_id", "in", self.ids),
                ("move_type", "=", "out_refund"),
                ("state", "=", "draft"),
                ("reversed_entry_id", "!=", False),
            ]
        )
        if credit_notes:
            credit_notes.button_cancel()
        return credit_notes

    def _get_unused_start_dates(self, end_dates):
        """``{order_id: date}``: the first day the subscriptions of ``self``
        do not use when they end on ``end_dates`` (``{order_id: date}``):
        the day after their end date, or the first day of their pause (a
        paused subscription has not been used since)."""
        starts = {}
        for order in self:
            if end_dates.get(order.id):
                starts[order.id] = end_dates[order.id] + timedelta(days=1)
                if order.pause_start_date:
                    starts[order.id] = min(starts[order.id], order.pause_start_date)
        return starts

    def _create_prorated_credit_notes(self, unused_starts=None):
        """A draft credit note, per subscription of ``self`` (closed), for the
        days of the last period invoiced from its first unused day
        (``unused_starts``, ``{order_id: date}``; by default the day after its
        end date), at the prices of that invoice; linked in the chatter.
        Returns the credit notes."""
        unused_starts = unused_starts or {}
        vals_list, notes = [], {}
        for order in self:
            unused_start = unused_starts.get(order.id) or order.end_date + timedelta(days=1)
            invoice = order.subscription_invoice_ids.filtered(
                lambda move, start=unused_start: (
                    move.move_type == "out_invoice"
                    and move.state == "posted"
                    and move.subscription_period_end
                    and move.subscription_period_end >= start
                    and move.subscription_period_start <= start
                )
            ).sorted("subscription_period_start")[-1:]
            if not invoice:
                continue
            period_days = (invoice.subscription_period_end - invoice.subscription_period_start).days
            unused_days = (invoice.subscription_period_end - unused_start).days + 1
            ratio = unused_days / (period_days + 1)
            lang_order = order.with_context(lang=order.partner_invoice_id.lang or self.env.lang)
            label = lang_order._get_subscription_period_label(
                unused_start, invoice.subscription_period_end
            )
            lines = []
            for line in invoice.invoice_line_ids.filtered(lambda l: l.display_type == "product"):
                lines.append(
                    Command.create(
                        {
                            "product_id": line.product_id.id,
                            "name": lang_order.env._(
                                "%(line)s\nUnused days: %(period)s",
                                line=line.name.split("\n")[0],
                                period=label,
                            ),
                            "quantity": line.quantity,
                            "price_unit": line.currency_id.round(line.price_unit * ratio),
                            "discount": line.discount,
                            "tax_ids": [Command.set(line.tax_ids.ids)],
                            "account_id": line.account_id.id,
                            "product_uom_id": line.product_uom_id.id,
                            "analytic_distribution": line.analytic_distribution,
                            "sale_line_ids": [Command.set(line.sale_line_ids.ids)],
                        }
                    )
                )
            vals_list.append(
                {
                    "move_type": "out_refund",
                    "partner_id": invoice.partner_id.id,
                    "currency_id": invoice.currency_id.id,
                    "company_id": invoice.company_id.id,
                    "journal_id": invoice.journal_id.id,
                    "fiscal_position_id": invoice.fiscal_position_id.id,
                    "invoice_origin": order.name,
                    "ref": self.env._("Unused days of %(invoice)s", invoice=invoice.name),
                    "reversed_entry_id": invoice.id,
                    "subscription_id": order.id,
                    "subscription_period_start": unused_start,
                    "subscription_period_end": invoice.subscription_period_end,
                    "invoice_user_id": order.user_id.id,
                    "invoice_line_ids": lines,
                }
            )
            notes[order.id] = (unused_start, invoice.subscription_period_end)
        credit_notes = (
            self.env["account.move"]
            .sudo()
            .with_context(default_move_type="out_refund")
            .create(vals_list)
        )
        self.browse(list(notes))._message_log_batch(
            bodies={
                move.subscription_id.id: self.env._(
                    "Draft credit note %(credit_note)s for the unused days (%(period)s).",
                    credit_note=move._get_html_link(
                        title=self.env._("for %(invoice)s", invoice=move.reversed_entry_id.name)
                    ),
                    period=move.subscription_id._get_subscription_period_label(
                        *notes[move.subscription_id.id]
                    ),
                )
                for move in credit_notes
            }
        )
        return credit_notes

    # ------------------------------------------------------------------
    # Unpaid invoices
    # ------------------------------------------------------------------

    def _get_overdue_invoices(self, days=0, today=None):
        """The posted invoices of the subscription ``self`` not fully paid
        ``days`` days after their due date, oldest first."""
        self.ensure_one()
        today = today or self._subscription_today()
        limit = today - timedelta(days=days)
        return self.subscription_invoice_ids.filtered(
            lambda move: (
                move.move_type == "out_invoice"
                and move.state == "posted"
                and move.payment_state in ("not_paid", "partial")
                and move.invoice_date_due
                and move.invoice_date_due < limit
            )
        ).sorted("invoice_date_due")

    def _close_unpaid(self):
        """Close the subscriptions of ``self`` whose plan has an Automatic
        Closing delay and that have an invoice still unpaid that many days
        after its due date, with the protected "Unpaid invoice" reason.
        Returns the subscriptions closed."""
        reason = self.env.ref("subscription_close.close_reason_unpaid")
        today_by_id = self._get_subscription_today()
        unpaid = self.filtered(
            lambda order: (
                order.subscription_state == "3_progress"
                and order.plan_id.auto_close_days
                # A subscription paid by card: its retries and grace period decide.
                and not (order.payment_token_id and order.plan_id.charge_saved_card)
                and order._get_overdue_invoices(
                    order.plan_id.auto_close_days, today_by_id[order.id]
                )
            )
        )
        unpaid._action_close(reason, {order.id: today_by_id[order.id] for order in unpaid})
        return unpaid

    @api.model
    def _get_overdue_invoice_domain(self):
        """The posted customer invoices of subscriptions in progress not fully
        paid after their due date (today of each invoice's company)."""
        return (
            Domain("subscription_id.subscription_state", "=", "3_progress")
            & Domain("move_type", "=", "out_invoice")
            & Domain("state", "=", "posted")
            & Domain("payment_state", "in", ("not_paid", "partial"))
            & self.env["account.move"]._subscription_date_domain("invoice_date_due", "<")
        )

    @api.model
    def _cron_close_unpaid(self, batch_size=INVOICE_BATCH_SIZE):
        """Queue the overdue reminders of the plans that send them, then
        close the subscriptions left unpaid too long (:meth:`_close_unpaid`),
        in batches (:meth:`_subscription_run_job`). Invoices are never
        changed."""
        self._subscription_queue_overdue_reminders()
        # The reminders are kept if a batch below must start again.
        self.env["ir.cron"]._commit_progress(0)

        def close(orders):
            closed = orders._close_unpaid()
            return len(closed), orders - closed  # not overdue long enough yet

        self._subscription_run_job(
            Domain("subscription_state", "=", "3_progress")
            & Domain("plan_id.auto_close_days", ">", 0)
            & Domain("subscription_invoice_ids", "any", self._get_overdue_invoice_domain()),
            close,
            batch_size,
            "subscription_close.ir_cron_close_unpaid",
        )

    @api.model
    def _subscription_queue_overdue_reminders(self):
        """Queue one reminder per overdue invoice of subscriptions whose plan
        sends them."""
        overdue = self.env["account.move"].search(
            self._get_overdue_invoice_domain()
            & Domain("subscription_id.plan_id.send_overdue_reminder", "=", True)
            & Domain("subscription_reminder_sent", "=", False)
            & Domain("subscription_mail_to_send", "=", False)
        )
        if overdue:
            overdue.write(
                {"subscription_mail_to_send": "overdue", "subscription_reminder_sent": True}
            )
            self.env.ref("subscription_close.ir_cron_send_subscription_mails")._trigger()
