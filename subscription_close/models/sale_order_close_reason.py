from urllib.parse import urlsplit

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import SQL
from odoo.tools.mail import is_html_empty

from .sale_order import SubscriptionRefused


class SaleOrderCloseReason(models.Model):
    _name = "sale.order.close.reason"
    _description = "Close Reason"
    _order = "sequence, id"

    name = fields.Char(string="Reason", required=True, translate=True)
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True)
    visible_in_portal = fields.Boolean(
        string="Visible in portal",
        default=True,
        help="Customers may pick this reason when they close a subscription from the portal.",
    )
    is_protected = fields.Boolean(
        string="Protected",
        readonly=True,
        copy=False,
        help="System reason used by the addon itself: it cannot be deleted nor archived "
        "and is never offered to customers.",
    )
    company_id = fields.Many2one(
        "res.company",
        index=True,
        help="Leave empty to offer the reason in every company.",
    )
    churn_type = fields.Selection(
        [("voluntary", "Voluntary"), ("involuntary", "Involuntary")],
        string="Churn",
        required=True,
        default="voluntary",
        help="Voluntary: the customer's choice (the churn analysis counts it apart from what "
        "the company or the system closes: an expired end date, an unpaid invoice, a failed "
        "payment).",
    )
    comment_required = fields.Boolean(
        help="Closing with this reason asks for a comment (in the Close popup and the portal).",
    )
    retention_message = fields.Html(
        translate=True,
        sanitize=True,
        sanitize_attributes=True,
        help="Shown to a customer who picks this reason in the portal, before they confirm "
        "the closing: a last offer to keep them (e.g. a cheaper plan).",
    )
    retention_button_text = fields.Char(
        string="Retention Button",
        translate=True,
        help="Text of the button shown with the retention message (e.g. Talk to us).",
    )
    retention_url = fields.Char(
        string="Retention Link",
        help="Where the retention button leads: a page of this website (e.g. /my/home), an "
        "email address (mailto:sales@example.com) or an https:// address.",
    )
    subscription_count = fields.Integer(
        string="Subscriptions",
        compute="_compute_subscription_count",
    )

    @api.constrains("name")
    def _check_name_unique_per_language(self):
        """Two reasons may not show the same name (case-insensitive) in any
        installed language, fallback to English included."""
        langs = [code for code, _name in self.env["res.lang"].get_installed()]
        self.flush_model(["name"])
        self.env.cr.execute(
            SQL(
                """
                SELECT reason.id, other.id
                  FROM sale_order_close_reason reason
                  JOIN sale_order_close_reason other ON other.id != reason.id
            CROSS JOIN unnest(%(langs)s::text[]) AS lang(code)
                 WHERE reason.id IN %(ids)s
                   AND lower(COALESCE(reason.name->>lang.code, reason.name->>'en_US'))
                     = lower(COALESCE(other.name->>lang.code, other.name->>'en_US'))
                 LIMIT 1
                """,
                langs=langs,
                ids=tuple(self.ids),
            )
        )
        duplicate = self.env.cr.fetchone()
        if duplicate:
            reason = self.browse(duplicate[0])
            raise ValidationError(
                self.env._(
                    'A close reason named "%(name)s" already exists (it may be archived).',
                    name=reason.name,
                )
            )

    @api.constrains("retention_url")
    def _check_retention_url(self):
        for reason in self:
            url = (reason.retention_url or "").strip()
            if url and not _is_safe_link(url):
                raise ValidationError(
                    self.env._(
                        'The retention link "%(url)s" must be a page of this website '
                        "(starting with /), a mailto: address or an http(s):// address.",
                        url=url,
                    )
                )

    def _get_churned_domain(self):
        """The subscriptions closed with the reasons of ``self``: churned ones
        only, as in the churn analysis (a subscription whose closing is only
        scheduled carries its reason but has not churned yet)."""
        return [("close_reason_id", "in", self.ids), ("subscription_state", "=", "6_churn")]

    def _compute_subscription_count(self):
        counts = dict(
            self.env["sale.order"]._read_group(
                self._get_churned_domain(),
                ["close_reason_id"],
                ["__count"],
            )
        )
        for reason in self:
            reason.subscription_count = counts.get(reason, 0)

    def _has_retention_offer(self):
        self.ensure_one()
        return not is_html_empty(self.retention_message)

    def _check_usable_for(self, orders):
        """Raise a ``UserError`` unless ``self`` may close ``orders``."""
        if len(self) != 1:
            raise UserError(self.env._("Choose one close reason."))
        if not self.active:
            raise UserError(
                self.env._(
                    'The close reason "%(reason)s" is archived: choose another one.',
                    reason=self.name,
                )
            )
        if self.company_id and orders.search_count(
            [("id", "in", orders.ids), ("company_id", "!=", self.company_id.id)], limit=1
        ):
            raise UserError(
                self.env._(
                    'The close reason "%(reason)s" belongs to %(company)s only.',
                    reason=self.name,
                    company=self.company_id.name,
                )
            )

    def _is_bound_by_terms(self):
        """Whether a closing with the reason ``self`` keeps to the notice
        period and the minimum term of the plan: the customer's choice does
        (a voluntary reason), save a withdrawal; what the company or the
        system closes (an involuntary reason) does not."""
        self.ensure_one()
        return self.churn_type == "voluntary" and self.id != self.env[
            "ir.model.data"
        ]._xmlid_to_res_id("subscription_close.close_reason_withdrawal", raise_if_not_found=False)

    def _is_declared_by_customer(self):
        """Whether the reason ``self`` is the one of a declaration of the
        cancellation page (a cancellation or a withdrawal), whose emailed
        confirmation tells the customer about the closing."""
        self.ensure_one()
        IrModelData = self.env["ir.model.data"]
        return self.id in (
            IrModelData._xmlid_to_res_id(xmlid, raise_if_not_found=False)
            for xmlid in (
                "subscription_close.close_reason_cancelled_online",
                "subscription_close.close_reason_withdrawal",
            )
        )

    def _check_comment(self, comment):
        """Raise a ``SubscriptionRefused`` (code ``comment_required``) if
        ``self`` asks for a comment and ``comment`` is empty."""
        if self.comment_required and not comment:
            raise SubscriptionRefused(
                self.env._(
                    'The close reason "%(reason)s" asks for a comment: please write one.',
                    reason=self.name,
                ),
                code="comment_required",
            )

    @api.ondelete(at_uninstall=False)
    def _unlink_except_protected(self):
        protected = self.filtered("is_protected")
        if protected:
            raise UserError(
                self.env._(
                    "System close reasons cannot be deleted: %(reasons)s.",
                    reasons=", ".join(protected.mapped("name")),
                )
            )

    @api.model_create_multi
    def create(self, vals_list):
        if any(vals.get("is_protected") for vals in vals_list) and not self.env.su:
            raise UserError(self.env._("Only the system can create protected close reasons."))
        return super().create(vals_list)

    def write(self, vals):
        if "is_protected" in vals and not self.env.su:
            raise UserError(self.env._("Only the system can protect or unprotect a close reason."))
        if vals.get("active") is False:
            protected = self.filtered("is_protected")
            if protected:
                raise UserError(
                    self.env._(
                        "System close reasons cannot be archived: %(reasons)s.",
                        reasons=", ".join(protected.mapped("name")),
                    )
                )
        return super().write(vals)

    def action_open_subscriptions(self):
        """The subscriptions closed with this reason, in the churn analysis."""
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "subscription_close.sale_subscription_churn_action"
        )
        action["domain"] = [("is_subscription", "=", True), *self._get_churned_domain()]
        action["context"] = {"create": False, "pivot_measures": ["__count", "churned_mrr"]}
        action["display_name"] = self.env._("Churn: %(reason)s", reason=self.name)
        # The subscriptions first; the graph and pivot are one click away.
        action["views"] = sorted(action["views"], key=lambda view: view[1] != "list")
        return action


def _is_safe_link(url):
    """A link a customer may be sent to: a path of this website, an email
    address (``mailto:``) or an http(s) address; never ``javascript:``,
    ``data:`` or a protocol-relative URL."""
    parsed = urlsplit(url)
    if parsed.scheme == "mailto":
        return "@" in parsed.path
    if parsed.scheme:
        return parsed.scheme in ("http", "https") and bool(parsed.netloc)
    return url.startswith("/") and not url.startswith("//")
