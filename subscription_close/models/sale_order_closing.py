import zlib
from collections import defaultdict
from contextlib import contextmanager
from datetime import timedelta

from dateutil.relativedelta import relativedelta
from markupsafe import escape
from psycopg2.errors import SerializationFailure

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.fields import Domain
from odoo.tools import SQL, format_date, split_every
from odoo.tools.mail import generate_tracking_message_id

# Orders handled per chunk: memory is bounded by one chunk, and each chunk
# costs a number of queries that only the ORM's batching (100 rows per query)
# makes grow.
CLOSE_CHUNK_SIZE = 1000
# Orders named in a refusal message; the others are counted.
REFUSALS_SHOWN = 20
# Closure emails posted per batch of their scheduled action. Odoo runs a
# job's method at least ten times in a row while it reports work left, each
# run doing at least one batch, all within the cron's time limit (120 s by
# default): a batch must stay short, and posting an email costs about 0.1 s.
CLOSE_MAIL_BATCH_SIZE = 20
# Orders that another transaction holds are tried again this much later.
LOCKED_RETRY_DELAY = relativedelta(minutes=1)


class SaleOrder(models.Model):
    """Closing subscriptions: close now or at a date, reopen, cancel a
    scheduled closing, and the scheduled actions that finish the closings.

    Every way of closing (the Close popup, the Action menu of the list, the
    customer portal, the scheduled action) ends in :meth:`_action_close`;
    reopening in :meth:`_action_reopen`; cancelling a scheduled closing in
    :meth:`_action_cancel_close`. Each is all-or-nothing, works on any number
    of orders by chunks, and writes through ``write()`` (one call per group of
    equal values), so that automation rules, ``write`` overrides, constraints
    and tracking hooks see every change; each order gets one chatter message
    with the tracked values.
    """

    _inherit = "sale.order"  # pylint: disable=consider-merging-classes-inherited

    # ------------------------------------------------------------------
    # Buttons
    # ------------------------------------------------------------------

    def action_open_close_wizard(self):
        """Open the Close Reason popup for the subscriptions of ``self``."""
        self._check_can_close()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "subscription_close.sale_order_close_action"
        )
        action["context"] = {"dialog_size": "medium", "default_order_ids": self.ids}
        return action

    def action_open_reopen_wizard(self):
        """Open the Reopen popup, which asks whether to invoice the periods
        missed while the subscriptions were closed."""
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "subscription_close.sale_order_reopen_action"
        )
        action["context"] = {"dialog_size": "medium", "default_order_ids": self.ids}
        return action

    def action_reopen(self):
        return self._action_reopen()

    def action_cancel_close(self):
        return self._action_cancel_close()

    # ------------------------------------------------------------------
    # What may be closed
    # ------------------------------------------------------------------

    def _get_close_refusals(self):
        """Return ``{order: why}`` for the orders of ``self`` that cannot be
        closed. Override to refuse more (e.g. an unpaid final invoice)."""
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
        return refusals

    def _check_can_close(self):
        refusals = {}
        for chunk in self._subscription_chunks():
            refusals.update(chunk._get_close_refusals())
        if refusals:
            raise UserError(
                self.env._(
                    "Only subscriptions in progress can be closed. "
                    "Nothing was closed because of:\n%(orders)s",
                    orders=self._subscription_refusal_list(refusals),
                )
            )

    def _subscription_refusal_list(self, refusals):
        """``refusals`` (``{order: why}``) as lines for a message: the first
        ``REFUSALS_SHOWN`` orders by name, then how many more."""
        lines = [
            f"- {order.display_name}: {why}"
            for order, why in list(refusals.items())[:REFUSALS_SHOWN]
        ]
        if len(refusals) > REFUSALS_SHOWN:
            lines.append(self.env._("- and %(count)s more", count=len(refusals) - REFUSALS_SHOWN))
        return "\n".join(lines)

    # ------------------------------------------------------------------
    # The closing API
    # ------------------------------------------------------------------

    def _action_close(self, reason, end_dates, author=None, retention_shown=False):
        """Close the subscriptions of ``self``: the one closing method.

        The Close popup (one or many orders), the customer portal and the
        scheduled action all end here. All-or-nothing: if one order cannot
        be closed, nothing changes.

        :param reason: the ``sale.order.close.reason`` of the closing.
        :param end_dates: ``{order_id: date}``, the last day of each
            subscription, computed by the caller (today, the end of the
            current period, a chosen date, the end date already set). A date
            after the order's today schedules the closing: the subscription
            stays In Progress with that end date and the reason until the
            scheduled action closes it. A date up to today closes it now.
        :param author: ``res.partner`` who closes when it is not the current
            user (the customer, from the portal).
        :param retention_shown: the customer saw the retention offer of the
            reason before confirming; the chatter says so.
        """
        if not self:
            return True
        self.check_access("write")
        self._check_can_close()
        reason._check_usable_for(self)
        missing = self.filtered(lambda order: not end_dates.get(order.id))
        if missing:
            raise UserError(
                self.env._(
                    "No end date was given to close %(orders)s.",
                    orders=", ".join(missing[:REFUSALS_SHOWN].mapped("display_name")),
                )
            )
        send_mail = False
        for chunk in self._subscription_chunks():
            today_by_id = chunk._get_subscription_today()
            vals_by_id, event_by_id = {}, {}
            for order in chunk:
                end_date, today = end_dates[order.id], today_by_id[order.id]
                if end_date > today:
                    event, state, mail = "close_scheduled", "3_progress", "scheduled"
                else:
                    event = "closed" if end_date == today else "expired"
                    state, mail = "6_churn", "closed"
                mail = order.plan_id.send_close_mail and mail
                send_mail = send_mail or bool(mail)
                vals_by_id[order.id] = order._prepare_close_values(reason, end_date, state, mail)
                event_by_id[order.id] = (event, end_date)
            body_by_id = chunk._subscription_log_bodies(
                event_by_id, author=author, reason=reason, retention_shown=retention_shown
            )
            chunk._subscription_write(vals_by_id, body_by_id, author=author)
        if send_mail:
            self.env.ref("subscription_close.ir_cron_send_close_mails")._trigger()
        return True

    def _prepare_close_values(self, reason, end_date, state, mail):
        """The values :meth:`_action_close` writes on the order ``self``
        (closed now when ``state`` is churned, else scheduled). Override to
        write more; orders with equal values are written together."""
        self.ensure_one()
        vals = {
            "subscription_state": state,
            "end_date": end_date,
            "close_reason_id": reason.id,
            "close_mail_to_send": mail,
        }
        if state == "6_churn" and self.invoice_due:
            vals["invoice_due"] = False  # a closed subscription has nothing to invoice
        return vals

    def _action_reopen(self, author=None, invoice_gap=False):
        """Put churned subscriptions back in progress, without end date nor
        close reason, and resume their invoicing: from the day of the
        reopening, or, with ``invoice_gap``, from their next invoice date
        (the invoicing then catches up one invoice per period missed). A
        draft prorated credit note of the closing is cancelled (the chatter
        names it). ``author`` as for :meth:`_action_close`."""
        if not self:
            return True
        self.check_access("write")
        not_churned = self.filtered(lambda order: order.subscription_state != "6_churn")
        if not_churned:
            raise UserError(
                self.env._(
                    "Only closed subscriptions can be reopened. Nothing was reopened because "
                    "of:\n%(orders)s",
                    orders=self._subscription_refusal_list(
                        dict.fromkeys(not_churned, self.env._("not closed"))
                    ),
                )
            )
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
        not_closing = self.filtered(lambda order: not order.is_closing)
        if not_closing:
            raise UserError(
                self.env._(
                    "These subscriptions have no scheduled closing to cancel:\n%(orders)s",
                    orders=self._subscription_refusal_list(
                        dict.fromkeys(not_closing, self.env._("no closing scheduled"))
                    ),
                )
            )
        send_mail = False
        for chunk in self._subscription_chunks():
            vals_by_id = {}
            for order in chunk:
                mail = order._get_close_cancelled_mail()
                send_mail = send_mail or bool(mail)
                vals_by_id[order.id] = {
                    "end_date": False,
                    "close_reason_id": False,
                    "close_mail_to_send": mail,
                }
            body_by_id = chunk._subscription_log_bodies(
                dict.fromkeys(chunk.ids, ("close_cancelled", None)), author=author
            )
            chunk._subscription_write(vals_by_id, body_by_id, author=author)
        if send_mail:
            self.env.ref("subscription_close.ir_cron_send_close_mails")._trigger()
        return True

    def _get_close_cancelled_mail(self):
        """The email to queue when the scheduled closing of ``self`` is
        cancelled: "your subscription goes on" (``kept``) when the plan sends
        closure emails, unless the "will close" email is still waiting, in
        which case the customer was told nothing and nothing is sent."""
        self.ensure_one()
        if not self.plan_id.send_close_mail or self.close_mail_to_send == "scheduled":
            return False
        return "kept"

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
    ):
        """The chatter text logged on the order ``self`` for ``event``, the
        one place of every subscription message:

        - closing: ``closed``, ``expired`` (closed by the scheduled action on
          its end date), ``close_scheduled``, ``close_cancelled``,
          ``reopened`` (with the draft ``credit_notes`` it cancelled);
        - pause: ``paused`` (``end_date`` is the resume date, ``note`` the
          reason), ``resumed``, ``pause_ended`` (``end_date`` is the day it
          resumes);
        - invoicing: ``invoiced`` (``invoice`` bills ``period``, a
          ``(start, end)`` pair; no invoice when there was nothing to bill).

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
        else:
            body = ""
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

    def _get_period_end_dates(self):
        """``{order_id: date}``: the last day of the billing period that
        contains today (of the periods already invoiced, the last one), i.e.
        the day before the first period start after today."""
        today_by_id = self._get_subscription_today()
        end_dates = {}
        for order in self:
            today = today_by_id[order.id]
            boundary = order.next_invoice_date
            if not (boundary and order.plan_id):
                end_dates[order.id] = today
                continue
            while boundary <= today:
                boundary = order._get_next_period_start(boundary)
            end_dates[order.id] = boundary - relativedelta(days=1)
        return end_dates

    # ------------------------------------------------------------------
    # Scheduled actions
    # ------------------------------------------------------------------

    @api.model
    def _cron_close_expired(self, batch_size=CLOSE_CHUNK_SIZE):
        """Close the subscriptions whose end date has passed.

        Batches of ``batch_size`` orders, each locked with SKIP LOCKED so that
        two workers never close the same order, closed through
        :meth:`_action_close` (one call per close reason) and committed with
        the cron progress. Running it twice closes nothing more: closed
        subscriptions are no longer due.
        """
        expired = self.env.ref("subscription_close.close_reason_expired")
        domain = Domain("subscription_state", "=", "3_progress") & self._subscription_date_domain(
            "end_date", "<"
        )
        while True:
            orders = self._subscription_lock(
                domain, batch_size, retry_cron="subscription_close.ir_cron_close_expired"
            )
            if not orders:
                break
            for reason, group in orders.grouped(lambda o: o.close_reason_id or expired).items():
                group._action_close(reason, {order.id: order.end_date for order in group})
            orders._subscription_release_cache()
            remaining = self.search_count(domain)
            time_left = self.env["ir.cron"]._commit_progress(len(orders), remaining=remaining)
            if not remaining or not time_left:
                break

    @api.model
    def _cron_send_close_mails(self, batch_size=CLOSE_MAIL_BATCH_SIZE):
        """Send the closure emails waiting on subscriptions, in batches
        committed with the cron progress. The emails are queued (as every
        email of a scheduled action): the mail queue is triggered to send
        them at once rather than within the hour."""
        templates = {
            "closed": self.env.ref("subscription_close.mail_template_subscription_closed"),
            "scheduled": self.env.ref("subscription_close.mail_template_subscription_closing"),
            "kept": self.env.ref("subscription_close.mail_template_subscription_kept"),
        }
        domain = Domain("close_mail_to_send", "!=", False)
        while True:
            orders = self._subscription_lock(
                domain, batch_size, retry_cron="subscription_close.ir_cron_send_close_mails"
            )
            if not orders:
                break
            for order in orders:
                order.message_post_with_source(
                    templates[order.close_mail_to_send],
                    subtype_xmlid="mail.mt_comment",
                    email_layout_xmlid="mail.mail_notification_light",
                )
            orders.write({"close_mail_to_send": False})
            self.env.ref("mail.ir_cron_mail_scheduler_action")._trigger()
            remaining = self.search_count(domain) if len(orders) == batch_size else 0
            time_left = self.env["ir.cron"]._commit_progress(len(orders), remaining=remaining)
            if not remaining or not time_left:
                break

    @api.model
    def _subscription_lock(self, domain, batch_size, retry_cron=None):
        """Lock and return up to ``batch_size`` orders matching ``domain``
        that no other transaction holds (FOR NO KEY UPDATE SKIP LOCKED), for
        the batches of a scheduled action: the orders another transaction
        holds are skipped and the next ones taken instead.

        Another worker may commit changes to due orders between our snapshot
        and our lock: PostgreSQL then refuses the lock (serialization
        failure) and the search is made again on a fresh snapshot. Call it
        with nothing pending in the transaction (at the start of a batch).

        :param retry_cron: xml id of the scheduled action to trigger again a
            minute later when due orders could not be locked (another
            transaction holds them), so that they wait a minute, not until
            the next day's run.
        """
        for _attempt in range(5):
            try:
                due = self.search(domain, order="id")
                orders = due._subscription_try_lock(batch_size)
            except SerializationFailure:
                self.env.cr.rollback()
                continue
            if retry_cron and len(orders) < min(len(due), batch_size):
                self._subscription_retry_later(retry_cron)
            return orders
        if retry_cron:
            self._subscription_retry_later(retry_cron)
        return self.browse()

    def _subscription_try_lock(self, limit):
        """Lock up to ``limit`` orders of ``self`` (in their order) that no
        other transaction holds, as ``try_lock_for_update`` does, and return
        them. A row another worker changed since this transaction's snapshot
        makes PostgreSQL refuse the lock (serialization failure): raised to
        the caller, which starts again on a fresh snapshot, without an error
        in the log, since nothing went wrong."""
        if not self:
            return self
        self.env.flush_all()
        query = self._as_query(ordered=True)
        query.limit = limit
        self.env.cr.execute(
            SQL("%s FOR NO KEY UPDATE SKIP LOCKED", query.select()), log_exceptions=False
        )
        locked = {order_id for (order_id,) in self.env.cr.fetchall()}
        return self.browse(order_id for order_id in self._ids if order_id in locked)

    @api.model
    @contextmanager
    def _subscription_job_mutex(self, job):
        """Run the block in one process at a time on this database: yields
        True when this process holds the job (a session-level advisory lock
        named after ``job``, released at the end, or by PostgreSQL when the
        process dies), False when another process does.

        The work of a job whose batches write the same shared records (e.g.
        invoices posted for the same customers write their rank) is then
        never done by two processes at once, whether it is started by the
        scheduled action, *Run Manually* or a server action."""
        cr = self.env.cr
        key = zlib.crc32(f"subscription_close.{job}".encode()) - 2**31
        cr.execute(SQL("SELECT pg_try_advisory_lock(%s)", key))
        if not cr.fetchone()[0]:
            yield False
            return
        try:
            yield True
        except Exception:
            cr.rollback()
            raise
        finally:
            cr.execute(SQL("SELECT pg_advisory_unlock(%s)", key))

    @api.model
    def _subscription_retry_later(self, cron_xmlid):
        """Trigger the scheduled action ``cron_xmlid`` a minute later, unless
        it is already triggered within that minute."""
        cron = self.env.ref(cron_xmlid).sudo()
        now = fields.Datetime.now()
        at = now + LOCKED_RETRY_DELAY
        Trigger = self.env["ir.cron.trigger"].sudo()
        domain = [("cron_id", "=", cron.id), ("call_at", ">", now), ("call_at", "<=", at)]
        if not Trigger.search_count(domain, limit=1):
            cron._trigger(at)

    @api.model
    def _subscription_date_domain(self, field_name, operator):
        """The orders whose date ``field_name`` compares with ``operator`` to
        today, today being taken in the timezone of each order's company
        (one term per company)."""
        companies = self.env["res.company"].sudo().search([])
        return Domain.OR(
            Domain("company_id", "=", company.id)
            & Domain(field_name, operator, self.with_company(company)._subscription_today())
            for company in companies
        )

    # ------------------------------------------------------------------
    # Writing and logging, through the ORM
    # ------------------------------------------------------------------

    def _subscription_chunks(self):
        """Yield the orders of ``self`` by chunks of ``CLOSE_CHUNK_SIZE``.
        Between two chunks the cache of the chunk and of the chatter is
        released, so that memory is bounded by one chunk, not the selection."""
        if len(self) <= CLOSE_CHUNK_SIZE:
            yield self
            return
        for chunk in split_every(CLOSE_CHUNK_SIZE, self.ids, self.browse):
            yield chunk
            chunk._subscription_release_cache()

    def _subscription_prefetch(self, field_names):
        """``self``, to read ``field_names`` across the selection. Up to one
        chunk, Odoo's usual prefetch reads them with the order's other fields
        in one query; beyond, only these fields are fetched, so that reading
        them does not bring every field of thousands of orders into memory."""
        if len(self) <= CLOSE_CHUNK_SIZE:
            return self
        self.fetch(field_names)
        return self.with_context(prefetch_fields=False)

    def _subscription_release_cache(self):
        """Drop these orders, the order lines and the chatter from the cache
        once they are written, so that the next batch does not add to memory."""
        self.env.flush_all()
        self.invalidate_recordset()
        self.env["sale.order.line"].invalidate_model()
        self.env["mail.message"].invalidate_model()
        self.env["mail.tracking.value"].invalidate_model()

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
        the name of ``author`` (a partner) if given.

        The body and the author are handed to the tracking the core way
        (``_track_set_log_message``, ``_track_set_author``), then the tracking
        of these orders is logged at once, in batch (:meth:`_subscription_track`).
        """
        ids_by_body = defaultdict(list)
        for order_id, body in body_by_id.items():
            ids_by_body[body].append(order_id)
        for body, ids in ids_by_body.items():
            self.browse(ids)._track_set_log_message(body)
        if author:
            self._track_set_author(author)
        ids_by_vals = defaultdict(list)
        for order_id, vals in vals_by_id.items():
            ids_by_vals[tuple(sorted(vals.items()))].append(order_id)
        for vals, ids in ids_by_vals.items():
            self.browse(ids).write(dict(vals))
        self._subscription_track()

    def _subscription_track(self):
        """Log now the changes tracked on the orders of ``self`` since the
        start of the transaction: one message per order with its body (see
        ``_track_set_log_message``), author (``_track_set_author``) and every
        tracked value that changed, earlier edits of the same transaction
        included, so that nothing is logged twice at commit.

        This is what ``mail.thread`` does at commit time, done in batch:
        ``_track_subtype`` picks the subtype of each message (a message with a
        subtype is posted and notifies the followers, e.g. a customer's
        closing), the others are created as notes with ONE
        ``mail.message.create`` for all the orders, and
        ``_message_track_post_template`` runs for each order.
        """
        data = self.env.cr.precommit.data
        initial_values = _pop_ids(data.get(f"mail.tracking.{self._name}", {}), self.ids)
        bodies = _pop_ids(data.get(f"mail.tracking.message.{self._name}", {}), self.ids)
        authors = data.get(f"mail.tracking.author.{self._name}", {})
        tracked_fields = self.fields_get(
            list(self._track_get_fields()),
            attributes=("string", "type", "selection", "currency_field"),
        )
        notes = defaultdict(list)  # {author_id: [(order_id, body, tracking values)]}
        changes_by_id = {}
        for order in self.sudo():
            initial = initial_values.get(order.id) or {}
            changes, tracking_value_ids = order._mail_track(tracked_fields, initial)
            changes_by_id[order.id] = changes
            if not changes and order.id not in bodies:
                continue
            subtype = order._track_subtype({fname: initial[fname] for fname in changes})
            author_id = authors[order.id].id if order.id in authors else None
            body = bodies.get(order.id, "")
            if subtype:
                order.message_post(
                    body=body,
                    author_id=author_id,
                    subtype_id=subtype.id,
                    tracking_value_ids=tracking_value_ids,
                )
            else:
                notes[author_id].append((order.id, body, tracking_value_ids))
        _pop_ids(authors, self.ids)
        for author_id, author_notes in notes.items():
            self._subscription_log_notes(author_notes, author_id)
        for order in self.sudo():
            order._message_track_post_template(changes_by_id[order.id])

    def _subscription_log_notes(self, notes, author_id=None):
        """Create the notes ``[(order_id, body, tracking_value_ids)]`` with
        one ``mail.message.create`` (the values ``_message_log_batch`` gives
        a note) and their tracking values with one ``create``."""
        author_id, email_from = self._message_compute_author(author_id)
        values = {
            "author_id": author_id,
            "email_from": email_from,
            "model": self._name,
            "record_alias_domain_id": False,
            "record_company_id": False,
            "message_type": "notification",
            "is_internal": True,
            "subtype_id": self.env["ir.model.data"]._xmlid_to_res_id("mail.mt_note"),
            "email_add_signature": False,
            "message_id": generate_tracking_message_id("message-notify"),
            "reply_to": self.env["mail.thread"]._notify_get_reply_to(
                default=email_from, author_id=author_id
            )[False],
        }
        messages = self.sudo()._message_create(
            [dict(values, res_id=order_id, body=escape(body)) for order_id, body, _t in notes]
        )
        # The tracking values of all the notes in one create (given to each
        # message, they would be inserted message by message).
        self.env["mail.tracking.value"].sudo().create(
            [
                dict(command[2], mail_message_id=message.id)
                for message, (_id, _body, tracking) in zip(messages, notes, strict=True)
                for command in tracking
            ]
        )
        return messages

    def _track_subtype(self, init_values):
        """A change of closing made by a customer (the author of the tracking,
        see ``_track_set_author``, is not an internal user: a closing from the
        portal) is posted with the "Subscription Closed" subtype, which
        notifies the followers; the same change made in the backend is a
        note."""
        self.ensure_one()
        subtype = super()._track_subtype(init_values)
        if subtype or not init_values.keys() & {"end_date", "close_reason_id"}:
            return subtype
        authors = self.env.cr.precommit.data.get(f"mail.tracking.author.{self._name}", {})
        author = authors.get(self.id)
        if author and author.partner_share:
            return self.env.ref("subscription_close.mt_subscription_closed")
        return subtype


def _pop_ids(values_by_id, ids):
    """Remove the entries of ``ids`` from ``values_by_id`` and return them."""
    return {id_: values_by_id.pop(id_) for id_ in ids if id_ in values_by_id}
