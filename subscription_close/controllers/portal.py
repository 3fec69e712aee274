from odoo import http
from odoo.exceptions import AccessError, MissingError
from odoo.http import request
from odoo.tools import format_date

from odoo.addons.portal.controllers.portal import pager as portal_pager
from odoo.addons.sale.controllers.portal import CustomerPortal

from ..models.sale_order import SubscriptionRefused

# The longest comment or cause a customer may write (a form field).
COMMENT_MAX_LENGTH = 2000


class SubscriptionPortal(CustomerPortal):
    """Customer portal of subscriptions: the list, the subscription block of
    the order page, closing, pausing and resuming a subscription, and the
    retention events of the customers who close (what they were offered, and
    whether they stayed).

    Nothing that comes from the browser is trusted: the order is looked up
    with the portal access rules (or its access token), the reason must be
    one of those the server offers for this very order, and any unexpected
    field refuses the request. Refusals change nothing and say why on the
    page."""

    # ------------------------------------------------------------------
    # Home and list
    # ------------------------------------------------------------------

    def _prepare_home_portal_values(self, counters):
        values = super()._prepare_home_portal_values(counters)
        if "subscription_count" in counters:
            SaleOrder = request.env["sale.order"]
            partner = request.env.user.partner_id
            values["subscription_count"] = (
                SaleOrder.search_count(self._prepare_subscriptions_domain(partner))
                if SaleOrder.has_access("read")
                else 0
            )
        return values

    def _prepare_subscriptions_domain(self, partner):
        return [
            ("partner_id", "child_of", [partner.commercial_partner_id.id]),
            ("is_subscription", "=", True),
            ("subscription_state", "in", ("3_progress", "4_paused", "6_churn")),
        ]

    def _get_subscription_searchbar_sortings(self):
        return {
            "date": {"label": request.env._("Start Date"), "order": "start_date desc, id desc"},
            "name": {"label": request.env._("Reference"), "order": "name asc, id asc"},
            "next_invoice": {
                "label": request.env._("Next Invoice Date"),
                "order": "next_invoice_date asc, id asc",
            },
            "state": {"label": request.env._("Status"), "order": "subscription_state asc, id desc"},
        }

    @http.route(
        ["/my/subscriptions", "/my/subscriptions/page/<int:page>"],
        type="http",
        auth="user",
        website=True,
        readonly=True,
    )
    def portal_my_subscriptions(self, page=1, sortby=None, **kw):
        SaleOrder = request.env["sale.order"]
        values = self._prepare_portal_layout_values()
        partner = request.env.user.partner_id
        domain = self._prepare_subscriptions_domain(partner)
        sortings = self._get_subscription_searchbar_sortings()
        if sortby not in sortings:
            sortby = "date"
        can_read = SaleOrder.has_access("read")
        pager = portal_pager(
            url="/my/subscriptions",
            url_args={"sortby": sortby},
            total=SaleOrder.search_count(domain) if can_read else 0,
            page=page,
            step=self._items_per_page,
        )
        subscriptions = (
            SaleOrder.search(
                domain,
                order=sortings[sortby]["order"],
                limit=self._items_per_page,
                offset=pager["offset"],
            )
            if can_read
            else SaleOrder
        )
        request.session["my_orders_history"] = subscriptions.ids[:100]
        values.update(
            {
                "subscriptions": subscriptions.sudo(),
                "page_name": "subscription",
                "pager": pager,
                "default_url": "/my/subscriptions",
                "searchbar_sortings": sortings,
                "sortby": sortby,
            }
        )
        return request.render("subscription_close.portal_my_subscriptions", values)

    # ------------------------------------------------------------------
    # Order page
    # ------------------------------------------------------------------

    def _sale_order_get_page_view_values(
        self, order_sudo, access_token, values, history_session_key, **kwargs
    ):
        values = super()._sale_order_get_page_view_values(
            order_sudo, access_token, values, history_session_key, **kwargs
        )
        if order_sudo.is_subscription:
            closable = order_sudo._is_portal_closable()
            values["close_reasons"] = (
                order_sudo._get_portal_close_reasons()
                if closable
                else order_sudo.env["sale.order.close.reason"]
            )
            values["portal_close_date"] = closable and order_sudo._get_portal_close_date()
            values["portal_offers_beside"] = closable and order_sudo._portal_offers_beside()
            values["portal_close_terms"] = closable and order_sudo._get_terms_description()
            retention_reason = closable and order_sudo._find_portal_close_reason(
                _to_int(kwargs.get("retention_reason"))
            )
            values["retention_reason"] = (
                retention_reason
                if retention_reason and retention_reason._has_retention_offer()
                else False
            )
            values["subscription_alert"] = self._get_subscription_alert(
                order_sudo, kwargs.get("subscription_message"), values["retention_reason"]
            )
            values["portal_keepable"] = order_sudo._is_portal_keepable()
            values["pause_choices"] = self._get_subscription_pause_choices(order_sudo)
            values["portal_resumable"] = order_sudo._is_portal_resumable()
            values["payment_tokens"] = order_sudo._get_portal_payment_tokens()
            values["subscription_contact"] = (
                self._get_subscription_contact(order_sudo)
                if order_sudo.subscription_state == "3_progress"
                and not closable
                and not values["portal_keepable"]
                else False
            )
        return values

    def _get_subscription_pause_choices(self, order_sudo):
        """The pauses offered on the order page, with their labels: ``[{months,
        resume_date, label, button}]`` (empty if the customer may not pause)."""
        env = request.env
        choices = []
        for months, resume_date in order_sudo._get_portal_pause_options():
            date = format_date(env, resume_date)
            if months == 1:
                label = env._("1 month, until %(date)s", date=date)
                button = env._("Pause for 1 month")
            else:
                label = env._("%(count)s months, until %(date)s", count=months, date=date)
                button = env._("Pause for %(count)s months", count=months)
            choices.append(
                {"months": months, "resume_date": resume_date, "label": label, "button": button}
            )
        return choices

    def _get_subscription_contact(self, order_sudo):
        """Who a customer who may not close (or keep) this subscription from
        the portal should ask: its salesperson when they have an email or a
        phone, else the company."""
        salesperson = order_sudo.user_id.partner_id
        if salesperson.email or salesperson.phone:
            return salesperson
        return order_sudo.company_id.partner_id

    def _get_subscription_alert_texts(self, order_sudo):
        """``{code: text}``: what the order page says after an action of the
        customer (``code``, from the model or the form), the text chosen
        here, never taken from the browser."""
        env = request.env
        texts = {
            "closed": env._("Your subscription is closed. Thank you for having been with us."),
            "retention": env._("Before you go, we have something for you:"),
            "kept": env._("Your subscription goes on. Thank you for staying with us."),
            "not_closing": env._("This subscription has no scheduled closing."),
            "not_keepable": env._(
                "The closing of this subscription cannot be cancelled from the portal: "
                "please contact us."
            ),
            "already_closed": env._("This subscription is already closed."),
            "not_closable": env._(
                "This subscription cannot be closed from the portal: please contact us."
            ),
            "invalid_reason": env._("Please choose one of the proposed reasons."),
            "invalid_request": env._("The request was not understood: nothing was changed."),
            "resumed": env._("Your subscription is active again. Welcome back!"),
            "already_paused": env._("This subscription is already paused."),
            "not_paused": env._("This subscription is not paused."),
            "pause_closing": env._(
                "The closing of this subscription is scheduled, so it cannot be paused: keep "
                "your subscription first if you would rather pause it."
            ),
            "not_pausable": env._(
                "This subscription cannot be paused from the portal: please contact us."
            ),
            "not_resumable": env._(
                "This subscription cannot be resumed from the portal: please contact us."
            ),
            "invalid_duration": env._("Please choose one of the proposed pause lengths."),
            "card_set": env._("Your subscription is now paid with the card you chose."),
            "invalid_card": env._("Please choose one of your saved cards."),
            "not_running": env._("This subscription is not in progress."),
            "comment_required": env._("Please tell us more in the comment."),
        }
        if order_sudo.is_closing:
            texts["closing"] = env._(
                "Your subscription will close on %(date)s. Until then it goes on, and you "
                "can still keep it.",
                date=format_date(env, order_sudo.end_date),
            )
        if order_sudo.subscription_state == "4_paused":
            texts["paused"] = (
                env._(
                    "Your subscription is paused until %(date)s: nothing is invoiced until then, "
                    "and you can resume it at any time.",
                    date=format_date(env, order_sudo.resume_date),
                )
                if order_sudo.resume_date
                else env._("Your subscription is paused: nothing is invoiced until you resume it.")
            )
        return texts

    def _get_subscription_alert(self, order_sudo, code, retention_reason=False):
        """The (level, text) shown on the order page for ``code``."""
        if code == "retention" and not retention_reason:
            return None
        text = self._get_subscription_alert_texts(order_sudo).get(code)
        if not text:
            return None
        level = {
            "closed": "success",
            "closing": "success",
            "card_set": "success",
            "kept": "success",
            "paused": "success",
            "resumed": "success",
            "retention": "info",
            "already_closed": "warning",
            "not_closing": "warning",
            "already_paused": "warning",
            "not_paused": "warning",
        }.get(code, "danger")
        return level, text

    # ------------------------------------------------------------------
    # The customer's actions: read the form, let the subscription decide
    # ------------------------------------------------------------------

    def _subscription_redirect(self, order_sudo, code, retention_reason=None):
        query = f"&subscription_message={code}"
        if retention_reason:
            query += f"&retention_reason={int(retention_reason)}"
        return request.redirect(order_sudo.get_portal_url(query_string=query))

    def _subscription_check_access(self, order_id, access_token):
        """The subscription ``order_id`` if the visitor may act on it,
        through the portal access rules or its access token; else ``None``.
        In sudo, but as the visitor (a portal or public user): the changes it
        makes are the customer's (see ``sale.order._track_subtype``)."""
        try:
            order_sudo = self._document_check_access(
                "sale.order", order_id, access_token=access_token
            )
        except (AccessError, MissingError):
            return None
        if not order_sudo.is_subscription:
            return None
        return order_sudo.with_user(request.env.user).sudo()

    def _subscription_author(self, order_sudo):
        if request.env.user._is_public():
            return order_sudo.partner_id
        return request.env.user.partner_id

    def _subscription_action(self, order_id, access_token, valid, action):
        """The one preamble of every action of the customer: the order looked
        up with the portal rules or its token (else 403), the form refused
        unless ``valid`` (nothing but the expected fields, with expected
        values), then ``action(order_sudo, author)``, whose result code (or
        refusal code) is shown on the order page. A refused request changes
        nothing and says why."""
        order_sudo = self._subscription_check_access(order_id, access_token)
        if not order_sudo:
            return request.render(
                "subscription_close.portal_subscription_error",
                {"page_name": "subscription"},
                status=403,
            )
        if not valid:
            return self._subscription_redirect(order_sudo, "invalid_request")
        try:
            with request.env.cr.savepoint():
                return action(order_sudo, self._subscription_author(order_sudo))
        except SubscriptionRefused as refusal:
            return self._subscription_redirect(order_sudo, refusal.code or "invalid_request")

    @http.route(
        "/my/subscriptions/<int:order_id>/close",
        type="http",
        auth="public",
        methods=["POST"],
        website=True,
    )
    def portal_subscription_close(
        self,
        order_id,
        access_token=None,
        close_reason_id=None,
        retention_acknowledged=None,
        close_comment=None,
        **kwargs,
    ):
        reason_id = _to_int(close_reason_id)

        def close(order_sudo, author):
            code = order_sudo._portal_close(
                reason_id, bool(retention_acknowledged), author, comment=close_comment
            )
            retention = reason_id if code == "retention" else None
            return self._subscription_redirect(order_sudo, code, retention_reason=retention)

        return self._subscription_action(
            order_id,
            access_token,
            not kwargs
            and retention_acknowledged in (None, "1")
            and len(close_comment or "") <= COMMENT_MAX_LENGTH,
            close,
        )

    @http.route(
        "/my/subscriptions/<int:order_id>/stay",
        type="http",
        auth="public",
        methods=["POST"],
        website=True,
    )
    def portal_subscription_stay(self, order_id, access_token=None, close_reason_id=None, **kwargs):
        """ "Keep my subscription" after the retention offer of a reason."""
        reason_id = _to_int(close_reason_id)
        return self._subscription_action(
            order_id,
            access_token,
            not kwargs,
            lambda order_sudo, author: self._subscription_redirect(
                order_sudo, order_sudo._portal_stay(reason_id, author)
            ),
        )

    @http.route(
        "/my/subscriptions/<int:order_id>/pause",
        type="http",
        auth="public",
        methods=["POST"],
        website=True,
    )
    def portal_subscription_pause(
        self,
        order_id,
        access_token=None,
        pause_months=None,
        origin=None,
        close_reason_id=None,
        close_comment=None,
        **kwargs,
    ):
        """Pause a subscription for one of the lengths offered, from the
        Pause popup, or instead of closing it from the Close popup
        (``origin=close``, with the reason picked there if any; the comment
        written there is for a closing, not kept)."""
        instead_of_closing = origin == "close"

        def pause(order_sudo, author):
            code = order_sudo._portal_pause(
                _to_int(pause_months),
                author,
                reason_id=_to_int(close_reason_id) if close_reason_id else None,
                instead_of_closing=instead_of_closing,
            )
            return self._subscription_redirect(order_sudo, code)

        return self._subscription_action(
            order_id,
            access_token,
            not kwargs
            and origin in (None, "close")
            and (instead_of_closing or not (close_reason_id or close_comment))
            and len(close_comment or "") <= COMMENT_MAX_LENGTH,
            pause,
        )

    @http.route(
        "/my/subscriptions/<int:order_id>/resume",
        type="http",
        auth="public",
        methods=["POST"],
        website=True,
    )
    def portal_subscription_resume(self, order_id, access_token=None, **kwargs):
        """Resume a paused subscription now ("Resume now")."""
        return self._subscription_action(
            order_id,
            access_token,
            not kwargs,
            lambda order_sudo, author: self._subscription_redirect(
                order_sudo, order_sudo._portal_resume(author)
            ),
        )

    @http.route(
        "/my/subscriptions/<int:order_id>/card",
        type="http",
        auth="public",
        methods=["POST"],
        website=True,
    )
    def portal_subscription_card(
        self, order_id, access_token=None, payment_token_id=None, **kwargs
    ):
        """Pay the subscription with another of the customer's saved cards."""
        token_id = _to_int(payment_token_id)
        return self._subscription_action(
            order_id,
            access_token,
            not kwargs,
            lambda order_sudo, author: self._subscription_redirect(
                order_sudo, order_sudo._portal_set_card(token_id, author)
            ),
        )

    @http.route(
        "/my/subscriptions/<int:order_id>/keep",
        type="http",
        auth="public",
        methods=["POST"],
        website=True,
    )
    def portal_subscription_keep(self, order_id, access_token=None, **kwargs):
        """Cancel the scheduled closing of a subscription ("Keep my subscription")."""
        return self._subscription_action(
            order_id,
            access_token,
            not kwargs,
            lambda order_sudo, author: self._subscription_redirect(
                order_sudo, order_sudo._portal_keep(author)
            ),
        )


def _to_int(value):
    """``value`` from a form as an integer (written as the page writes it:
    digits only, no sign, no leading zero), or ``None``."""
    if isinstance(value, str) and value.isdecimal() and str(int(value)) == value:
        return int(value)
    return None
