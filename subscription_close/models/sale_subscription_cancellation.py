import logging
from datetime import timedelta

import pytz

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.fields import Domain
from odoo.service.model import PG_CONCURRENCY_EXCEPTIONS_TO_RETRY
from odoo.tools import email_normalize, format_date, format_datetime

# Declarations processed per batch of their scheduled action: each closes a
# subscription and queues an email.
PROCESS_BATCH_SIZE = 20
# Declarations one client (an address, kept only as a keyed hash) may send
# per hour, and declarations naming one email per day, whatever the client
# and the reference: beyond, the page refuses and creates nothing (a visitor
# who proved they hold the subscription is never refused).
CLIENT_LIMIT_PER_HOUR = 10
EMAIL_LIMIT_PER_DAY = 5

_logger = logging.getLogger(__name__)

CANCELLATION_KINDS = [
    ("ordinary", "Ordinary cancellation"),
    ("extraordinary", "Extraordinary cancellation (for cause)"),
    ("withdrawal", "Withdrawal from the contract"),
]


class SaleSubscriptionCancellation(models.Model):
    """A cancellation declared on the public cancellation page
    (``/subscriptions/cancel``): what the customer declared (the reference
    and the email that identify the subscription, the kind, the reason of an
    extraordinary cancellation, the wished end date, a comment), when, and
    what came of it: the subscription it matched and the day it ends, or a
    request for a salesperson (an activity) when it matched none or could
    not be processed, since a declaration is never lost. The page only
    creates it (the same answer and the same work whether it matches or not);
    its scheduled action matches and closes it (:meth:`_cron_process`) and
    emails the confirmation, with the date and time of the declaration."""

    _name = "sale.subscription.cancellation"
    _description = "Subscription Cancellation"
    _inherit = ("mail.thread", "mail.activity.mixin", "sale.subscription.job")
    _order = "declared_at desc, id desc"
    _check_company_auto = True

    name = fields.Char(
        string="Number",
        required=True,
        readonly=True,
        copy=False,
        default=lambda self: self.env._("New"),
    )
    order_reference = fields.Char(
        string="Subscription Reference",
        required=True,
        readonly=True,
        help="The reference of the subscription, as the customer typed it.",
    )
    email = fields.Char(
        required=True,
        readonly=True,
        index=True,
        help="The email address the customer typed: the confirmation is sent to it.",
    )
    kind = fields.Selection(CANCELLATION_KINDS, required=True, readonly=True)
    cause = fields.Text(
        readonly=True,
        help="Why the customer cancels for cause (an extraordinary cancellation).",
    )
    wished_end_date = fields.Date(
        readonly=True,
        help="Empty: as soon as possible.",
    )
    comment = fields.Text(readonly=True)
    declared_at = fields.Datetime(
        string="Declared On",
        required=True,
        readonly=True,
        default=fields.Datetime.now,
    )
    customer_tz = fields.Char(
        string="Customer Time Zone",
        readonly=True,
        help="The time zone of the customer's browser, to state the time of the declaration in "
        "their own time.",
    )
    lang = fields.Char(string="Language", readonly=True)
    client_key = fields.Char(
        readonly=True,
        index=True,
        groups="base.group_system",
        help="A keyed hash of the address the declaration came from, to bound the declarations "
        "of one client; the address itself is not kept.",
    )
    user_id = fields.Many2one(
        "res.users",
        string="Signed-in User",
        readonly=True,
        help="The portal user who declared it, if they were signed in.",
    )
    order_id = fields.Many2one(
        "sale.order",
        string="Subscription",
        readonly=True,
        index="btree_not_null",
        check_company=True,
    )
    partner_id = fields.Many2one(related="order_id.partner_id", string="Customer")
    company_id = fields.Many2one("res.company", required=True, readonly=True, index=True)
    state = fields.Selection(
        [
            ("received", "Received"),
            ("done", "Confirmed"),
            ("review", "To Review"),
        ],
        required=True,
        default="received",
        readonly=True,
        tracking=True,
        index=True,
    )
    review_reason = fields.Selection(
        [
            ("unmatched", "No subscription matches the reference and the email"),
            ("cause", "A cause to review"),
            ("refused", "Could not be processed"),
        ],
        readonly=True,
    )
    review_note = fields.Text(readonly=True)
    outcome = fields.Selection(
        [
            ("closed", "Closed"),
            ("closing", "Closing scheduled"),
            ("withdrawn", "Withdrawn"),
            ("already_closed", "Already closed"),
        ],
        readonly=True,
    )
    end_date = fields.Date(
        string="Effective End Date",
        readonly=True,
        help="The last day of the subscription, as confirmed to the customer.",
    )
    confirmation_mail_id = fields.Many2one("mail.mail", readonly=True, copy=False)
    confirmation_body = fields.Html(
        string="Confirmation",
        compute="_compute_confirmation",
        sanitize=True,
    )
    confirmation_sent = fields.Boolean(compute="_compute_confirmation")

    @api.depends("confirmation_mail_id")
    def _compute_confirmation(self):
        for declaration in self:
            mail = declaration.confirmation_mail_id.sudo()
            declaration.confirmation_body = mail.body_html
            declaration.confirmation_sent = mail.state == "sent"

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            if vals.get("name", self.env._("New")) == self.env._("New"):
                vals["name"] = self.env["ir.sequence"].sudo().next_by_code(
                    "sale.subscription.cancellation"
                ) or self.env._("New")
        return super().create(vals_list)

    def write(self, vals):
        """A declaration is evidence: what the customer declared, when, and
        what came of it are written by the addon only (as superuser), never
        by a user; a salesperson follows it up (chatter, activities) and
        marks it handled (:meth:`action_mark_done`)."""
        if not self.env.su and set(vals) & self._get_evidence_fields():
            raise UserError(
                self.env._(
                    "A cancellation declaration is kept as the customer made it and as it was "
                    "processed: it cannot be changed."
                )
            )
        return super().write(vals)

    @api.model
    def _get_evidence_fields(self):
        return {
            name
            for name, field in self._fields.items()
            if field.store and name not in self._get_follow_up_fields()
        }

    @api.model
    def _get_follow_up_fields(self):
        """The stored fields a user may write: the chatter's, the activities'."""
        return set(self.env["mail.thread"]._fields) | set(self.env["mail.activity.mixin"]._fields)

    # ------------------------------------------------------------------
    # What the page accepts
    # ------------------------------------------------------------------

    @api.model
    def _normalize_reference(self, reference):
        return " ".join((reference or "").split()).casefold()

    @api.model
    def _get_rate_refusal(self, client_key, email):
        """``too_many`` if ``client_key`` sent :data:`CLIENT_LIMIT_PER_HOUR`
        declarations within the hour, or :data:`EMAIL_LIMIT_PER_DAY`
        declarations named ``email`` (normalized) within a day, whatever
        their reference (whether it exists or not: the answer tells nothing,
        and the page sends no more confirmations to one address); else
        ``False``. The caller never asks for a visitor who proved they hold
        the subscription (signed in, or with its access token): their
        declaration is never refused.

        Takes a transaction lock per client and per email first, so that
        two requests at once cannot both pass the count."""
        for key in sorted({f"client:{client_key}", f"email:{email}"}):
            self.env.cr.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))",
                [f"subscription_close.cancellation.{key}"],
            )
        now = fields.Datetime.now()
        Cancellation = self.sudo()
        limits = [
            (Domain("client_key", "=", client_key), timedelta(hours=1), CLIENT_LIMIT_PER_HOUR),
            (Domain("email", "=", email), timedelta(days=1), EMAIL_LIMIT_PER_DAY),
        ]
        for domain, period, limit in limits:
            recent = domain & Domain("declared_at", ">", now - period)
            if Cancellation.search_count(recent, limit=limit) >= limit:
                return "too_many"
        return False

    @api.model
    def _declare(self, vals):
        """Record the declaration ``vals`` (checked by the page) and have it
        processed at once by its scheduled action. The same work whatever
        the reference and the email: nothing is looked up here."""
        declaration = self.sudo().create(vals)
        self.env.ref("subscription_close.ir_cron_process_cancellations")._trigger()
        return declaration

    # ------------------------------------------------------------------
    # Processing
    # ------------------------------------------------------------------

    @api.model
    def _cron_process(self, batch_size=PROCESS_BATCH_SIZE):
        """Process the declarations received (:meth:`_process`), in batches
        (:meth:`_subscription_run_job`)."""

        def process(declarations):
            declarations.sudo()._process()
            return len(declarations), declarations.browse()

        self._subscription_run_job(
            Domain("state", "=", "received"),
            process,
            batch_size,
            "subscription_close.ir_cron_process_cancellations",
        )

    def _process(self):
        """Match each declaration of ``self`` with its subscription and close
        it (``sale.order._subscription_cancel_declared``), or keep it as a
        request for a salesperson, then queue its confirmation. A
        declaration that cannot be processed changes nothing but itself."""
        for declaration in self:
            # Known when the visitor proved they hold it (see the page).
            order = declaration.order_id or declaration._find_subscription()
            vals = {}
            if not order:
                vals = {"state": "review", "review_reason": "unmatched"}
            else:
                vals = {"order_id": order.id, "company_id": order.company_id.id}
                # As the customer (the chatter's subtype notifies the followers).
                visitor = declaration.user_id or self.env.ref("base.public_user")
                try:
                    with self.env.cr.savepoint():
                        declaration.write(vals)
                        outcome, end_date = (
                            order.with_user(visitor)
                            .sudo()
                            ._subscription_cancel_declared(declaration)
                        )
                except PG_CONCURRENCY_EXCEPTIONS_TO_RETRY:
                    raise  # the whole batch is tried again
                except UserError as error:
                    vals.update(state="review", review_reason="refused", review_note=str(error))
                except Exception as error:
                    _logger.exception("Cancellation %s could not be processed", declaration.name)
                    vals.update(
                        state="review",
                        review_reason="refused",
                        review_note=self.env._(
                            "The declaration could not be processed (%(error)s): end the "
                            "subscription by hand as declared.",
                            error=str(error) or type(error).__name__,
                        ),
                    )
                else:
                    vals.update(state="done", outcome=outcome, end_date=end_date)
                    if declaration.kind == "extraordinary" and outcome != "already_closed":
                        vals.update(state="review", review_reason="cause")
            declaration.write(vals)
            if declaration.state == "review":
                declaration._schedule_review_activity()
            declaration._send_confirmation()
        self.env.ref("mail.ir_cron_mail_scheduler_action")._trigger()

    def _find_subscription(self):
        """The subscription ``self`` names: its reference (case and spaces
        aside) and an email of its customer, of its invoice address or of
        its company (case aside); else an empty recordset."""
        self.ensure_one()
        email = email_normalize(self.email)
        reference = " ".join((self.order_reference or "").split())
        if not email or not reference:
            return self.env["sale.order"]
        candidates = (
            self.env["sale.order"]
            .sudo()
            .with_context(active_test=False)
            .search(
                [
                    ("name", "=ilike", _escape_like(reference)),
                    ("is_subscription", "=", True),
                    ("subscription_state", "in", ("3_progress", "4_paused", "6_churn")),
                ]
            )
        )
        return candidates.filtered(
            lambda order: (
                email
                in {
                    email_normalize(partner.email)
                    for partner in order.partner_id
                    | order.partner_invoice_id
                    | order.partner_id.commercial_partner_id
                }
            )
        )[:1]

    def _get_declared_date(self, order):
        """The day of the declaration ``self`` in the calendar of ``order``'s
        company."""
        tz = pytz.timezone(self._get_company_tz(order.company_id))
        return pytz.utc.localize(self.declared_at).astimezone(tz).date()

    def _format_declared_at(self, tz):
        """The date and time of the declaration in the time zone ``tz``,
        with its name."""
        self.ensure_one()
        return self.env._(
            "%(datetime)s (%(tz)s)",
            datetime=format_datetime(self.env, self.declared_at, tz=tz, dt_format="medium"),
            tz=tz,
        )

    def _get_declared_at_texts(self):
        """The date and time of the declaration in the customer's time zone
        (their browser's, else their own, else the company's) and in the
        company's, once if they are the same."""
        self.ensure_one()
        company_tz = self._get_company_tz(self.company_id)
        customer_tz = (
            self.customer_tz
            if self.customer_tz in pytz.all_timezones_set
            else self.order_id.partner_id.tz or company_tz
        )
        texts = [self._format_declared_at(customer_tz)]
        if customer_tz != company_tz:
            texts.append(self._format_declared_at(company_tz))
        return texts

    def _schedule_review_activity(self):
        """A to-do for a salesperson: the subscription's, else a sales
        manager of the company."""
        self.ensure_one()
        user = self.order_id.user_id or self._get_review_user()
        # In the language of the salesperson who reads it.
        env = self.with_context(lang=user.lang or self.env.lang).env
        summary = {
            "unmatched": env._("Cancellation to match with a subscription"),
            "cause": env._("Extraordinary cancellation: review its cause"),
            "refused": env._("Cancellation to process by hand"),
        }[self.review_reason]
        self.activity_schedule(
            "mail.mail_activity_data_todo",
            summary=summary,
            note=self.review_note or False,
            user_id=user.id or self.env.uid,
        )

    def _get_review_user(self):
        managers = self.env.ref("sales_team.group_sale_manager").sudo().all_user_ids
        return managers.filtered(
            lambda user: not user.share and self.company_id in user.company_ids
        ).sorted("id")[:1]

    def _send_confirmation(self):
        """Queue the confirmation of ``self`` to the email given: what was
        declared, when, and what comes of it. Kept as the record's
        confirmation (its email is not deleted once sent)."""
        self.ensure_one()
        template = self.env.ref("subscription_close.mail_template_subscription_cancellation")
        mail_id = template.sudo().send_mail(
            self.id, email_layout_xmlid="mail.mail_notification_light"
        )
        self.confirmation_mail_id = mail_id
        self._message_log(body=self.env._("Confirmation emailed to %(email)s.", email=self.email))

    def _get_confirmation_texts(self):
        """What the confirmation says of the outcome of ``self``, in the
        language of the email: a list of paragraphs."""
        self.ensure_one()
        order = self.order_id
        end = format_date(self.env, self.end_date) if self.end_date else ""
        texts = []
        if self.state == "review" and self.review_reason in ("unmatched", "refused"):
            texts.append(
                self.env._(
                    "We could not yet match your declaration with a subscription: we look into "
                    "it and confirm the end of your subscription by email. Nothing more is "
                    "needed from you."
                )
            )
            return texts
        if self.kind == "withdrawal" and self.outcome != "withdrawn":
            texts.append(
                self.env._(
                    "The withdrawal period of your subscription is over: your declaration is "
                    "taken as an ordinary cancellation."
                )
            )
        if self.outcome == "withdrawn":
            texts.append(
                self.env._(
                    "You withdrew from the contract: your subscription %(order)s ended today, "
                    "%(date)s. What you paid for it is credited back to you.",
                    order=order.name,
                    date=end,
                )
            )
        elif self.outcome == "already_closed":
            texts.append(
                self.env._(
                    "Your subscription %(order)s had already ended, on %(date)s.",
                    order=order.name,
                    date=end,
                )
            )
        elif self.outcome == "closed":
            texts.append(
                self.env._(
                    "Your subscription %(order)s ended today, %(date)s.", order=order.name, date=end
                )
            )
        else:
            texts.append(
                self.env._(
                    "Your subscription %(order)s ends on %(date)s: it goes on until that day "
                    "included.",
                    order=order.name,
                    date=end,
                )
            )
            if self.wished_end_date and self.wished_end_date < self.end_date:
                texts.append(order._get_terms_description())
            texts.append(
                self.env._(
                    "Changed your mind? Until then you can keep your subscription from your "
                    "customer account, or by replying to this email."
                )
            )
        if self.state == "review" and self.review_reason == "cause":
            texts.append(
                self.env._(
                    "We review the cause you gave and tell you if your subscription ends "
                    "earlier; in any case it ends on the day above at the latest."
                )
            )
        return [text for text in texts if text]

    def _get_kind_label(self):
        self.ensure_one()
        return dict(self._fields["kind"]._description_selection(self.env))[self.kind]

    def action_mark_done(self):
        """The salesperson handled the declarations of ``self``."""
        self.check_access("write")
        self.filtered(lambda declaration: declaration.state == "review").sudo().write(
            {"state": "done"}
        )
        self.activity_feedback(["mail.mail_activity_data_todo"])
        return True


def _escape_like(value):
    """``value`` for an exact, case-insensitive ``=ilike``."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
