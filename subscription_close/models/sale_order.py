import json

from dateutil.relativedelta import relativedelta
from markupsafe import escape

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.fields import Domain
from odoo.tools import SQL, format_date, split_every
from odoo.tools.mail import generate_tracking_message_id

SUBSCRIPTION_STATES = [
    ("1_draft", "Quotation"),
    ("3_progress", "In Progress"),
    ("6_churn", "Churned"),
]
# Fields whose change closing, reopening or cancelling a close logs in the chatter.
CLOSE_TRACKED_FIELDS = ("subscription_state", "end_date", "close_reason_id")
# Fields the closing methods write (with SQL, see _subscription_change).
CLOSE_WRITTEN_FIELDS = (*CLOSE_TRACKED_FIELDS, "close_mail_to_send")
# Orders closed per chunk: each chunk costs a constant number of queries.
CLOSE_CHUNK_SIZE = 1000


class SaleOrder(models.Model):
    _inherit = "sale.order"

    plan_id = fields.Many2one(
        "sale.subscription.plan",
        string="Recurring Plan",
        index="btree_not_null",
        check_company=True,
        tracking=True,
    )
    is_subscription = fields.Boolean(
        string="Is a Subscription",
        compute="_compute_is_subscription",
        store=True,
        index=True,
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
        compute="_compute_next_invoice_date",
        store=True,
        readonly=False,
        copy=False,
        tracking=True,
        help="Start date moved forward by one billing period of the recurring plan.",
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
    recurring_monthly = fields.Monetary(
        string="Monthly Recurring Revenue",
        compute="_compute_recurring_monthly",
        store=True,
        currency_field="currency_id",
        help="Untaxed amount of the order normalised to one month with the billing period "
        "of its recurring plan (e.g. a yearly plan counts for a twelfth).",
    )
    close_mail_to_send = fields.Selection(
        [("closed", "Closed"), ("scheduled", "Closing scheduled")],
        string="Closure Email to Send",
        copy=False,
        readonly=True,
        help="Closure email waiting to be sent to the customer by the scheduled action.",
    )

    @api.depends("plan_id", "order_line.product_id.recurring_invoice")
    def _compute_is_subscription(self):
        for order in self:
            order.is_subscription = bool(order.plan_id) or any(
                order.order_line.product_id.mapped("recurring_invoice")
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

    @api.depends(
        "is_subscription",
        "amount_untaxed",
        "plan_id.billing_period_value",
        "plan_id.billing_period_unit",
    )
    def _compute_recurring_monthly(self):
        months_per_unit = {"week": 12 / 52, "month": 1, "year": 12}
        for order in self:
            plan = order.plan_id
            if order.is_subscription and plan:
                months = plan.billing_period_value * months_per_unit[plan.billing_period_unit]
                order.recurring_monthly = order.amount_untaxed / months
            else:
                order.recurring_monthly = 0.0

    @api.depends("start_date", "plan_id.billing_period_value", "plan_id.billing_period_unit")
    def _compute_next_invoice_date(self):
        for order in self:
            if order.start_date and order.plan_id:
                order.next_invoice_date = order.plan_id._add_periods(order.start_date)
            else:
                order.next_invoice_date = False

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
        res = super()._action_confirm()
        subscriptions = self.filtered(lambda o: o.is_subscription and not o.start_date)
        if subscriptions:
            subscriptions.start_date = self._subscription_today()
        return res

    def action_draft(self):
        # A subscription set back to quotation starts again from scratch.
        subscriptions = self.filtered(lambda o: o.is_subscription and o.state in ("cancel", "sent"))
        res = super().action_draft()
        if subscriptions:
            subscriptions.write(
                {
                    "start_date": False,
                    "end_date": False,
                    "close_reason_id": False,
                    "close_mail_to_send": False,
                }
            )
        return res

    # ------------------------------------------------------------------
    # Closing
    # ------------------------------------------------------------------

    def action_open_close_wizard(self):
        """Open the Close Reason popup for the subscriptions of ``self``."""
        self._check_can_close()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "subscription_close.sale_order_close_action"
        )
        action["context"] = {"dialog_size": "medium", "default_order_ids": self.ids}
        return action

    def _get_close_refusals(self):
        """Return ``{order: why}`` for the orders of ``self`` that cannot be closed."""
        refusals = {}
        for order in self:
            if not order.is_subscription:
                refusals[order] = self.env._("not a subscription")
            elif order.subscription_state == "1_draft":
                refusals[order] = self.env._("still a quotation")
            elif order.subscription_state == "6_churn":
                refusals[order] = self.env._("already closed")
            elif order.subscription_state != "3_progress":
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
                    orders="\n".join(
                        f"- {order.display_name}: {why}" for order, why in refusals.items()
                    ),
                )
            )

    def _action_close(
        self, close_reason=None, *, close_date=None, author=None, retention_shown=False
    ):
        """Close the subscriptions of ``self``: the one closing method.

        The Close popup (one or many orders), the customer portal and the
        scheduled action all end here. It is all-or-nothing (one order that
        cannot be closed and nothing changes) and works by chunks of
        ``CLOSE_CHUNK_SIZE`` orders, each in a constant number of queries and
        with its cache released before the next one.

        :param close_reason: ``sale.order.close.reason``; ``None`` (the
            scheduled action) keeps each order's reason, or uses the protected
            "Subscription expired" reason when it has none.
        :param close_date: when the subscriptions stop: ``None`` for today, a
            ``date``, or ``{order_id: date}``. A date after today schedules the
            closing: the subscription stays In Progress, with that end date
            and the reason, until the scheduled action closes it; a date up to
            today closes it now, with that end date.
        :param author: ``res.partner`` who closes (the customer, from the
            portal): the message is then posted in their name and notifies
            the followers; by default the current user, logged silently.
        :param retention_shown: the customer saw the retention offer of the
            reason before confirming; the chatter says so.
        """
        if not self:
            return True
        self.check_access("write")
        self._check_can_close()
        if close_reason is not None:
            close_reason._check_usable_for(self)
        today = self._subscription_today()
        expired_reason = self.env.ref("subscription_close.close_reason_expired")
        closer = (author or self.env.user.partner_id).name
        bodies = {}  # the same few messages for thousands of orders

        def message(scheduled, reason, end_date):
            key = (scheduled, reason.id, end_date if scheduled else None)
            if key in bodies:
                return bodies[key]
            if scheduled:
                body = self.env._(
                    "Closing scheduled by %(name)s: the subscription will close on "
                    "%(date)s. Close Reason: %(reason)s",
                    name=closer,
                    date=format_date(self.env, end_date),
                    reason=reason.name,
                )
            elif close_reason is None:
                body = self.env._(
                    "Subscription closed on its end date. Close Reason: %(reason)s",
                    reason=reason.name,
                )
            else:
                body = self.env._(
                    "Subscription closed by %(name)s. Close Reason: %(reason)s",
                    name=closer,
                    reason=reason.name,
                )
            if retention_shown:
                body = self.env._(
                    "%(message)s (a retention offer was shown before closing)", message=body
                )
            bodies[key] = body
            return body

        mail_to_send = False
        for chunk in self._subscription_chunks():
            vals_by_id, body_by_id = {}, {}
            for order in chunk:
                if isinstance(close_date, dict):
                    end_date = close_date.get(order.id) or today
                else:
                    end_date = close_date or today
                reason = close_reason or order.close_reason_id or expired_reason
                scheduled = end_date > today
                mail = order.plan_id.send_close_mail and ("scheduled" if scheduled else "closed")
                mail_to_send = mail_to_send or bool(mail)
                vals_by_id[order.id] = {
                    "subscription_state": "3_progress" if scheduled else "6_churn",
                    "end_date": end_date,
                    "close_reason_id": reason.id,
                    "close_mail_to_send": mail,
                }
                body_by_id[order.id] = message(scheduled, reason, end_date)
            chunk._subscription_change(
                vals_by_id,
                body_by_id,
                author=author,
                subtype_xmlid="subscription_close.mt_subscription_closed",
            )
        if mail_to_send:
            self.env.ref("subscription_close.ir_cron_send_close_mails")._trigger()
        return True

    def action_reopen(self):
        """Put churned subscriptions back in progress."""
        self.check_access("write")
        not_churned = self.filtered(lambda o: o.subscription_state != "6_churn")
        if not_churned:
            raise UserError(
                self.env._(
                    "Only closed subscriptions can be reopened: %(orders)s",
                    orders=", ".join(not_churned.mapped("display_name")),
                )
            )
        body = self.env._("Subscription reopened by %(name)s.", name=self.env.user.partner_id.name)
        vals = {
            "subscription_state": "3_progress",
            "end_date": False,
            "close_reason_id": False,
            "close_mail_to_send": False,
        }
        self._subscription_change(
            {order_id: vals for order_id in self.ids}, dict.fromkeys(self.ids, body)
        )
        return True

    def action_cancel_close(self):
        """Cancel the scheduled closing of subscriptions (backend button)."""
        return self._action_cancel_close()

    def _action_cancel_close(self, author=None):
        """Cancel the scheduled closing of the subscriptions of ``self``: they
        stay In Progress, without end date nor close reason. ``author`` as
        for :meth:`_action_close` (the customer keeping their subscription)."""
        if not self:
            return True
        self.check_access("write")
        not_closing = self.filtered(lambda o: not o.is_closing)
        if not_closing:
            raise UserError(
                self.env._(
                    "These subscriptions have no scheduled closing to cancel: %(orders)s",
                    orders=", ".join(not_closing.mapped("display_name")),
                )
            )
        body = self.env._(
            "Scheduled closing cancelled by %(name)s: the subscription goes on.",
            name=(author or self.env.user.partner_id).name,
        )
        vals = {"end_date": False, "close_reason_id": False, "close_mail_to_send": False}
        self._subscription_change(
            {order_id: vals for order_id in self.ids},
            dict.fromkeys(self.ids, body),
            author=author,
            subtype_xmlid="subscription_close.mt_subscription_closed",
        )
        return True

    def _get_period_end_dates(self):
        """``{order_id: date}``: the last day of the billing period that
        contains today, i.e. the day before the next invoice date (or before
        the next period boundary when the next invoice date is already past)."""
        today = self._subscription_today()
        end_dates = {}
        for order in self:
            boundary = order.next_invoice_date
            if order.plan_id and order.start_date and (not boundary or boundary <= today):
                count = 1
                boundary = order.plan_id._add_periods(order.start_date, count)
                while boundary <= today:
                    count += 1
                    boundary = order.plan_id._add_periods(order.start_date, count)
            end_dates[order.id] = boundary - relativedelta(days=1) if boundary else today
        return end_dates

    # ------------------------------------------------------------------
    # Scheduled actions
    # ------------------------------------------------------------------

    @api.model
    def _cron_close_expired(self, batch_size=CLOSE_CHUNK_SIZE):
        """Close the subscriptions whose end date has passed.

        Batches of ``batch_size`` orders, each locked with SKIP LOCKED so that
        two workers never close the same order, each closed in a constant
        number of queries and committed with the cron progress. Running it
        twice closes nothing more: closed subscriptions are no longer due.
        """
        domain = [
            ("subscription_state", "=", "3_progress"),
            ("end_date", "<", self._subscription_today()),
        ]
        while True:
            orders = self.search(domain, limit=batch_size, order="id").try_lock_for_update(
                allow_referencing=True
            )
            if not orders:
                break
            orders._action_close(close_date={order.id: order.end_date for order in orders})
            orders._subscription_release_cache()
            remaining = self.search_count(domain)
            time_left = self.env["ir.cron"]._commit_progress(len(orders), remaining=remaining)
            if not remaining or not time_left:
                break

    @api.model
    def _cron_send_close_mails(self, batch_size=50):
        """Send the closure emails waiting on subscriptions, in batches
        committed with the cron progress."""
        templates = {
            "closed": self.env.ref("subscription_close.mail_template_subscription_closed"),
            "scheduled": self.env.ref("subscription_close.mail_template_subscription_closing"),
        }
        domain = [("close_mail_to_send", "!=", False)]
        while True:
            orders = self.search(domain, limit=batch_size, order="id").try_lock_for_update(
                allow_referencing=True
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
            remaining = self.search_count(domain) if len(orders) == batch_size else 0
            time_left = self.env["ir.cron"]._commit_progress(len(orders), remaining=remaining)
            if not remaining or not time_left:
                break

    # ------------------------------------------------------------------
    # Portal
    # ------------------------------------------------------------------

    def _is_portal_closable(self):
        """Whether the customer may close this subscription from the portal."""
        self.ensure_one()
        return bool(
            self.is_subscription
            and self.subscription_state == "3_progress"
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

    def _get_portal_close_date(self):
        """The date a close from the portal takes effect, per the plan."""
        self.ensure_one()
        if self.plan_id.user_closable_options == "end_of_period":
            return self._get_period_end_dates()[self.id]
        return self._subscription_today()

    def _get_portal_close_reasons(self):
        """The reasons a customer may pick for this subscription: active,
        visible in the portal, not protected, of the order's company or
        shared. The portal offers these and accepts nothing else."""
        self.ensure_one()
        return (
            self.env["sale.order.close.reason"]
            .sudo()
            .search(
                [
                    ("visible_in_portal", "=", True),
                    ("is_protected", "=", False),
                    ("company_id", "in", [False, self.company_id.id]),
                ]
            )
        )

    def _get_portal_subscription_status(self):
        """(label, bootstrap colour) of the subscription badge in the portal."""
        self.ensure_one()
        if self.subscription_state == "6_churn":
            return self.env._("Closed"), "danger"
        if self.is_closing:
            return self.env._("Closing"), "warning"
        if self.subscription_state == "3_progress":
            return self.env._("In Progress"), "success"
        return self.env._("Quotation"), "info"

    # ------------------------------------------------------------------
    # Helpers
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

    def _subscription_release_cache(self):
        """Drop these orders and the chatter from the cache once they are
        written, so that processing the next batch does not add to memory."""
        self.env.flush_all()
        self.invalidate_recordset()
        self.env["mail.message"].invalidate_model()
        self.env["mail.tracking.value"].invalidate_model()

    def _subscription_change(self, vals_by_id, body_by_id, author=None, subtype_xmlid=None):
        """Write ``vals_by_id[order.id]`` (closing fields only, same keys for
        every order) on the orders of ``self`` and log ``body_by_id[order.id]``
        with the tracked changes in each chatter.

        Each chunk of orders costs a constant number of queries: one UPDATE,
        one INSERT of notes, one INSERT of tracking values. The ORM would
        write and insert 100 rows per query; the chunk is written with SQL
        instead, then invalidated and marked as modified so that anything
        computed from these fields is recomputed.

        With an ``author`` (a customer acting from the portal) the message is
        posted in their name with ``subtype_xmlid`` and notifies followers.
        """
        fnames = list(next(iter(vals_by_id.values())))
        assert set(fnames) <= set(CLOSE_WRITTEN_FIELDS), fnames
        self.flush_recordset()
        for chunk in self._subscription_chunks():
            initial_values = chunk._subscription_snapshot()
            _sql_update_rows(
                self.env, self._name, [dict(vals_by_id[id_], id=id_) for id_ in chunk.ids]
            )
            chunk.invalidate_recordset([*fnames, "write_uid", "write_date"])
            chunk.modified(fnames)
            chunk._subscription_log(
                body_by_id, initial_values, author=author, subtype_xmlid=subtype_xmlid
            )
        return True

    def _subscription_snapshot(self):
        """Values of the close fields before a change, for the chatter tracking."""
        return {order.id: {f: order[f] for f in CLOSE_TRACKED_FIELDS} for order in self}

    def _subscription_log(self, body_by_id, initial_values, author=None, subtype_xmlid=None):
        """Log ``body_by_id[order.id]`` with the tracked changes since
        ``initial_values`` on every order of ``self``.

        Without ``author``: one note per order, the same note
        ``_message_log_batch`` would create, inserted in one query, and their
        tracking values in a second one. With an ``author`` (a customer
        acting from the portal): a message posted in their name, which
        notifies the followers of the order.
        """
        tracked_fields = self.fields_get(
            list(CLOSE_TRACKED_FIELDS), attributes=("string", "type", "selection", "currency_field")
        )
        tracking = {
            order.id: order._mail_track(tracked_fields, initial_values[order.id])[1]
            for order in self
        }
        if author:
            for order in self:
                order.message_post(
                    body=body_by_id[order.id],
                    author_id=author.id,
                    message_type="notification",
                    subtype_xmlid=subtype_xmlid or "mail.mt_note",
                    tracking_value_ids=tracking[order.id],
                )
            return
        author_id, email_from = self._message_compute_author()
        message_values = {
            "model": self._name,
            "author_id": author_id,
            "email_from": email_from,
            "reply_to": self.env["mail.thread"]._notify_get_reply_to(
                default=email_from, author_id=author_id
            )[False],
            "message_id": generate_tracking_message_id("message-notify"),
            "message_type": "notification",
            "subtype_id": self.env["ir.model.data"]._xmlid_to_res_id("mail.mt_note"),
            "is_internal": True,
            "email_add_signature": False,
            "date": self.env.cr.now(),
        }
        message_ids = _sql_insert_rows(
            self.env,
            "mail.message",
            [
                dict(message_values, res_id=res_id, body=str(escape(body_by_id[res_id])))
                for res_id in self.ids
            ],
            returning="res_id",
        )
        _sql_insert_rows(
            self.env,
            "mail.tracking.value",
            [
                dict(command[2], mail_message_id=message_id)
                for message_id, res_id in message_ids
                for command in tracking[res_id]
            ],
        )
        self.env["mail.message"].invalidate_model()
        self.invalidate_recordset(["message_ids"])

    def _subscription_today(self):
        """Today in the timezone of the user, or of the company when the user
        has none (crons run as a user that may have no timezone)."""
        tz = self.env.user.tz or self.env.company.partner_id.tz or "UTC"
        return fields.Date.context_today(self.with_context(tz=tz))


def _sql_json_rows(env, model_name, rows):
    """``rows`` (dicts of stored column values) as the JSON text that
    ``jsonb_populate_recordset`` reads, and the column names. ``False`` is
    stored as NULL except in boolean columns, as the ORM does."""
    Model = env[model_name]
    names = list(dict.fromkeys(name for row in rows for name in row))
    for name in names:
        field = Model._fields[name]
        assert field.store and field.column_type, f"{model_name}.{name} is not a column"
    booleans = {name for name in names if Model._fields[name].type == "boolean"}
    rows = [
        {
            name: None if value is False and name not in booleans else value
            for name, value in row.items()
        }
        for row in rows
    ]
    return json.dumps(rows, default=str), names


def _sql_insert_rows(env, model_name, rows, returning=None):
    """Insert ``rows`` (dicts of column values) in the table of ``model_name``
    with ONE query, whatever their number, and return
    ``[(id, row[returning])]`` in insertion order when ``returning`` is given.

    Only for plain stored columns of simple tables (chatter notes, tracking
    values): no ORM default, compute or constraint runs, so the caller passes
    every value and invalidates the cache afterwards.
    """
    if not rows:
        return []
    now = env.cr.now()
    log_values = {
        "create_uid": env.uid,
        "create_date": now,
        "write_uid": env.uid,
        "write_date": now,
    }
    data, names = _sql_json_rows(env, model_name, [{**log_values, **row} for row in rows])
    columns = SQL(", ").join(SQL.identifier(name) for name in names)
    query = SQL(
        "INSERT INTO %(table)s (%(columns)s) "
        "SELECT %(columns)s FROM jsonb_populate_recordset(NULL::%(table)s, %(data)s::jsonb)",
        table=SQL.identifier(env[model_name]._table),
        columns=columns,
        data=data,
    )
    if returning:
        query = SQL("%s RETURNING id, %s", query, SQL.identifier(returning))
    env.cr.execute(query)
    return env.cr.fetchall() if returning else []


def _sql_update_rows(env, model_name, rows):
    """Update the records ``row["id"]`` of ``model_name`` with the other
    values of each row (same keys in every row) with ONE query, whatever the
    number of rows. The caller invalidates the cache and calls ``modified``."""
    if not rows:
        return
    now = env.cr.now()
    data, names = _sql_json_rows(
        env, model_name, [{**row, "write_uid": env.uid, "write_date": now} for row in rows]
    )
    table = SQL.identifier(env[model_name]._table)
    assignments = SQL(", ").join(
        SQL("%s = new.%s", SQL.identifier(name), SQL.identifier(name))
        for name in names
        if name != "id"
    )
    env.cr.execute(
        SQL(
            "UPDATE %(table)s SET %(assignments)s "
            "FROM jsonb_populate_recordset(NULL::%(table)s, %(data)s::jsonb) AS new "
            "WHERE %(table)s.id = new.id",
            table=table,
            assignments=assignments,
            data=data,
        )
    )
