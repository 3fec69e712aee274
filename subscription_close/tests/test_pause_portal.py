from datetime import date

from freezegun import freeze_time

from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import SubscriptionPortalCommon


class PausePortalCommon(SubscriptionPortalCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.plan_month.write({"user_pausable": True, "max_pause_months": 3})
        cls.plain_reason = cls.env.ref("subscription_close.close_reason_not_needed")
        with freeze_time("2026-01-10"):
            cls.subscription = cls._create_subscription(user_id=cls.user_salesman.id)

    def _page(self, order, response=None):
        url = response.headers["Location"] if response is not None else order.get_portal_url()
        return self.url_open(url).text

    def _paused_messages(self, order):
        self.env.invalidate_all()
        subtype = self.env.ref("subscription_close.mt_subscription_paused")
        return order.message_ids.filtered(lambda m: m.subtype_id == subtype)


@tagged("post_install", "-at_install")
class TestPortalPause(PausePortalCommon):
    @freeze_time("2026-01-20")
    def test_pause_then_resume_now(self):
        order = self.subscription
        self._login()
        page = self._page(order)
        self.assertIn('id="o_subscription_pause_button"', page)
        self.assertIn('id="modal_subscription_pause"', page)
        for label in (
            "1 month, until 02/20/2026",
            "2 months, until 03/20/2026",
            "3 months, until 04/20/2026",
        ):
            self.assertIn(label, page)
        self.assertNotIn('id="o_subscription_resume_button"', page)

        response = self._post(order, "pause", pause_months="2")
        self.assertEqual(self._redirect_code(response), "paused")
        self.env.invalidate_all()
        self.assertEqual(order.subscription_state, "4_paused")
        self.assertEqual(order.pause_start_date, date(2026, 1, 20))
        self.assertEqual(order.resume_date, date(2026, 3, 20))
        message = self._paused_messages(order)
        self.assertEqual(len(message), 1)
        self.assertEqual(message.author_id, self.customer)
        self.assertIn(f"Subscription paused by {self.customer.name} until 03/20/2026", message.body)
        # The salesperson follows the order and is notified, not the customer.
        self.assertIn(self.user_salesman.partner_id, message.notified_partner_ids)
        self.assertNotIn(self.customer, message.notified_partner_ids)
        # A pause from the Pause button is not a retention step.
        self.assertFalse(self._retention_events(order))
        page = self._page(order, response)
        self.assertIn('data-status="4_paused"', page)
        self.assertIn(">Paused<", page)
        self.assertIn("Paused Until:", page)
        self.assertIn("Your subscription is paused until 03/20/2026", page)
        self.assertIn('id="o_subscription_resume_button"', page)
        self.assertNotIn('id="o_subscription_pause_button"', page)
        # A paused subscription can still be closed, without the pause offer.
        self.assertIn('id="o_subscription_close_button"', page)
        self.assertNotIn('id="subscription_pause_instead"', page)
        list_page = self.url_open("/my/subscriptions").text
        self.assertIn('data-status="4_paused"', list_page)

    def test_resume_now(self):
        order = self.subscription
        with freeze_time("2026-01-05"):
            order._action_pause({order.id: date(2026, 3, 5)})
        with freeze_time("2026-01-20"):
            self._login()
            response = self._post(order, "resume")
            self.assertEqual(self._redirect_code(response), "resumed")
            self.env.invalidate_all()
            self.assertEqual(order.subscription_state, "3_progress")
            self.assertFalse(order.pause_start_date)
            self.assertFalse(order.resume_date)
            self.assertEqual(order.next_invoice_date, date(2026, 1, 25))  # 10 January + 15 days
            message = self._paused_messages(order)
            self.assertEqual(message.author_id, self.customer)
            self.assertIn(
                f"Subscription resumed by {self.customer.name} after 15 days", message.body
            )
            page = self._page(order, response)
        self.assertIn("Your subscription is active again", page)
        self.assertIn('data-status="3_progress"', page)
        self.assertIn('id="o_subscription_pause_button"', page)

    @freeze_time("2026-01-20")
    def test_public_visitor_with_token(self):
        order = self.subscription
        token = order._portal_ensure_token()
        self.authenticate(None, None)
        before = self._snapshot(order)
        for wrong in (None, "", "not-the-token", token[:-1]):
            data = {"pause_months": "1"}
            if wrong is not None:
                data["access_token"] = wrong
            response = self._post(order, "pause", **data)
            self.assertEqual(response.status_code, 403)
            self.assertIn("subscription_access_error", response.text)
            self.assertEqual(self._snapshot(order), before)
        response = self._post(order, "pause", access_token=token, pause_months="1")
        self.assertEqual(self._redirect_code(response), "paused")
        self.env.invalidate_all()
        self.assertEqual(order.resume_date, date(2026, 2, 20))
        self.assertEqual(self._paused_messages(order).author_id, self.customer)
        before = self._snapshot(order)
        self.assertEqual(self._post(order, "resume", access_token="nope").status_code, 403)
        self.assertEqual(self._snapshot(order), before)
        response = self._post(order, "resume", access_token=token)
        self.assertEqual(self._redirect_code(response), "resumed")

    @freeze_time("2026-01-20")
    def test_pause_refusals(self):
        order = self.subscription
        _other, other_user = self._create_portal_customer("Bob Other", "sc_portal_other")
        self._login(other_user)
        before = self._snapshot(order)
        response = self._post(order, "pause", pause_months="1")
        self.assertEqual(response.status_code, 403)
        self.assertEqual(self._snapshot(order), before)

        self._login()
        refusals = [
            ({"pause_months": "4"}, "invalid_duration"),
            ({"pause_months": "0"}, "invalid_duration"),
            ({"pause_months": "-1"}, "invalid_duration"),
            ({"pause_months": "1.0"}, "invalid_duration"),
            ({"pause_months": "01"}, "invalid_duration"),
            ({"pause_months": "abc"}, "invalid_duration"),
            ({"pause_months": ""}, "invalid_duration"),
            ({}, "invalid_duration"),
            ({"pause_months": "1", "resume_date": "2030-01-01"}, "invalid_request"),
            ({"pause_months": "1", "origin": "elsewhere"}, "invalid_request"),
            ({"pause_months": "1", "close_reason_id": str(self.reason.id)}, "invalid_request"),
            (
                {"pause_months": "1", "origin": "close", "close_reason_id": "999999"},
                "invalid_reason",
            ),
        ]
        for data, code in refusals:
            response = self._post(order, "pause", **data)
            self.assertEqual(self._redirect_code(response), code, data)
            self.assertEqual(self._snapshot(order), before, data)
        with mute_logger("odoo.http"):
            response = self._post(order, "pause", csrf=False, pause_months="1")
            self.assertEqual(response.status_code, 400)
            response = self.url_open(
                f"/my/subscriptions/{order.id}/pause?pause_months=1", allow_redirects=False
            )
            self.assertEqual(response.status_code, 405)
        self.assertEqual(self._snapshot(order), before)

        # Lengths beyond the plan's longest pause are not offered, nor accepted.
        self.plan_month.max_pause_months = 2
        page = self._page(order)
        self.assertIn("2 months, until 03/20/2026", page)
        self.assertNotIn("3 months", page)
        before = self._snapshot(order)  # the page view is logged by sale
        response = self._post(order, "pause", pause_months="3")
        self.assertEqual(self._redirect_code(response), "invalid_duration")
        self.assertEqual(self._snapshot(order), before)

        # Paused twice
        self._post(order, "pause", pause_months="1")
        before = self._snapshot(order)
        response = self._post(order, "pause", pause_months="2")
        self.assertEqual(self._redirect_code(response), "already_paused")
        self.assertEqual(self._snapshot(order), before)
        self.assertEqual(order.resume_date, date(2026, 2, 20))

    @freeze_time("2026-01-20")
    def test_pause_refused_by_state_and_plan(self):
        self._login()
        # A plan that does not allow it: no button, and the request is refused.
        yearly = self._create_subscription(plan=self.plan_year)
        page = self._page(yearly)
        self.assertNotIn('id="o_subscription_pause_button"', page)
        before = self._snapshot(yearly)
        response = self._post(yearly, "pause", pause_months="1")
        self.assertEqual(self._redirect_code(response), "not_pausable")
        self.assertEqual(self._snapshot(yearly), before)
        # A closing scheduled: keep first.
        closing = self._create_subscription()
        self._close(closing, self.reason, date(2026, 2, 9))
        self.assertNotIn('id="o_subscription_pause_button"', self._page(closing))
        before = self._snapshot(closing)
        response = self._post(closing, "pause", pause_months="1")
        self.assertEqual(self._redirect_code(response), "pause_closing")
        self.assertEqual(self._snapshot(closing), before)
        self.assertIn("keep your subscription first", self._page(closing, response))
        # Closed: a pause never reopens it.
        closed = self._create_subscription()
        self._close(closed, self.reason)
        before = self._snapshot(closed)
        response = self._post(closed, "pause", pause_months="1")
        self.assertEqual(self._redirect_code(response), "already_closed")
        response = self._post(closed, "resume")
        self.assertEqual(self._redirect_code(response), "not_paused")
        self.assertEqual(self._snapshot(closed), before)
        # A quotation
        quotation = self._create_subscription(confirm=False)
        quotation.action_quotation_sent()
        before = self._snapshot(quotation)
        response = self._post(quotation, "pause", pause_months="1")
        self.assertEqual(self._redirect_code(response), "not_pausable")
        self.assertEqual(self._snapshot(quotation), before)

    @freeze_time("2026-01-20")
    def test_resume_refusals(self):
        order = self.subscription
        self._login()
        before = self._snapshot(order)
        self.assertEqual(self._redirect_code(self._post(order, "resume")), "not_paused")
        self.assertEqual(self._snapshot(order), before)
        self._post(order, "pause", pause_months="1")
        before = self._snapshot(order)
        _other, other_user = self._create_portal_customer("Bob Other", "sc_portal_other")
        self._login(other_user)
        self.assertEqual(self._post(order, "resume").status_code, 403)
        self._login()
        response = self._post(order, "resume", next_invoice_date="2030-01-01")
        self.assertEqual(self._redirect_code(response), "invalid_request")
        with mute_logger("odoo.http"):
            self.assertEqual(self._post(order, "resume", csrf=False).status_code, 400)
            response = self.url_open(f"/my/subscriptions/{order.id}/resume", allow_redirects=False)
            self.assertEqual(response.status_code, 405)
        self.assertEqual(self._snapshot(order), before)
        # The plan no longer lets customers pause: the company resumes.
        self.plan_month.user_pausable = False
        self.assertNotIn('id="o_subscription_resume_button"', self._page(order))
        before = self._snapshot(order)  # the page view is logged by sale
        response = self._post(order, "resume")
        self.assertEqual(self._redirect_code(response), "not_resumable")
        self.assertEqual(self._snapshot(order), before)
        self.assertEqual(order.subscription_state, "4_paused")

    @freeze_time("2026-01-20")
    def test_close_a_paused_subscription(self):
        self.plan_month.user_closable_options = "end_of_period"
        order = self.subscription
        self._login()
        self._post(order, "pause", pause_months="3")
        page = self._page(order)
        # No "stays active until the end of the period": it closes now.
        self.assertNotIn('id="subscription_close_when"', page)
        self.assertIn('id="subscription_close_today"', page)
        response = self._post_close(order, close_reason_id=self.plain_reason.id)
        self.assertEqual(self._redirect_code(response), "closed")
        self.env.invalidate_all()
        self.assertEqual(order.subscription_state, "6_churn")
        self.assertEqual(order.end_date, date(2026, 1, 20))
        self.assertFalse(order.resume_date)
        self.assertEqual(self._retention_events(order).mapped("event_type"), ["started", "closed"])

    def test_italian(self):
        self._serve_italian()
        self._login()
        with freeze_time("2026-01-20"):
            page = self._page(self.subscription)
            for text in ("Metti in pausa l'abbonamento", "1 mese, fino al 20/02/2026"):
                self.assertIn(text, page)
            response = self._post(self.subscription, "pause", pause_months="1")
            page = self._page(self.subscription, response)
        for text in (">In pausa<", "In pausa fino al:", "Riprendi ora", "è in pausa fino al"):
            self.assertIn(text, page)


@tagged("post_install", "-at_install")
class TestPortalRetentionSteps(PausePortalCommon):
    """The retention events the portal records: what the customer was
    offered, and whether they stayed or closed."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.reason.write(
            {
                "retention_message": "<p>Our Basic plan costs half as much.</p>",
                "retention_button_text": "Switch to Basic",
                "retention_url": "/contactus",
            }
        )

    def _steps(self, order):
        return [
            (event.event_type, event.close_reason_id, event.offer)
            for event in self._retention_events(order)
        ]

    @freeze_time("2026-01-20")
    def test_close_popup_offers_the_pause(self):
        self._login()
        page = self._page(self.subscription)
        form = page[page.index('id="subscription_close_form"') :]
        form = form[: form.index("</form>")]
        self.assertIn('id="subscription_pause_instead"', form)
        for months in (1, 2, 3):
            self.assertRegex(form, rf'name="pause_months"[^>]* value="{months}"')
        self.assertIn(f"/my/subscriptions/{self.subscription.id}/pause?origin=close", form)
        self.assertIn(f"/my/subscriptions/{self.subscription.id}/stay", form)
        self.assertIn("Pause for 2 months", form)
        # Not for a plan that is not pausable.
        self.plan_month.user_pausable = False
        self.assertNotIn('id="subscription_pause_instead"', self._page(self.subscription))

    @freeze_time("2026-01-20")
    def test_pause_instead_of_closing(self):
        order = self.subscription
        self._login()
        response = self._post(
            order, "pause?origin=close", pause_months="1", close_reason_id=str(self.reason.id)
        )
        self.assertEqual(self._redirect_code(response), "paused")
        self.env.invalidate_all()
        self.assertEqual(order.subscription_state, "4_paused")
        self.assertFalse(order.close_reason_id)
        self.assertEqual(
            self._steps(order),
            [
                ("started", self.reason, "offer_pause"),
                ("shown", self.reason, "offer_pause"),
                ("paused", self.reason, "offer_pause"),
            ],
        )
        event = self._retention_events(order)[0]
        self.assertEqual(event.partner_id, self.customer)
        self.assertEqual(event.company_id, order.company_id)
        self.assertEqual(event.date, date(2026, 1, 20))

    @freeze_time("2026-01-20")
    def test_pause_instead_without_a_reason(self):
        order = self.subscription
        self._login()
        response = self._post(order, "pause?origin=close", pause_months="3")
        self.assertEqual(self._redirect_code(response), "paused")
        empty = self.env["sale.order.close.reason"]
        self.assertEqual(
            self._steps(order),
            [("started", empty, "pause"), ("shown", empty, "pause"), ("paused", empty, "pause")],
        )

    @freeze_time("2026-01-20")
    def test_keep_after_the_offer(self):
        order = self.subscription
        self._login()
        before = self._snapshot(order)
        for value in (self.plain_reason.id, "999999", ""):  # no offer, unknown, none
            response = self._post(order, "stay", close_reason_id=value)
            self.assertEqual(self._redirect_code(response), "invalid_reason")
        response = self._post(order, "stay", close_reason_id=self.reason.id, extra="1")
        self.assertEqual(self._redirect_code(response), "invalid_request")
        self.assertEqual(self._snapshot(order), before)

        response = self._post(order, "stay", close_reason_id=self.reason.id)
        self.assertEqual(self._redirect_code(response), "kept")
        after = self._snapshot(order)
        self.assertEqual(after[:7], before[:7])  # nothing changes on the order
        self.assertEqual(
            self._steps(order),
            [
                ("started", self.reason, "offer_pause"),
                ("shown", self.reason, "offer_pause"),
                ("kept", self.reason, "offer_pause"),
            ],
        )
        # A second click the same day is not a second customer saved.
        self._post(order, "stay", close_reason_id=self.reason.id)
        self.assertEqual(len(self._retention_events(order)), 3)

    @freeze_time("2026-01-20")
    def test_close_anyway(self):
        order = self.subscription
        self._login()
        # Without acknowledging the offer: the page shows it (with the pause),
        # the customer started and was shown an offer, nothing else.
        response = self._post_close(order, close_reason_id=self.reason.id)
        self.assertEqual(self._redirect_code(response), "retention")
        page = self._page(order, response)
        alert = page[page.index('id="subscription_retention_form"') :]
        alert = alert[: alert.index("</form>")]
        self.assertIn("Pause for 1 month", alert)
        self.assertIn("o_subscription_retention_keep", alert)
        self.assertEqual(
            self._steps(order),
            [
                ("started", self.reason, "offer_pause"),
                ("shown", self.reason, "offer_pause"),
            ],
        )
        response = self._post_close(
            order, close_reason_id=self.reason.id, retention_acknowledged="1"
        )
        self.assertEqual(self._redirect_code(response), "closed")
        self.assertEqual(
            [step for step, _reason, _offer in self._steps(order)], ["started", "shown", "closed"]
        )

    @freeze_time("2026-01-20")
    def test_close_without_offer(self):
        self.plan_month.user_pausable = False
        order = self.subscription
        self._login()
        self._post_close(order, close_reason_id=self.plain_reason.id)
        self.assertEqual(
            self._steps(order),
            [("started", self.plain_reason, False), ("closed", self.plain_reason, False)],
        )

    def test_leaving_the_popup_is_not_staying(self):
        """A customer shown the offer who leaves without closing counts as
        started and shown, neither stayed nor closed: the save rate leaves
        them out."""
        order = self.subscription
        self._login()
        with freeze_time("2026-01-20"):
            self._post_close(order, close_reason_id=self.reason.id)  # shown the offer, leaves
        Report = self.env["sale.subscription.retention.report"]
        [(started, shown, stayed, closed, rate)] = Report._read_group(
            [("order_id", "=", order.id)],
            aggregates=[
                "started_count:sum",
                "shown_count:sum",
                "stayed_count:sum",
                "closed_count:sum",
                "save_rate:avg",
            ],
        )
        self.assertEqual((started, shown, stayed, closed), (1, 1, 0, 0))
        self.assertFalse(rate)


@tagged("post_install", "-at_install")
class TestRetentionAnalysis(PausePortalCommon):
    """Save rates from known events: stayed / (stayed + closed) per group."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        Event = cls.env["sale.subscription.retention.event"]
        cls.other_reason = cls.plain_reason
        vals_list = []

        def customer(reason, day, steps, offer=False):
            order = cls._create_subscription()
            for step in steps:
                vals_list.append(
                    {
                        "order_id": order.id,
                        "partner_id": order.partner_id.id,
                        "company_id": order.company_id.id,
                        "close_reason_id": reason.id if reason else False,
                        "event_type": step,
                        "offer": offer,
                        "date": day,
                    }
                )

        january, february = date(2026, 1, 15), date(2026, 2, 15)
        # Too expensive, January: 1 kept, 2 paused, 1 closed anyway, 1 left.
        customer(cls.reason, january, ["started", "shown", "kept"], "offer_pause")
        customer(cls.reason, january, ["started", "shown", "paused"], "offer_pause")
        customer(cls.reason, january, ["started", "shown", "paused"], "offer_pause")
        customer(cls.reason, january, ["started", "shown", "closed"], "offer_pause")
        customer(cls.reason, january, ["started", "shown"], "offer_pause")
        # Too expensive, February: 1 closed anyway.
        customer(cls.reason, february, ["started", "shown", "closed"], "offer")
        # No longer needed, January: 2 closed without an offer.
        customer(cls.other_reason, january, ["started", "closed"])
        customer(cls.other_reason, january, ["started", "closed"])
        Event.create(vals_list)
        cls.measures = [
            "started_count:sum",
            "shown_count:sum",
            "kept_count:sum",
            "paused_count:sum",
            "stayed_count:sum",
            "closed_count:sum",
            "save_rate:avg",
        ]

    def _figures(self, groupby, domain=(), user=None):
        """``{group: (started, shown, kept, paused, stayed, closed, save rate)}``
        as the pivot and graph views read them."""
        Report = self.env["sale.subscription.retention.report"]
        if user:
            Report = Report.with_user(user)
        rows = Report._read_group(list(domain), groupby, self.measures)
        size = len(groupby)
        return {row[:size]: (*row[size:-1], round(row[-1] or 0.0, 2)) for row in rows}

    def test_save_rate_by_reason_and_month(self):
        figures = self._figures(["close_reason_id", "date:month"])
        # started, shown, kept, paused, stayed, closed, save rate
        jan, feb = date(2026, 1, 1), date(2026, 2, 1)
        self.assertEqual(figures[(self.reason, jan)], (5, 5, 1, 2, 3, 1, 75.0))
        self.assertEqual(figures[(self.reason, feb)], (1, 1, 0, 0, 0, 1, 0.0))
        self.assertEqual(figures[(self.other_reason, jan)], (2, 0, 0, 0, 0, 2, 0.0))

    def test_save_rate_by_reason_and_in_total(self):
        figures = self._figures(["close_reason_id"])
        self.assertEqual(figures[(self.reason,)], (6, 6, 1, 2, 3, 2, 60.0))
        self.assertEqual(figures[(self.other_reason,)], (2, 0, 0, 0, 0, 2, 0.0))
        total = self._figures([])
        self.assertEqual(total[()], (8, 6, 1, 2, 3, 4, round(300 / 7, 2)))
        # Only the closings where something was offered: 3 stayed, 2 closed anyway.
        offered = self._figures([], domain=[("offer", "!=", False)])
        self.assertEqual(offered[()], (6, 6, 1, 2, 3, 2, 60.0))

    def test_views_and_menu(self):
        Report = self.env["sale.subscription.retention.report"].with_user(self.user_salesman)
        views = Report.get_views([(False, "pivot"), (False, "graph"), (False, "list")])
        self.assertIn('name="save_rate"', views["views"]["pivot"]["arch"])
        self.assertIn('name="save_rate"', views["views"]["graph"]["arch"])
        fields = Report.fields_get(["save_rate", "stayed_count"])
        self.assertEqual(fields["save_rate"]["aggregator"], "avg")
        self.assertEqual(fields["stayed_count"]["aggregator"], "sum")
        menu = self.env.ref("subscription_close.menu_subscription_retention")
        self.assertEqual(
            menu.parent_id, self.env.ref("subscription_close.menu_subscription_reporting")
        )
        self.assertEqual(
            menu.action,
            self.env.ref("subscription_close.sale_subscription_retention_report_action"),
        )

    def test_access(self):
        Event = self.env["sale.subscription.retention.event"]
        Report = self.env["sale.subscription.retention.report"]
        event = Event.search([], limit=1)
        # Salespeople and managers read, nobody writes; portal users see nothing.
        for user in (self.user_salesman, self.user_manager):
            self.assertTrue(Event.with_user(user).search_count([]))
            self.assertTrue(Report.with_user(user).search_count([]))
            for operation in ("write", "create", "unlink"):
                self.assertFalse(Event.with_user(user).has_access(operation))
        for user in (self.user_portal, self.user_internal):
            self.assertFalse(Event.with_user(user).has_access("read"))
            self.assertFalse(Report.with_user(user).has_access("read"))
        self.assertTrue(event)
        # A salesperson who sees only their own orders sees only their
        # customers' retention (and that of orders without salesperson).
        orders = Event.search([]).order_id
        orders.write({"user_id": False})
        self.assertEqual(self._figures([], user=self.user_salesman_own)[()][0], 8)
        orders.write({"user_id": self.user_salesman.id})
        self.assertFalse(Report.with_user(self.user_salesman_own).search_count([]))
        self.assertFalse(Event.with_user(self.user_salesman_own).search_count([]))
        self.assertEqual(self._figures([], user=self.user_salesman)[()][0], 8)

    def test_other_company_events_are_hidden(self):
        other_company = self.env["res.company"].create({"name": "Other Co"})
        self.plan_month.company_id = False
        order = self._create_subscription(company_id=other_company.id)
        self.env["sale.subscription.retention.event"].create(
            {
                "order_id": order.id,
                "partner_id": order.partner_id.id,
                "company_id": other_company.id,
                "event_type": "started",
            }
        )
        Report = self.env["sale.subscription.retention.report"].with_user(self.user_salesman)
        self.assertNotIn(order, Report.search([]).order_id)
