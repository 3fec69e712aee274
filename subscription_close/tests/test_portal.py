import logging
from datetime import date

from freezegun import freeze_time

from odoo.http import Request
from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import SubscriptionPortalCommon

_logger = logging.getLogger(__name__)


@tagged("post_install", "-at_install")
class TestPortalSubscription(SubscriptionPortalCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.subscription = cls._create_subscription()
        cls.other_customer, cls.other_portal_user = cls._create_portal_customer(
            "Bob Other", "sc_portal_other"
        )

    # ------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------

    def _assert_unchanged(self, order, state="3_progress"):
        self.env.invalidate_all()
        self.assertEqual(order.subscription_state, state)
        if state == "3_progress":
            self.assertFalse(order.close_reason_id)
            self.assertFalse(order.end_date)

    def _messages(self, order):
        self.env.invalidate_all()
        return len(order.message_ids)

    # ------------------------------------------------------------------
    # pages
    # ------------------------------------------------------------------

    def test_home_counter(self):
        self._create_subscription(partner=self.other_customer)
        self._login()
        result = self.make_jsonrpc_request("/my/counters", {"counters": ["subscription_count"]})
        self.assertEqual(result["subscription_count"], 1)
        home = self.url_open("/my/home")
        self.assertIn("/my/subscriptions", home.text)

    def test_list(self):
        closed = self._create_subscription()
        self._close(closed, self.reason)
        foreign = self._create_subscription(partner=self.other_customer)
        quotation = self._create_subscription(confirm=False)
        self._login()
        for sortby in ("date", "name", "next_invoice", "state", "bogus"):
            response = self.url_open(f"/my/subscriptions?sortby={sortby}")
            self.assertEqual(response.status_code, 200)
            self.assertIn(self.subscription.name, response.text)
            self.assertIn(closed.name, response.text)
            self.assertNotIn(foreign.name, response.text)
            self.assertNotIn(quotation.name, response.text)
        self.assertIn('data-status="6_churn"', response.text)
        self.assertIn('data-status="3_progress"', response.text)

    def test_list_requires_login(self):
        response = self.url_open("/my/subscriptions", allow_redirects=False)
        self.assertIn(response.status_code, (302, 303))
        self.assertIn("/web/login", response.headers["Location"])

    def test_order_page(self):
        self._login()
        response = self.url_open(self.subscription.get_portal_url())
        self.assertEqual(response.status_code, 200)
        page = response.text
        self.assertIn('id="subscription_info"', page)
        self.assertIn(self.plan_month.name, page)
        self.assertIn('id="o_subscription_close_button"', page)
        self.assertIn("Close subscription", page)
        offered = self.subscription._get_portal_close_reasons()
        self.assertTrue(offered)
        for reason in offered:
            self.assertIn(f'value="{reason.id}"', page)
        for xmlid in ("close_reason_expired", "close_reason_company"):
            reason = self.env.ref(f"subscription_close.{xmlid}")
            self.assertNotIn(f'value="{reason.id}"', page)
        form = page[page.index('id="subscription_close_form"') :]
        form = form[: form.index("</form>")]
        # No free-text reason: the pre-configured reasons, and a comment.
        self.assertEqual(form.count("<textarea"), 1)
        self.assertIn('name="close_comment"', form)
        self.assertNotIn('type="text"', form)

    def test_no_close_button_when_plan_not_closable(self):
        yearly = self._create_subscription(plan=self.plan_year)
        self._login()
        page = self.url_open(yearly.get_portal_url()).text
        self.assertIn('id="subscription_info"', page)
        self.assertNotIn('id="o_subscription_close_button"', page)

    def test_preview_shows_the_customer_page(self):
        action = self.subscription.action_preview_sale_order()
        portal_url = self.subscription.get_portal_url()
        # Preview opens the customer's page; where website_sale is installed,
        # it shows it inside the website's preview frame ("/@" + the page's
        # URL), as it does for any order.
        self.assertEqual(action["url"].removeprefix("/@"), portal_url)
        self.authenticate("admin", "admin")
        page = self.url_open(portal_url).text
        self.assertIn('id="subscription_info"', page)
        self.assertIn('id="o_subscription_close_button"', page)

    def test_italian_portal(self):
        self._serve_italian()
        self._login()
        page = self.url_open(self.subscription.get_portal_url()).text
        for text in ("Chiudi abbonamento", "Invia", "In corso", "Troppo caro", "Piano ricorrente:"):
            self.assertIn(text, page)
        response = self._post_close(self.subscription.id, close_reason_id=self.reason.id)
        page = self.url_open(response.headers["Location"]).text
        self.assertIn(">Chiuso<", page)
        self.assertIn("Il tuo abbonamento è chiuso", page)
        self.assertIn("Abbonamento chiuso da", self._closing_messages(self.subscription).body)

    # ------------------------------------------------------------------
    # closing
    # ------------------------------------------------------------------

    def test_close(self):
        self._login()
        response = self._post_close(self.subscription.id, close_reason_id=self.reason.id)
        self.assertEqual(self._redirect_code(response), "closed")
        self.env.invalidate_all()
        order = self.subscription
        self.assertEqual(order.subscription_state, "6_churn")
        self.assertEqual(order.close_reason_id, self.reason)
        message = self._closing_messages(order)
        self.assertEqual(len(message), 1)
        self.assertEqual(message.author_id, self.customer)
        self.assertIn("Close Reason: Too expensive", message.body)
        page = self.url_open(response.headers["Location"]).text
        self.assertIn('data-status="6_churn"', page)
        self.assertIn(">Closed<", page)
        self.assertIn('id="subscription_alert"', page)
        self.assertIn('id="subscription_close_reason"', page)
        self.assertNotIn('id="o_subscription_close_button"', page)

    def test_close_notifies_the_salesperson(self):
        order = self._create_subscription(user_id=self.user_salesman.id)
        self.assertIn(self.user_salesman.partner_id, order.message_partner_ids)
        self._login()
        self._post_close(order, close_reason_id=self.reason.id)
        message = self._closing_messages(order)
        self.assertIn(self.user_salesman.partner_id, message.notified_partner_ids)
        self.assertNotIn(self.customer, message.notified_partner_ids)

    def test_second_submit_changes_nothing(self):
        self._login()
        self._post_close(self.subscription.id, close_reason_id=self.reason.id)
        messages = self._messages(self.subscription)
        other_reason = self.env.ref("subscription_close.close_reason_other")
        response = self._post_close(self.subscription.id, close_reason_id=other_reason.id)
        self.assertEqual(self._redirect_code(response), "already_closed")
        self.assertEqual(self._messages(self.subscription), messages)
        self.assertEqual(self.subscription.close_reason_id, self.reason)

    def test_public_visitor_with_token(self):
        order = self.subscription
        token = order._portal_ensure_token()
        self.authenticate(None, None)
        before = self._snapshot(order)
        for wrong in (None, "", "not-the-token", token[:-1]):
            data = {"close_reason_id": self.reason.id}
            if wrong is not None:
                data["access_token"] = wrong
            response = self._post_close(order.id, **data)
            self.assertEqual(response.status_code, 403)
            self.assertIn("subscription_access_error", response.text)
            self.assertEqual(self._snapshot(order), before)
        response = self._post_close(order.id, access_token=token, close_reason_id=self.reason.id)
        self.assertEqual(self._redirect_code(response), "closed")
        self.env.invalidate_all()
        self.assertEqual(order.subscription_state, "6_churn")
        self.assertEqual(self._closing_messages(order).author_id, self.customer)

    def test_refused_other_customer(self):
        foreign = self._create_subscription(partner=self.other_customer)
        self._login()
        messages = self._messages(foreign)
        response = self._post_close(foreign.id, close_reason_id=self.reason.id)
        self.assertEqual(response.status_code, 403)
        self.assertIn("subscription_access_error", response.text)
        self._assert_unchanged(foreign)
        self.assertEqual(self._messages(foreign), messages)
        # Nor can the page be read
        page = self.url_open(f"/my/orders/{foreign.id}", allow_redirects=False)
        self.assertIn(page.status_code, (302, 303))
        self.assertNotIn(str(foreign.id), page.headers["Location"])

    def test_refused_nonexistent_and_non_integer_id(self):
        self._login()
        before = self._snapshot(self.subscription)
        missing_id = self.env["sale.order"].search([], order="id desc", limit=1).id + 1000
        response = self._post_close(missing_id, close_reason_id=self.reason.id)
        self.assertEqual(response.status_code, 403)
        self.assertIn("subscription_access_error", response.text)
        with mute_logger("odoo.http"):
            response = self._post_close("abc", close_reason_id=self.reason.id)
        self.assertEqual(response.status_code, 404)
        self.assertEqual(self._snapshot(self.subscription), before)
        self.assertFalse(self.env["sale.order"].browse(missing_id).exists())

    def test_refused_ordinary_order(self):
        ordinary = self.env["sale.order"].create({"partner_id": self.customer.id})
        ordinary.order_line = [(0, 0, {"product_id": self.product.id})]
        ordinary.action_confirm()
        self._login()
        before = self._snapshot(ordinary)
        response = self._post_close(ordinary.id, close_reason_id=self.reason.id)
        self.assertEqual(response.status_code, 403)
        self.assertEqual(self._snapshot(ordinary), before)
        self.assertFalse(ordinary.subscription_state)
        self.assertEqual(ordinary.state, "sale")

    def test_refused_plan_not_closable(self):
        yearly = self._create_subscription(plan=self.plan_year)
        self._login()
        before = self._snapshot(yearly)
        response = self._post_close(yearly.id, close_reason_id=self.reason.id)
        self.assertEqual(self._redirect_code(response), "not_closable")
        self.assertEqual(self._snapshot(yearly), before)
        self._assert_unchanged(yearly)

    def test_refused_not_in_progress(self):
        quotation = self._create_subscription(confirm=False)
        quotation.action_quotation_sent()
        self._login()
        before = self._snapshot(quotation)
        response = self._post_close(quotation.id, close_reason_id=self.reason.id)
        self.assertEqual(self._redirect_code(response), "not_closable")
        self.assertEqual(self._snapshot(quotation), before)
        self._assert_unchanged(quotation, state="1_draft")

    def test_refused_reasons(self):
        Reason = self.env["sale.order.close.reason"]
        hidden = Reason.create({"name": "Hidden reason", "visible_in_portal": False})
        archived = Reason.create({"name": "Archived reason"})
        archived.action_archive()
        other_company = self.env["res.company"].create({"name": "Other Co"})
        foreign = Reason.create({"name": "Foreign reason", "company_id": other_company.id})
        protected = self.env.ref("subscription_close.close_reason_expired")
        self._login()
        messages = self._messages(self.subscription)
        for value in (
            hidden.id,
            archived.id,
            foreign.id,
            protected.id,
            "Too expensive",
            "",
            "-1",
            "999999",
            f"{self.reason.id}.0",
        ):
            response = self._post_close(self.subscription.id, close_reason_id=value)
            self.assertEqual(self._redirect_code(response), "invalid_reason", value)
        response = self._post_close(self.subscription.id)
        self.assertEqual(self._redirect_code(response), "invalid_reason")
        self._assert_unchanged(self.subscription)
        self.assertEqual(self._messages(self.subscription), messages)

    def test_refused_extra_field(self):
        self._login()
        before = self._snapshot(self.subscription)
        for extra in ({"close_reason_text": "I just want out"}, {"end_date": "2000-01-01"}):
            response = self._post_close(
                self.subscription.id, close_reason_id=self.reason.id, **extra
            )
            self.assertEqual(self._redirect_code(response), "invalid_request")
        self.assertEqual(self._snapshot(self.subscription), before)
        self._assert_unchanged(self.subscription)

    def test_refused_without_csrf_or_with_get(self):
        self._login()
        before = self._snapshot(self.subscription)
        with mute_logger("odoo.http"):
            response = self._post_close(
                self.subscription.id, csrf=False, close_reason_id=self.reason.id
            )
        self.assertEqual(response.status_code, 400)
        with mute_logger("odoo.http"):
            response = self.url_open(
                f"/my/subscriptions/{self.subscription.id}/close?close_reason_id={self.reason.id}",
                allow_redirects=False,
            )
        self.assertEqual(response.status_code, 405)
        self.assertEqual(self._snapshot(self.subscription), before)

    def test_portal_user_cannot_read_other_subscriptions(self):
        foreign = self._create_subscription(partner=self.other_customer)
        SaleOrder = self.env["sale.order"].with_user(self.user_portal)
        self.assertEqual(SaleOrder.search([("is_subscription", "=", True)]), self.subscription)
        self._login()
        result = self.make_jsonrpc_request(
            "/web/dataset/call_kw/sale.order/search_read",
            {
                "model": "sale.order",
                "method": "search_read",
                "args": [[("is_subscription", "=", True)], ["name"]],
                "kwargs": {},
            },
        )
        self.assertEqual([row["id"] for row in result], self.subscription.ids)
        self.assertNotIn(foreign.id, [row["id"] for row in result])


@tagged("post_install", "-at_install")
class TestPortalPerformance(SubscriptionPortalCommon):
    def _count_queries(self, func):
        self.env.flush_all()
        self.env.invalidate_all()
        before = self.cr.sql_log_count
        response = func()
        return self.cr.sql_log_count - before, response

    def test_subscription_list_query_count(self):
        first = self._create_subscription()
        self.authenticate(self.user_portal.login, "sc_portal_pwd")
        self.url_open("/my/subscriptions")  # warm the caches (assets, views, rules)
        queries_1, response = self._count_queries(lambda: self.url_open("/my/subscriptions"))
        self.assertEqual(response.text.count("o_subscription_row"), 1)
        orders = self.env["sale.order"].create(
            [
                {
                    "partner_id": self.customer.id,
                    "plan_id": self.plan_month.id,
                    "order_line": [(0, 0, {"product_id": self.product_sub.id})],
                }
                for _i in range(79)
            ]
        )
        orders.action_confirm()
        self.url_open("/my/subscriptions")
        queries_80, response = self._count_queries(lambda: self.url_open("/my/subscriptions"))
        self.assertEqual(response.text.count("o_subscription_row"), 80)
        self.assertIn(first.name, response.text)
        _logger.info("/my/subscriptions: %s queries for 1 row, %s for 80", queries_1, queries_80)
        self.assertEqual(queries_1, queries_80)

    def test_portal_close_query_count(self):
        order = self._create_subscription()
        warm = self._create_subscription()
        reason = self.env.ref("subscription_close.close_reason_too_expensive")
        self.authenticate(self.user_portal.login, "sc_portal_pwd")

        def close(target):
            return self.url_open(
                f"/my/subscriptions/{target.id}/close",
                data={"csrf_token": Request.csrf_token(self), "close_reason_id": reason.id},
                allow_redirects=False,
            )

        close(warm)
        queries, response = self._count_queries(lambda: close(order))
        self.assertIn(response.status_code, (302, 303))
        self.env.invalidate_all()
        self.assertEqual(order.subscription_state, "6_churn")
        _logger.info("portal close: %s queries", queries)
        self.assertLess(queries, 60)


@tagged("post_install", "-at_install")
class TestPortalScheduledClose(SubscriptionPortalCommon):
    """Plans that close at the end of the period: Closing, then Keep my subscription."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.plan_month.user_closable_options = "end_of_period"
        with freeze_time("2025-12-31"):
            cls.subscription = cls._create_subscription()

    @freeze_time("2026-01-20")
    def test_close_at_end_of_period_then_keep(self):
        self._login()
        page = self.url_open(self.subscription.get_portal_url()).text
        self.assertIn('id="subscription_close_when"', page)
        self.assertIn("01/30/2026", page)
        response = self._post(self.subscription, "close", close_reason_id=self.reason.id)
        self.assertEqual(self._redirect_code(response), "closing")
        self.env.invalidate_all()
        order = self.subscription
        self.assertEqual(order.subscription_state, "3_progress")
        self.assertTrue(order.is_closing)
        self.assertEqual(order.end_date, date(2026, 1, 30))
        self.assertEqual(order.close_reason_id, self.reason)
        page = self.url_open(response.headers["Location"]).text
        self.assertIn('data-status="4_closing"', page)
        self.assertIn('id="o_subscription_keep_button"', page)
        self.assertNotIn('id="o_subscription_close_button"', page)
        self.assertIn("01/30/2026", page)

        response = self._post(order, "keep")
        self.assertEqual(self._redirect_code(response), "kept")
        self.env.invalidate_all()
        self.assertFalse(order.is_closing)
        self.assertFalse(order.end_date)
        self.assertFalse(order.close_reason_id)
        subtype = self.env.ref("subscription_close.mt_subscription_closed")
        last = order.message_ids.filtered(lambda m: m.subtype_id == subtype)[0]
        self.assertIn("Subscription kept by", last.body)
        self.assertEqual(last.author_id, self.customer)
        page = self.url_open(response.headers["Location"]).text
        self.assertIn('data-status="3_progress"', page)
        self.assertIn('id="o_subscription_close_button"', page)

    @freeze_time("2026-01-20")
    def test_no_next_invoice_after_the_last_day(self):
        order = self.subscription
        self._run_cron("subscription_close.ir_cron_create_recurring_invoices")
        self.assertEqual(order.next_invoice_date, date(2026, 1, 31))
        self._login()
        self.assertIn('id="subscription_next_invoice"', self.url_open(order.get_portal_url()).text)
        self._post(order, "close", close_reason_id=self.reason.id)
        self.env.invalidate_all()
        self.assertEqual(order.end_date, date(2026, 1, 30))
        page = self.url_open(order.get_portal_url()).text
        self.assertNotIn('id="subscription_next_invoice"', page)

    @freeze_time("2026-01-20")
    def test_keep_refusals(self):
        order = self.subscription
        # Not closing
        self._login()
        before = self._snapshot(order)
        self.assertEqual(self._redirect_code(self._post(order, "keep")), "not_closing")
        self.assertEqual(self._snapshot(order), before)
        self._close(order, self.reason, date(2026, 1, 30))
        before = self._snapshot(order)
        # Another customer
        _other, other_user = self._create_portal_customer("Other", "sc_portal_other")
        self._login(other_user)
        self.assertEqual(self._post(order, "keep").status_code, 403)
        self.assertEqual(self._snapshot(order), before)
        # Public visitor without token, with a wrong one
        self.authenticate(None, None)
        self.assertEqual(self._post(order, "keep").status_code, 403)
        self.assertEqual(self._post(order, "keep", access_token="nope").status_code, 403)
        self.assertEqual(self._snapshot(order), before)
        # Extra field, no CSRF, GET
        self._login()
        self.assertEqual(
            self._redirect_code(self._post(order, "keep", end_date="2030-01-01")), "invalid_request"
        )
        with mute_logger("odoo.http"):
            self.assertEqual(self._post(order, "keep", csrf=False).status_code, 400)
            response = self.url_open(f"/my/subscriptions/{order.id}/keep", allow_redirects=False)
            self.assertEqual(response.status_code, 405)
        self.assertEqual(self._snapshot(order), before)
        # Closing decided by the company with a protected reason
        company_reason = self.env.ref("subscription_close.close_reason_company")
        self._close(order, company_reason, date(2026, 1, 30))
        before = self._snapshot(order)
        self.assertEqual(self._redirect_code(self._post(order, "keep")), "not_keepable")
        self.assertEqual(self._snapshot(order), before)
        # Plan no longer closable
        self._close(order, self.reason, date(2026, 1, 30))
        self.plan_month.user_closable = False
        before = self._snapshot(order)
        self.assertEqual(self._redirect_code(self._post(order, "keep")), "not_keepable")
        self.assertEqual(self._snapshot(order), before)
        self.assertTrue(order.is_closing)

    @freeze_time("2026-01-30")
    def test_last_day_of_period_closes_now(self):
        self._login()
        response = self._post(self.subscription, "close", close_reason_id=self.reason.id)
        self.assertEqual(self._redirect_code(response), "closed")
        self.env.invalidate_all()
        self.assertEqual(self.subscription.subscription_state, "6_churn")
        self.assertEqual(self.subscription.end_date, date(2026, 1, 30))
