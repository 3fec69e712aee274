from odoo import http
from odoo.exceptions import AccessError, MissingError
from odoo.http import request
from odoo.tools import format_date

from odoo.addons.portal.controllers.portal import pager as portal_pager
from odoo.addons.sale.controllers.portal import CustomerPortal


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
            retention_reason = closable and self._subscription_portal_reason(
                order_sudo, kwargs.get("retention_reason")
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

    def _get_subscription_pause_alert_text(self, order_sudo, code):
        """The text of the alerts of pausing and resuming, or ``None``."""
        env = request.env
        if code == "paused" and order_sudo.subscription_state == "4_paused":
            if order_sudo.resume_date:
                return env._(
                    "Your subscription is paused until %(date)s: nothing is invoiced until then, "
                    "and you can resume it at any time.",
                    date=format_date(env, order_sudo.resume_date),
                )
            return env._("Your subscription is paused: nothing is invoiced until you resume it.")
        if code == "resumed":
            return env._("Your subscription is active again. Welcome back!")
        if code == "already_paused":
            return env._("This subscription is already paused.")
        if code == "not_paused":
            return env._("This subscription is not paused.")
        if code == "pause_closing":
            return env._(
                "The closing of this subscription is scheduled, so it cannot be paused: keep "
                "your subscription first if you would rather pause it."
            )
        if code == "not_pausable":
            return env._("This subscription cannot be paused from the portal: please contact us.")
        if code == "not_resumable":
            return env._("This subscription cannot be resumed from the portal: please contact us.")
        if code == "invalid_duration":
            return env._("Please choose one of the proposed pause lengths.")
        return None

    def _get_subscription_contact(self, order_sudo):
        """Who a customer who may not close (or keep) this subscription from
        the portal should ask: its salesperson when they have an email or a
        phone, else the company."""
        salesperson = order_sudo.user_id.partner_id
        if salesperson.email or salesperson.phone:
            return salesperson
        return order_sudo.company_id.partner_id

    def _get_subscription_alert(self, order_sudo, code, retention_reason=False):
        """The (level, text) shown on the order page for ``code``; the text is
        chosen here, never taken from the browser."""
        env = request.env
        text = self._get_subscription_pause_alert_text(order_sudo, code)
        if text:
            pass
        elif code == "closed":
            text = env._("Your subscription is closed. Thank you for having been with us.")
        elif code == "closing" and order_sudo.is_closing:
            text = env._(
                "Your subscription will close on %(date)s. Until then it goes on, and you "
                "can still keep it.",
                date=format_date(env, order_sudo.end_date),
            )
        elif code == "retention" and retention_reason:
            text = env._("Before you go, we have something for you:")
        elif code == "kept":
            text = env._("Your subscription goes on. Thank you for staying with us.")
        elif code == "not_closing":
            text = env._("This subscription has no scheduled closing.")
        elif code == "not_keepable":
            text = env._(
                "The closing of this subscription cannot be cancelled from the portal: "
                "please contact us."
            )
        elif code == "already_closed":
            text = env._("This subscription is already closed.")
        elif code == "not_closable":
            text = env._("This subscription cannot be closed from the portal: please contact us.")
        elif code == "invalid_reason":
            text = env._("Please choose one of the proposed reasons.")
        elif code == "invalid_request":
            text = env._("The request was not understood: nothing was changed.")
        else:
            return None
        level = {
            "closed": "success",
            "closing": "success",
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
    # Closing
    # ------------------------------------------------------------------

    def _subscription_redirect(self, order_sudo, code, retention_reason=None):
        query = f"&subscription_message={code}"
        if retention_reason:
            query += f"&retention_reason={int(retention_reason)}"
        return request.redirect(order_sudo.get_portal_url(query_string=query))

    def _subscription_check_access(self, order_id, access_token):
        """The subscription ``order_id`` (sudo) if the visitor may act on it,
        through the portal access rules or its access token; else ``None``."""
        try:
            order_sudo = self._document_check_access(
                "sale.order", order_id, access_token=access_token
            )
        except (AccessError, MissingError):
            return None
        return order_sudo if order_sudo.is_subscription else None

    def _subscription_access_error(self):
        return request.render(
            "subscription_close.portal_subscription_error",
            {"page_name": "subscription"},
            status=403,
        )

    def _subscription_author(self, order_sudo):
        if request.env.user._is_public():
            return order_sudo.partner_id
        return request.env.user.partner_id

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
        **kwargs,
    ):
        order_sudo = self._subscription_check_access(order_id, access_token)
        if not order_sudo:
            return self._subscription_access_error()
        if kwargs or retention_acknowledged not in (None, "1"):
            return self._subscription_redirect(order_sudo, "invalid_request")
        if order_sudo.subscription_state == "6_churn":
            return self._subscription_redirect(order_sudo, "already_closed")
        if not order_sudo._is_portal_closable():
            return self._subscription_redirect(order_sudo, "not_closable")
        reason = self._subscription_portal_reason(order_sudo, close_reason_id)
        if not reason:
            return self._subscription_redirect(order_sudo, "invalid_reason")
        has_offer = reason._has_retention_offer()
        offer = self._subscription_retention_offer(order_sudo, reason)
        if has_offer and not retention_acknowledged:
            # The offer must be seen before closing: show it, change nothing.
            self._subscription_retention_log(order_sudo, None, reason, offer)
            return self._subscription_redirect(order_sudo, "retention", retention_reason=reason.id)
        order_sudo._action_close(
            reason,
            {order_sudo.id: order_sudo._get_portal_close_date()},
            author=self._subscription_author(order_sudo),
            retention_shown=has_offer,
        )
        self._subscription_retention_log(order_sudo, "closed", reason, offer)
        return self._subscription_redirect(
            order_sudo, "closing" if order_sudo.is_closing else "closed"
        )

    @http.route(
        "/my/subscriptions/<int:order_id>/stay",
        type="http",
        auth="public",
        methods=["POST"],
        website=True,
    )
    def portal_subscription_stay(self, order_id, access_token=None, close_reason_id=None, **kwargs):
        """ "Keep my subscription" after the retention offer of a reason:
        nothing changes but the retention analysis, which counts the customer
        as kept."""
        order_sudo = self._subscription_check_access(order_id, access_token)
        if not order_sudo:
            return self._subscription_access_error()
        if kwargs:
            return self._subscription_redirect(order_sudo, "invalid_request")
        if order_sudo.subscription_state == "6_churn":
            return self._subscription_redirect(order_sudo, "already_closed")
        if not order_sudo._is_portal_closable():
            return self._subscription_redirect(order_sudo, "not_closable")
        reason = self._subscription_portal_reason(order_sudo, close_reason_id)
        if not (reason and reason._has_retention_offer()):
            return self._subscription_redirect(order_sudo, "invalid_reason")
        offer = self._subscription_retention_offer(order_sudo, reason)
        self._subscription_retention_log(order_sudo, "kept", reason, offer)
        return self._subscription_redirect(order_sudo, "kept")

    # ------------------------------------------------------------------
    # Pausing
    # ------------------------------------------------------------------

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
        **kwargs,
    ):
        """Pause a subscription for one of the lengths offered, from the
        Pause popup, or instead of closing it from the Close popup
        (``origin=close``, with the reason picked there if any: the
        retention analysis counts the customer as paused instead)."""
        order_sudo = self._subscription_check_access(order_id, access_token)
        if not order_sudo:
            return self._subscription_access_error()
        from_close = origin == "close"
        if kwargs or origin not in (None, "close") or (close_reason_id and not from_close):
            return self._subscription_redirect(order_sudo, "invalid_request")
        if order_sudo.subscription_state == "6_churn":
            return self._subscription_redirect(order_sudo, "already_closed")
        if order_sudo.subscription_state == "4_paused":
            return self._subscription_redirect(order_sudo, "already_paused")
        if order_sudo.is_closing and order_sudo.plan_id.user_pausable:
            return self._subscription_redirect(order_sudo, "pause_closing")
        if not order_sudo._is_portal_pausable():
            return self._subscription_redirect(order_sudo, "not_pausable")
        resume_dates = {
            str(months): resume_date
            for months, resume_date in order_sudo._get_portal_pause_options()
        }
        if pause_months not in resume_dates:
            return self._subscription_redirect(order_sudo, "invalid_duration")
        reason = order_sudo.env["sale.order.close.reason"]
        if close_reason_id:
            reason = self._subscription_portal_reason(order_sudo, close_reason_id)
            if not reason:
                return self._subscription_redirect(order_sudo, "invalid_reason")
        offer = from_close and self._subscription_retention_offer(order_sudo, reason)
        order_sudo._action_pause(
            {order_sudo.id: resume_dates[pause_months]},
            author=self._subscription_author(order_sudo),
        )
        if from_close:
            self._subscription_retention_log(order_sudo, "paused", reason, offer)
        return self._subscription_redirect(order_sudo, "paused")

    @http.route(
        "/my/subscriptions/<int:order_id>/resume",
        type="http",
        auth="public",
        methods=["POST"],
        website=True,
    )
    def portal_subscription_resume(self, order_id, access_token=None, **kwargs):
        """Resume a paused subscription now ("Resume now")."""
        order_sudo = self._subscription_check_access(order_id, access_token)
        if not order_sudo:
            return self._subscription_access_error()
        if kwargs:
            return self._subscription_redirect(order_sudo, "invalid_request")
        if order_sudo.subscription_state != "4_paused":
            return self._subscription_redirect(order_sudo, "not_paused")
        if not order_sudo._is_portal_resumable():
            return self._subscription_redirect(order_sudo, "not_resumable")
        order_sudo._action_resume(author=self._subscription_author(order_sudo))
        return self._subscription_redirect(order_sudo, "resumed")

    # ------------------------------------------------------------------
    # Retention events
    # ------------------------------------------------------------------

    def _subscription_retention_offer(self, order_sudo, reason):
        """What the Close popup offers the customer of ``order_sudo`` who
        picked ``reason`` to keep them: the reason's retention offer, the
        pause (when the plan allows it), both, or nothing (``False``)."""
        has_offer = bool(reason) and reason._has_retention_offer()
        pausable = order_sudo._is_portal_pausable()
        if has_offer and pausable:
            return "offer_pause"
        if has_offer:
            return "offer"
        return "pause" if pausable else False

    def _subscription_retention_log(self, order_sudo, outcome, reason, offer):
        """Record in the retention analysis that the customer started to
        close ``order_sudo`` with ``reason``, was shown ``offer`` (if any) and
        ``outcome`` (``kept``, ``paused``, ``closed``, or ``None`` while they
        have not decided)."""
        steps = ["started"]
        if offer:
            steps.append("shown")
        if outcome:
            steps.append(outcome)
        request.env["sale.subscription.retention.event"].sudo()._log(
            order_sudo, steps, close_reason=reason, offer=offer
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
        order_sudo = self._subscription_check_access(order_id, access_token)
        if not order_sudo:
            return self._subscription_access_error()
        if kwargs:
            return self._subscription_redirect(order_sudo, "invalid_request")
        if not order_sudo.is_closing:
            return self._subscription_redirect(order_sudo, "not_closing")
        if not order_sudo._is_portal_keepable():
            return self._subscription_redirect(order_sudo, "not_keepable")
        order_sudo._action_cancel_close(author=self._subscription_author(order_sudo))
        return self._subscription_redirect(order_sudo, "kept")

    def _subscription_portal_reason(self, order_sudo, close_reason_id):
        """The reason the customer picked, if it is one the portal offers for
        this order; an empty recordset otherwise."""
        reasons = order_sudo._get_portal_close_reasons()
        try:
            reason_id = int(close_reason_id)
        except (TypeError, ValueError):
            return reasons.browse()
        return reasons.filtered(lambda reason: reason.id == reason_id)
