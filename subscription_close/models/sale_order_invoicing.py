import logging
from collections import defaultdict
from datetime import timedelta

from markupsafe import Markup
from psycopg2 import IntegrityError
from psycopg2.errors import DeadlockDetected, LockNotAvailable, SerializationFailure

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.fields import Command, Domain
from odoo.tools import format_date, split_every

_logger = logging.getLogger(__name__)

# Subscriptions invoiced per batch (one transaction each in the scheduled
# action): an invoice costs far more than a closing, so batches are smaller.
INVOICE_BATCH_SIZE = 100
# A batch that conflicts with another worker's transaction is done again on
# a fresh snapshot this many times (as Odoo retries a request), then left to
# the next run a minute later.
BATCH_CONFLICT_TRIES = 5
CONCURRENCY_ERRORS = (SerializationFailure, DeadlockDetected, LockNotAvailable)
# Date format of the period on invoice lines ("1 Dec 2026 – 31 Dec 2026").
PERIOD_DATE_FORMAT = "d MMM y"


class SaleOrder(models.Model):
    """Recurring invoicing of subscriptions, and closing what is not paid.

    Each period of an In Progress subscription is invoiced once, from its
    recurring lines, by :meth:`_create_recurring_invoices` (the daily
    scheduled action and the order's Create Invoice button both end there),
    which then moves the next invoice date one billing period forward. A
    subscription whose invoice stays unpaid too long is closed by
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
    invoice_to_check = fields.Boolean(
        string="Invoicing to Check",
        readonly=True,
        copy=False,
        help="The last attempt to invoice this subscription failed (see its chatter): fix the "
        "cause, the next run of the invoicing retries it.",
    )
    next_invoice_amount = fields.Monetary(
        compute="_compute_next_invoice_amount",
        currency_field="currency_id",
        help="Total of the recurring lines, taxes included: what the next invoice bills.",
    )
    company_currency_id = fields.Many2one(
        related="company_id.currency_id",
        string="Company Currency",
    )
    churn_type = fields.Selection(
        [("voluntary", "Voluntary"), ("involuntary", "Involuntary")],
        compute="_compute_churn_type",
        store=True,
        help="Voluntary: closed by the customer or a salesperson with one of the close "
        "reasons. Involuntary: closed by the system (end date reached, invoice unpaid, "
        "closed by the company).",
    )
    churned_mrr = fields.Monetary(
        string="Lost MRR",
        compute="_compute_churned_mrr",
        store=True,
        currency_field="company_currency_id",
        help="Monthly recurring revenue lost with the closing, in the company currency, as it "
        "was when the subscription closed.",
    )

    @api.depends("order_line.price_total", "order_line.product_id.recurring_invoice")
    def _compute_next_invoice_amount(self):
        for order in self:
            order.next_invoice_amount = sum(order._get_recurring_lines().mapped("price_total"))

    @api.depends("subscription_state", "close_reason_id.is_protected")
    def _compute_churn_type(self):
        for order in self:
            if order.subscription_state != "6_churn":
                order.churn_type = False
            elif order.close_reason_id.is_protected:
                order.churn_type = "involuntary"
            else:
                order.churn_type = "voluntary"

    @api.depends("subscription_state")
    def _compute_churned_mrr(self):
        # Only the status triggers it: the figure is frozen at the closing and
        # does not follow later changes of the lines or of the rates.
        rates = {}
        for order in self:
            if order.subscription_state != "6_churn":
                order.churned_mrr = 0.0
                continue
            company = order.company_id
            day = order.end_date or fields.Date.context_today(order)
            key = (order.currency_id, company, day)
            if key not in rates:
                rates[key] = self.env["res.currency"]._get_conversion_rate(
                    order.currency_id, company.currency_id, company, day
                )
            order.churned_mrr = company.currency_id.round(order.recurring_monthly * rates[key])

    @api.depends(
        "is_subscription",
        "order_line.price_subtotal",
        "order_line.product_id.recurring_invoice",
        "plan_id.billing_period_value",
        "plan_id.billing_period_unit",
    )
    def _compute_recurring_monthly(self):
        months_per_unit = {"week": 12 / 52, "month": 1, "year": 12}
        for order in self:
            plan = order.plan_id
            if order.is_subscription and plan:
                months = plan.billing_period_value * months_per_unit[plan.billing_period_unit]
                amount = sum(order._get_recurring_lines().mapped("price_subtotal"))
                order.recurring_monthly = amount / months
            else:
                order.recurring_monthly = 0.0

    # ------------------------------------------------------------------
    # Periods
    # ------------------------------------------------------------------

    def _get_recurring_lines(self):
        """The lines billed every period: subscription products."""
        self.ensure_one()
        return self.order_line.filtered(
            lambda line: not line.display_type and line.product_id.recurring_invoice
        )

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
        return bool(
            self.subscription_state == "3_progress"
            and self.plan_id
            and self.next_invoice_date
            and self.next_invoice_date <= today
            and (not self.end_date or self.next_invoice_date <= self.end_date)
        )

    # ------------------------------------------------------------------
    # Invoicing
    # ------------------------------------------------------------------

    def _create_invoices(self, grouped=False, final=False, date=None):
        """The order's Create Invoice on a subscription invoices its current
        period (through :meth:`_create_recurring_invoices`), never the whole
        order again; other orders are invoiced as usual."""
        subscriptions = self.filtered(
            lambda order: order.is_subscription and order.subscription_state
        )
        not_running = subscriptions.filtered(lambda order: order.subscription_state != "3_progress")
        if not_running:
            raise UserError(
                self.env._(
                    "Only subscriptions in progress are invoiced: %(orders)s",
                    orders=", ".join(not_running[:20].mapped("display_name")),
                )
            )
        moves = self.env["account.move"]
        if subscriptions:
            today_by_id = subscriptions._get_subscription_today()
            not_due = subscriptions.filtered(
                lambda order, today_by_id=today_by_id: (
                    not order._is_invoice_due(today_by_id[order.id])
                )
            )
            if not_due:
                raise UserError(
                    self.env._(
                        "Nothing to invoice yet on these subscriptions: the current period is "
                        "already invoiced, or the subscription closes before the next one.\n"
                        "%(orders)s",
                        orders="\n".join(
                            self.env._(
                                "- %(order)s: next invoice on %(date)s",
                                order=order.display_name,
                                date=format_date(self.env, order.next_invoice_date),
                            )
                            for order in not_due[:20]
                        ),
                    )
                )
            subscriptions.lock_for_update(allow_referencing=True)
            moves = subscriptions._create_recurring_invoices()
        others = self - subscriptions
        if others:
            moves |= super(SaleOrder, others)._create_invoices(
                grouped=grouped, final=final, date=date
            )
        return moves

    def _prepare_subscription_invoice(self, period_start, period_end):
        """Values of the invoice of the period ``period_start`` -
        ``period_end`` of the subscription ``self``, dated from the first day
        of the period (invoiced in advance): its recurring lines at the
        order's prices and taxes, each labelled with the period, and the
        one-off lines not invoiced yet (e.g. a setup fee, on the first
        invoice)."""
        self.ensure_one()
        order = self.with_company(self.company_id)
        if order.partner_invoice_id.lang:
            order = order.with_context(lang=order.partner_invoice_id.lang)
        values = order._prepare_invoice()
        label = order._get_subscription_period_label(period_start, period_end)
        lines = []
        for sequence, line in enumerate(order.order_line.sorted("sequence"), start=1):
            if line.display_type:
                continue
            if line.product_id.recurring_invoice:
                lines.append(
                    line._prepare_invoice_line(
                        sequence=sequence,
                        quantity=line.product_uom_qty,
                        name=f"{line.name}\n{label}",
                    )
                )
            elif line.qty_to_invoice > 0:
                lines.append(line._prepare_invoice_line(sequence=sequence))
        values.update(
            {
                "invoice_date": period_start,
                "subscription_id": self.id,
                "subscription_period_start": period_start,
                "subscription_period_end": period_end,
                "invoice_line_ids": [Command.create(line) for line in lines],
            }
        )
        return values

    def _create_recurring_invoices(self):
        """Invoice the period starting on the next invoice date of each
        subscription of ``self`` and move that date one billing period
        forward: one invoice per subscription and period, created in one
        ``create``, posted in one ``action_post`` where the plan says so, and
        one chatter message per subscription. The caller checks the
        subscriptions are due and holds their lock. Returns the invoices."""
        if not self:
            return self.env["account.move"]
        vals_list, next_dates, periods = [], {}, {}
        for order in self:
            period_start = order.next_invoice_date
            next_start = order._get_next_period_start(period_start)
            period_end = next_start - timedelta(days=1)
            periods[order.id] = (period_start, period_end)
            next_dates[order.id] = next_start
            vals = order._prepare_subscription_invoice(period_start, period_end)
            if vals["invoice_line_ids"]:
                vals_list.append(vals)
        # The unique index on the periods must see the invoices cancelled
        # earlier in the transaction; as Odoo's sale does, a salesperson
        # invoices without invoicing rights.
        self.env["account.move"].flush_model(["state"])
        moves = (
            self.env["account.move"]
            .sudo()
            .with_context(default_move_type="out_invoice")
            .create(vals_list)
        )
        to_post = moves.filtered(lambda move: move.subscription_id.plan_id.auto_post_invoices)
        if to_post:
            to_post.action_post()
            to_mail = to_post.filtered(lambda move: move.subscription_id.plan_id.send_invoice_mail)
            if to_mail:
                to_mail.write({"subscription_mail_to_send": "invoice"})
                self.env.ref("subscription_close.ir_cron_send_subscription_mails")._trigger()
        invoice_by_order = {move.subscription_id.id: move for move in moves}
        moves._message_log_batch(
            bodies={
                move.id: self.env._(
                    "Period %(period)s of the subscription %(subscription)s.",
                    period=move.subscription_id._get_subscription_period_label(
                        move.subscription_period_start, move.subscription_period_end
                    ),
                    subscription=move.subscription_id._get_html_link(),
                )
                for move in moves
            }
        )
        body_by_id = {}
        for order in self:
            invoice = invoice_by_order.get(order.id)
            label = order._get_subscription_period_label(*periods[order.id])
            body_by_id[order.id] = (
                self.env._(
                    "Period %(period)s invoiced: %(invoice)s",
                    period=label,
                    invoice=invoice._get_html_link(),
                )
                if invoice
                else self.env._("Period %(period)s: nothing to invoice.", period=label)
            )
        self._subscription_write(
            {
                order.id: {"next_invoice_date": next_dates[order.id], "invoice_to_check": False}
                for order in self
            },
            body_by_id,
        )
        return moves

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
        self.write({"invoice_to_check": True})
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
    def _cron_create_recurring_invoices(self, batch_size=INVOICE_BATCH_SIZE):
        """Invoice every subscription whose next invoice date has come.

        Batches of ``batch_size`` subscriptions locked with SKIP LOCKED, each
        invoiced and committed with the cron progress: two workers never
        invoice the same period, and running the job twice invoices nothing
        more (the next invoice date moves in the same transaction). A
        subscription that cannot be invoiced is logged and skipped until the
        next run; one that missed several periods gets one invoice per period.
        One process invoices at a time (:meth:`_subscription_job_mutex`):
        another run meanwhile looks again a minute later. A batch in
        conflict with another transaction is rolled back and done again
        (:data:`BATCH_CONFLICT_TRIES` times, then a minute later).
        """
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
            self._create_recurring_invoices_batches(batch_size, cron_xmlid)

    @api.model
    def _create_recurring_invoices_batches(self, batch_size, cron_xmlid):
        """The batches of :meth:`_cron_create_recurring_invoices`."""
        domain = self._get_invoice_due_domain()
        skipped = []
        conflicts = 0
        while True:
            try:
                processed, batch_skipped = self._create_recurring_invoices_batch(
                    domain & Domain("id", "not in", skipped), batch_size, cron_xmlid
                )
            except CONCURRENCY_ERRORS as error:
                # Another transaction committed a change to a record this
                # batch writes too (e.g. a user posting an invoice of the
                # same customer): the batch is rolled back and done again.
                self.env.cr.rollback()
                self.env.invalidate_all()
                conflicts += 1
                _logger.info("Recurring invoicing batch in conflict, done again: %s", error)
                if conflicts >= BATCH_CONFLICT_TRIES:
                    self._subscription_retry_later(cron_xmlid)
                    break
                continue
            if processed is None:
                break
            skipped += batch_skipped
            remaining = self.search_count(domain & Domain("id", "not in", skipped))
            time_left = self.env["ir.cron"]._commit_progress(processed, remaining=remaining)
            if not remaining or not time_left:
                break

    @api.model
    def _create_recurring_invoices_batch(self, domain, batch_size, cron_xmlid):
        """Lock up to ``batch_size`` subscriptions of ``domain`` and invoice
        those that are due, flushed (a conflict with another transaction
        raises here, not at commit). Returns how many were invoiced (None
        when none was left to lock) and the ids to skip until the next run
        (not due, or failed)."""
        orders = self._subscription_lock(domain, batch_size, retry_cron=cron_xmlid)
        if not orders:
            return None, []
        today_by_id = orders._get_subscription_today()
        not_due = orders.filtered(
            lambda order, today_by_id=today_by_id: not order._is_invoice_due(today_by_id[order.id])
        )
        _moves, failed = (orders - not_due)._create_recurring_invoices_safely()
        # Memory stays bounded by a batch: invoices, their lines and
        # everything they computed leave the cache once written.
        self.env.flush_all()
        self.env.invalidate_all()
        return len(orders) - len(not_due) - len(failed), not_due.ids + failed.ids

    # ------------------------------------------------------------------
    # Closing and billing together
    # ------------------------------------------------------------------

    def _subscription_refresh_qty_to_invoice(self):
        """Recompute the quantity to invoice of the recurring lines of the
        subscriptions of ``self`` whose due state no longer matches it (e.g.
        closed while a period was due, reopened on a due date)."""
        today_by_id = self._get_subscription_today()
        # By chunks, each released from the cache with its lines: memory
        # stays bounded by a chunk, whatever the selection.
        for chunk in self._subscription_chunks():
            lines = self.env["sale.order.line"]
            for order in chunk:
                due = order.state == "sale" and order._is_invoice_due(today_by_id[order.id])
                for line in order._get_recurring_lines():
                    if line.qty_to_invoice != (line.product_uom_qty if due else 0.0):
                        lines |= line
            if lines:
                self.env.add_to_compute(lines._fields["qty_to_invoice"], lines)
                lines.modified(["qty_to_invoice"])  # and their invoice status
            if len(self) > len(chunk):
                self.env.flush_all()
                chunk.order_line.invalidate_recordset()

    def _action_cancel_close(self, author=None):
        res = super()._action_cancel_close(author=author)
        self._subscription_refresh_qty_to_invoice()
        return res

    def _action_close(self, reason, end_dates, author=None, retention_shown=False):
        """Closing now a subscription whose plan says so prepares a draft
        credit note for the unused days of the period already invoiced."""
        # Known before the closing changes the orders (e.g. ends their pause).
        unused_starts = self._get_unused_start_dates(end_dates)
        res = super()._action_close(
            reason, end_dates, author=author, retention_shown=retention_shown
        )
        self._subscription_refresh_qty_to_invoice()
        # Big selections left the cache by chunks: only the fields used here
        # are read again.
        orders = self._subscription_prefetch(["plan_id", "subscription_state", "company_id"])
        closed_now = orders.filtered(
            lambda order: (
                order.plan_id.close_refund == "prorated"
                and order.subscription_state == "6_churn"
                and end_dates[order.id] == order._subscription_today()
            )
        )
        if closed_now:
            closed_now.with_env(self.env)._create_prorated_credit_notes(unused_starts)
        return res

    def _get_unused_start_dates(self, end_dates):
        """``{order_id: date}``: the first day the subscriptions of ``self``
        do not use when they end on ``end_dates`` (``{order_id: date}``):
        the day after their end date."""
        return {
            order.id: end_dates[order.id] + timedelta(days=1)
            for order in self
            if end_dates.get(order.id)
        }

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

    def _action_reopen(self, author=None, invoice_gap=False):
        """Reopening resumes the invoicing from the day of the reopening:
        the periods while the subscription was closed are not invoiced,
        unless ``invoice_gap`` (then the next invoice date stays, and the
        invoicing catches up one invoice per missed period)."""
        res = super()._action_reopen(author=author)
        if not invoice_gap:
            today_by_id = self._get_subscription_today()
            late = self.filtered(
                lambda order: (
                    order.next_invoice_date and order.next_invoice_date < today_by_id[order.id]
                )
            )
            for today in {today_by_id[order.id] for order in late}:
                late.filtered(lambda order, day=today: today_by_id[order.id] == day).write(
                    {"next_invoice_date": today}
                )
        self._subscription_refresh_qty_to_invoice()
        return res

    def _get_subscription_log_message(
        self, event, author=None, reason=None, end_date=None, retention_shown=False, note=None
    ):
        body = super()._get_subscription_log_message(
            event,
            author=author,
            reason=reason,
            end_date=end_date,
            retention_shown=retention_shown,
            note=note,
        )
        unpaid_reason_id = self.env["ir.model.data"]._xmlid_to_res_id(
            "subscription_close.close_reason_unpaid", raise_if_not_found=False
        )
        if event in ("closed", "expired") and reason and reason.id == unpaid_reason_id:
            invoice = self._get_overdue_invoices()[:1]
            if invoice:
                body = self.env._(
                    "Subscription closed: the invoice %(invoice)s, due on %(date)s, is still "
                    "unpaid. Close Reason: %(reason)s",
                    invoice=invoice.name,
                    date=format_date(self.env, invoice.invoice_date_due),
                    reason=reason.name,
                )
        return body

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
                and order._get_overdue_invoices(
                    order.plan_id.auto_close_days, today_by_id[order.id]
                )
            )
        )
        unpaid._action_close(reason, {order.id: today_by_id[order.id] for order in unpaid})
        return unpaid

    @api.model
    def _cron_close_unpaid(self, batch_size=INVOICE_BATCH_SIZE):
        """Queue the overdue reminders of the plans that send them, then
        close the subscriptions left unpaid too long (:meth:`_close_unpaid`),
        in batches locked with SKIP LOCKED and committed with the cron
        progress. Invoices are never changed."""
        self._subscription_queue_overdue_reminders()
        # The reminders are kept if a batch below must start again.
        self.env["ir.cron"]._commit_progress(0)
        candidates = self.env["account.move"]._read_group(
            [
                ("subscription_id.subscription_state", "=", "3_progress"),
                ("subscription_id.plan_id.auto_close_days", ">", 0),
                ("move_type", "=", "out_invoice"),
                ("state", "=", "posted"),
                ("payment_state", "in", ("not_paid", "partial")),
                ("invoice_date_due", "<", fields.Date.today()),
            ],
            ["subscription_id"],
        )
        order_ids = [order.id for (order,) in candidates]
        for batch_ids in split_every(batch_size, order_ids):
            # Locked as every job's batch: what another transaction holds or
            # changes meanwhile is left to a run a minute later.
            orders = self._subscription_lock(
                Domain("id", "in", batch_ids) & Domain("subscription_state", "=", "3_progress"),
                batch_size,
                retry_cron="subscription_close.ir_cron_close_unpaid",
            )
            closed = orders._close_unpaid()
            orders._subscription_release_cache()
            self.env["ir.cron"]._commit_progress(len(closed))

    @api.model
    def _subscription_queue_overdue_reminders(self):
        """Queue one reminder per overdue invoice of subscriptions whose plan
        sends them."""
        overdue = self.env["account.move"].search(
            [
                ("subscription_id.subscription_state", "=", "3_progress"),
                ("subscription_id.plan_id.send_overdue_reminder", "=", True),
                ("move_type", "=", "out_invoice"),
                ("state", "=", "posted"),
                ("payment_state", "in", ("not_paid", "partial")),
                ("invoice_date_due", "<", fields.Date.today()),
                ("subscription_reminder_sent", "=", False),
                ("subscription_mail_to_send", "=", False),
            ]
        )
        if overdue:
            overdue.write(
                {"subscription_mail_to_send": "overdue", "subscription_reminder_sent": True}
            )
            self.env.ref("subscription_close.ir_cron_send_subscription_mails")._trigger()


class SaleOrderLine(models.Model):
    _inherit = "sale.order.line"

    @api.depends("order_id.next_invoice_date")
    def _compute_qty_to_invoice(self):
        """The recurring lines of a subscription are to invoice while its
        current period is not invoiced (and never once it is closed).

        It is recomputed when the next invoice date moves; the closing
        methods refresh the few lines whose subscription changed from due to
        not due or back (:meth:`SaleOrder._subscription_refresh_qty_to_invoice`),
        so that closing thousands of subscriptions whose period is invoiced
        does not recompute the invoice status of every order."""
        res = super()._compute_qty_to_invoice()
        due_by_order = defaultdict(bool)
        for line in self:
            order = line.order_id
            if not (order.is_subscription and line.product_id.recurring_invoice):
                continue
            if order.id not in due_by_order:
                due_by_order[order.id] = line.state == "sale" and order._is_invoice_due()
            line.qty_to_invoice = line.product_uom_qty if due_by_order[order.id] else 0.0
        return res


class AccountMoveSubscription(models.Model):
    _inherit = "account.move"  # pylint: disable=consider-merging-classes-inherited

    @api.model
    def _cron_send_subscription_mails(self, batch_size=50):
        """Send the queued emails of subscription invoices (the invoice, or a
        reminder once it is overdue), in batches committed with the cron
        progress."""
        templates = {
            "invoice": self.env.ref("subscription_close.mail_template_subscription_invoice"),
            "overdue": self.env.ref("subscription_close.mail_template_subscription_overdue"),
        }
        domain = [("subscription_mail_to_send", "!=", False)]
        while True:
            moves = self.search(domain, limit=batch_size, order="id").try_lock_for_update(
                allow_referencing=True
            )
            if not moves:
                break
            for move in moves:
                move.message_post_with_source(
                    templates[move.subscription_mail_to_send],
                    subtype_xmlid="mail.mt_comment",
                    email_layout_xmlid="mail.mail_notification_light",
                )
            moves.write({"subscription_mail_to_send": False})
            remaining = self.search_count(domain) if len(moves) == batch_size else 0
            time_left = self.env["ir.cron"]._commit_progress(len(moves), remaining=remaining)
            if not remaining or not time_left:
                break

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
