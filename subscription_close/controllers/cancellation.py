import pytz

from odoo import fields, http
from odoo.http import request
from odoo.tools import consteq, email_normalize
from odoo.tools.misc import hmac

from ..models.sale_subscription_cancellation import CANCELLATION_KINDS
from .portal import COMMENT_MAX_LENGTH, _to_int

# The longest reference a customer may type.
REFERENCE_MAX_LENGTH = 64
# The fields of the cancellation form: any other refuses the request.
FORM_FIELDS = {
    "csrf_token",
    "order_reference",
    "email",
    "kind",
    "cause",
    "wished_end_date",
    "comment",
    "tz",
}


class SubscriptionCancellation(http.Controller):
    """The public cancellation page: anyone reaches it without signing in,
    from the footer of every page, the subscription emails and the
    subscription page, and declares a cancellation (or a withdrawal) with
    one form whose confirm button is on the first screen.

    The page never tells whether a reference or an email exists: a valid
    form is recorded as it is (``sale.subscription.cancellation._declare``)
    and answered with the same page, the work of matching it done later by
    a scheduled action. Only a signed-in customer, or a visitor coming with
    a subscription's access token, sees their subscriptions and the day
    each would end. Refused requests (an invalid form, too many
    declarations) create nothing and say why."""

    @http.route(
        "/subscriptions/cancel",
        type="http",
        auth="public",
        methods=["GET", "POST"],
        website=True,
        sitemap=True,
    )
    def subscription_cancel(self, **kwargs):
        if request.httprequest.method == "POST":
            return self._subscription_cancel_post(kwargs)
        values = self._prepare_cancel_page_values(
            order_id=_to_int(kwargs.get("order_id")),
            access_token=kwargs.get("access_token"),
            form={"kind": kwargs.get("kind") if kwargs.get("kind") in _kinds() else "ordinary"},
        )
        return request.render("subscription_close.subscription_cancel_page", values)

    # ------------------------------------------------------------------
    # The page
    # ------------------------------------------------------------------

    def _get_visitor_subscriptions(self, order_id=None, access_token=None):
        """The subscriptions the visitor may see and cancel: the one of the
        access token, else those of the signed-in customer (through the
        portal access rules), in progress or paused."""
        SaleOrder = request.env["sale.order"]
        if order_id and access_token:
            order_sudo = SaleOrder.sudo().browse(order_id).exists()
            if (
                order_sudo
                and order_sudo.access_token
                and consteq(order_sudo.access_token, access_token)
                and order_sudo.is_subscription
                and order_sudo.subscription_state in ("3_progress", "4_paused")
            ):
                return order_sudo
        user = request.env.user
        if user._is_public() or not SaleOrder.has_access("read"):
            return SaleOrder.sudo()
        return SaleOrder.search(
            [
                ("partner_id", "child_of", [user.partner_id.commercial_partner_id.id]),
                ("is_subscription", "=", True),
                ("subscription_state", "in", ("3_progress", "4_paused")),
            ],
            order="start_date desc, id desc",
        ).sudo()

    def _prepare_cancel_page_values(self, order_id=None, access_token=None, form=None, errors=None):
        subscriptions = self._get_visitor_subscriptions(order_id, access_token)
        form = dict(form or {})
        user = request.env.user
        if not form.get("email"):
            if len(subscriptions) == 1 and access_token:
                form["email"] = subscriptions.partner_id.email or ""
            elif not user._is_public():
                form["email"] = user.partner_id.email or ""
        options = [order._get_cancellation_options() for order in subscriptions]
        if not form.get("order_reference") and len(options) == 1:
            form["order_reference"] = options[0]["order"].name
        return {
            "page_name": "subscription_cancel",
            "options": options,
            "form": form,
            "errors": errors or {},
            "error_texts": self._get_cancel_error_texts(),
            "kinds": self._get_kinds(),
            "company": request.env.company,
            "today": fields.Date.context_today(request.env.user),
            "comment_max_length": COMMENT_MAX_LENGTH,
        }

    def _get_kinds(self):
        """``[(kind, label)]`` in the visitor's language."""
        Cancellation = request.env["sale.subscription.cancellation"]
        return Cancellation._fields["kind"]._description_selection(request.env)

    def _get_cancel_error_texts(self):
        """``{code: text}``: what the page says of a refused form."""
        env = request.env
        return {
            "required": env._("Please fill in this field."),
            "invalid": env._("Please check this field."),
            "invalid_request": env._("The request was not understood: nothing was sent."),
            "too_many": env._(
                "Too many cancellations were sent from here or for this reference today: nothing "
                "was sent. Please try again later, or write to us."
            ),
        }

    # ------------------------------------------------------------------
    # The declaration
    # ------------------------------------------------------------------

    def _subscription_cancel_post(self, kwargs):
        form, errors = self._read_cancel_form(kwargs)
        if errors:
            values = self._prepare_cancel_page_values(form=form, errors=errors)
            return request.render("subscription_close.subscription_cancel_page", values, status=400)
        Cancellation = request.env["sale.subscription.cancellation"]
        client_key = hmac(
            request.env(su=True), "subscription_close.cancellation", request.httprequest.remote_addr
        )
        # The signed-in customer's own subscription (by the portal rules; an
        # access token is not posted back): never refused, matched at once.
        held = self._get_visitor_subscriptions().filtered(
            lambda order: order.name.casefold() == form["order_reference"].casefold()
        )[:1]
        if not held and Cancellation._get_rate_refusal(client_key, form["email"]):
            values = self._prepare_cancel_page_values(form=form, errors={"form": "too_many"})
            return request.render("subscription_close.subscription_cancel_page", values, status=429)
        user = request.env.user
        declaration = Cancellation._declare(
            {
                "order_reference": form["order_reference"],
                "email": form["email"],
                "kind": form["kind"],
                "cause": form["cause"] or False,
                "wished_end_date": form["wished_end_date"] or False,
                "comment": form["comment"] or False,
                "customer_tz": form["tz"] or False,
                "lang": request.lang.code,
                "client_key": client_key,
                "user_id": False if user._is_public() else user.id,
                "company_id": (held.company_id or request.env.company).id,
                "order_id": held.id,
            }
        )
        return request.render(
            "subscription_close.subscription_cancel_received",
            {
                "page_name": "subscription_cancel",
                "declaration": declaration,
                "kinds": dict(self._get_kinds()),
                "company": request.env.company,
            },
        )

    def _read_cancel_form(self, kwargs):
        """``(form, errors)``: the posted form, stripped, and what is wrong
        with it (``{field: code}``), nothing taken on trust."""
        errors = {}
        if set(kwargs) - FORM_FIELDS or any(not isinstance(v, str) for v in kwargs.values()):
            # Another field, or a file posted in place of a text.
            errors["form"] = "invalid_request"
        form = {
            name: kwargs[name].strip() if isinstance(kwargs.get(name), str) else ""
            for name in FORM_FIELDS - {"csrf_token"}
        }
        if not form["order_reference"]:
            errors["order_reference"] = "required"
        elif len(form["order_reference"]) > REFERENCE_MAX_LENGTH:
            errors["order_reference"] = "invalid"
        if not form["email"]:
            errors["email"] = "required"
        elif not email_normalize(form["email"]) or len(form["email"]) > 254:
            errors["email"] = "invalid"
        else:
            form["email"] = email_normalize(form["email"])
        if form["kind"] not in _kinds():
            errors["kind"] = "required"
        if form["kind"] == "extraordinary" and not form["cause"]:
            errors["cause"] = "required"
        if form["kind"] != "extraordinary":
            form["cause"] = ""
        for name in ("cause", "comment"):
            if len(form[name]) > COMMENT_MAX_LENGTH:
                errors[name] = "invalid"
        if form["wished_end_date"]:
            try:
                form["wished_end_date"] = fields.Date.to_date(form["wished_end_date"])
            except ValueError:
                errors["wished_end_date"] = "invalid"
        if form["tz"] not in pytz.all_timezones_set:
            form["tz"] = ""
        return form, errors


def _kinds():
    return {kind for kind, _label in CANCELLATION_KINDS}
