import re
from datetime import date, timedelta
from unittest.mock import patch

from freezegun import freeze_time

from odoo.exceptions import AccessError, UserError
from odoo.http import Request
from odoo.tests import Form, tagged
from odoo.tools import format_date, mute_logger

from ..models.sale_subscription_cancellation import (
    CLIENT_LIMIT_PER_HOUR,
    EMAIL_LIMIT_PER_DAY,
)
from .common import SubscriptionCommon, SubscriptionPortalCommon

PROCESS_CRON = "subscription_close.ir_cron_process_cancellations"


def _create_notice_plan(env, **values):
    """A monthly plan its customers may close, with 14 days' notice."""
    return env["sale.subscription.plan"].create(
        {
            "name": "Monthly, 14 days notice",
            "billing_period_unit": "month",
            "user_closable": True,
            "notice_days": 14,
            **values,
        }
    )


@tagged("post_install", "-at_install")
class TestCloseTerms(SubscriptionCommon):
    """Notice period, minimum term, comment and override, through the one
    closing method and the Close popup."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.plan_notice = _create_notice_plan(cls.env)
        cls.unpaid = cls.env.ref("subscription_close.close_reason_unpaid")
        cls.user_overrider = cls.user_manager

    def test_notice_period(self):
        with freeze_time("2026-01-10"):
            order = self._create_subscription(plan=self.plan_notice)
            with self.assertRaisesText("let it end on 01/24/2026 at the earliest") as caught:
                self._close(order, self.reason)
            self.assertEqual(caught.exception.code, "too_early")
            self.assertFalse(order.end_date)
            self.assertEqual(
                order._subscription_apply_terms({order.id: date(2026, 1, 10)}, self.reason),
                {order.id: date(2026, 1, 24)},
            )
            # A later day asked for is kept.
            self.assertEqual(
                order._subscription_apply_terms({order.id: date(2026, 3, 1)}, self.reason),
                {order.id: date(2026, 3, 1)},
            )
            self._close_with_wizard(order, when="now")
            self.assertTrue(order.is_closing)
            self.assertEqual(order.end_date, date(2026, 1, 24))
        # The scheduled action closes it on its day, the terms checked when it
        # was scheduled.
        with freeze_time("2026-01-25"):
            self._run_cron("subscription_close.ir_cron_close_expired")
        self.assertEqual(order.subscription_state, "6_churn")
        self.assertEqual(order.end_date, date(2026, 1, 24))

    def test_notice_to_the_end_of_the_period(self):
        self.plan_notice.notice_end_of_period = True
        with freeze_time("2026-01-10"):
            order = self._create_subscription(plan=self.plan_notice)
            self._run_cron()
        with freeze_time("2026-02-01"):
            # 1 Feb + 14 days = 15 Feb, in the period 10 Feb - 9 Mar.
            self.assertEqual(order._get_earliest_end_dates(), {order.id: date(2026, 3, 9)})
            self._close_with_wizard(order, when="now")
        self.assertEqual(order.end_date, date(2026, 3, 9))

    def test_minimum_term(self):
        self.plan_notice.write({"notice_days": 0, "minimum_term_months": 12})
        with freeze_time("2026-01-10"):
            order = self._create_subscription(plan=self.plan_notice)
        with freeze_time("2026-04-02"):
            self.assertEqual(order._get_earliest_end_dates(), {order.id: date(2027, 1, 9)})
            self.assertIn("a minimum term until 01/09/2027", order._get_terms_description())
            self._close_with_wizard(order, when="end_of_period")
            self.assertEqual(order.end_date, date(2027, 1, 9))
        other = self._create_subscription(plan=self.plan_notice)
        other.start_date = date(2025, 1, 10)
        with freeze_time("2026-04-02"):
            # Past its minimum term: closes at once.
            self._close_with_wizard(other, when="now")
        self.assertEqual(other.subscription_state, "6_churn")

    def test_involuntary_reasons_are_not_bound(self):
        with freeze_time("2026-01-10"):
            order = self._create_subscription(plan=self.plan_notice)
            self._close(order, self.unpaid)
        self.assertEqual(order.subscription_state, "6_churn")
        self.assertEqual(order.churn_type, "involuntary")

    def test_popup_shows_the_end_date_and_override_needs_the_group(self):
        with freeze_time("2026-01-10"):
            order = self._create_subscription(plan=self.plan_notice)
            action = order.with_user(self.user_salesman).action_open_close_wizard()
            Wizard = self.env["sale.order.close"].with_context(**action["context"])
            with Form(Wizard.with_user(self.user_salesman)) as wizard:
                wizard.close_reason_id = self.reason
                self.assertEqual(wizard.end_date_preview, "01/24/2026")
                self.assertTrue(wizard.terms_applied)
                # A salesperson does not see the override.
                self.assertNotIn("override_terms", wizard._view["fields"])
            # Nor may they use it through the API.
            with self.assertRaises(AccessError):
                order.with_user(self.user_salesman)._action_close(
                    self.reason, {order.id: date(2026, 1, 10)}, override_terms=True
                )
            self.assertFalse(order.end_date)
            # A sales manager may, and the chatter says who did.
            with Form(Wizard.with_user(self.user_overrider)) as wizard:
                wizard.close_reason_id = self.reason
                wizard.override_terms = True
                self.assertEqual(wizard.end_date_preview, "01/10/2026")
                self.assertFalse(wizard.terms_applied)
            wizard.record.action_close()
        self.assertEqual(order.subscription_state, "6_churn")
        self.assertEqual(order.end_date, date(2026, 1, 10))
        self.flush_tracking()
        self.assertIn(
            "The notice period and the minimum term of the plan were overridden by",
            order.message_ids[0].body,
        )

    def test_popup_keeps_the_terms_whatever_the_reason(self):
        """A salesperson cannot end a contract early by choosing a reason of
        the company, nor give the customer's own declaration as a reason."""
        with freeze_time("2026-01-10"):
            order = self._create_subscription(plan=self.plan_notice)
            action = order.with_user(self.user_salesman).action_open_close_wizard()
            Wizard = self.env["sale.order.close"].with_context(**action["context"])
            with Form(Wizard.with_user(self.user_salesman)) as wizard:
                wizard.close_reason_id = self.env.ref("subscription_close.close_reason_company")
                self.assertEqual(wizard.end_date_preview, "01/24/2026")
            wizard.record.action_close()
            self.assertEqual(order.end_date, date(2026, 1, 24))
            self.assertEqual(order.subscription_state, "3_progress")
            other = self._create_subscription(plan=self.plan_notice)
            for xmlid in ("close_reason_withdrawal", "close_reason_cancelled_online"):
                wizard = Wizard.with_user(self.user_salesman).create(
                    {
                        "order_ids": [(6, 0, other.ids)],
                        "close_reason_id": self.env.ref(f"subscription_close.{xmlid}").id,
                    }
                )
                with self.assertRaisesRegex(UserError, "declaration on the cancellation page"):
                    wizard.action_close()
            self.assertFalse(other.end_date)
            # The system's own closings (here: unpaid) are not bound by them.
            self.unpaid._check_usable_for(other)
            other._action_close(self.unpaid, {other.id: date(2026, 1, 10)})
            self.assertEqual(other.subscription_state, "6_churn")

    def test_comment(self):
        order = self._create_subscription()
        action = order.with_user(self.user_salesman).action_open_close_wizard()
        with Form(
            self.env["sale.order.close"]
            .with_user(self.user_salesman)
            .with_context(**action["context"])
        ) as wizard:
            wizard.close_reason_id = self.reason
            wizard.close_comment = "  Moving to a <b>cheaper</b> plan  "
        wizard.record.action_close()
        self.assertEqual(order.close_comment, "Moving to a <b>cheaper</b> plan")
        self.flush_tracking()
        body = order.message_ids[0].body
        self.assertIn("Comment: Moving to a &lt;b&gt;cheaper&lt;/b&gt; plan", body)
        order._action_reopen()
        self.assertFalse(order.close_comment)

    def test_reason_requiring_a_comment(self):
        self.reason.comment_required = True
        order = self._create_subscription()
        with self.assertRaisesText("asks for a comment") as caught:
            self._close(order, self.reason, comment="   ")
        self.assertEqual(caught.exception.code, "comment_required")
        self.assertEqual(order.subscription_state, "3_progress")
        self._close(order, self.reason, comment="Too slow")
        self.assertEqual(order.close_comment, "Too slow")

    def test_churn_list_shows_the_comment(self):
        order = self._create_subscription()
        self._close(order, self.reason, comment="Found cheaper")
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "subscription_close.sale_subscription_churn_action"
        )
        list_view = self.env.ref("subscription_close.sale_subscription_churn_view_list")
        self.assertIn(list_view.id, [view_id for view_id, _mode in action["views"]])
        arch = self.env["sale.order"].get_view(list_view.id, "list")["arch"]
        self.assertIn('name="close_comment"', arch)

    def test_withdrawal_credits_what_was_paid(self):
        tax = self.env["account.tax"].create(
            {"name": "VAT 22%", "amount": 22.0, "type_tax_use": "sale"}
        )
        self.product_sub.taxes_id = tax
        self.plan_notice.minimum_term_months = 12
        with freeze_time("2026-01-10"):
            order = self._create_subscription(plan=self.plan_notice)
            self._run_cron()
            invoice = self._invoices(order)
            self.assertEqual(invoice.state, "posted")
            self.assertEqual(invoice.amount_total, 36.6)
        with freeze_time("2026-01-20"):
            self.assertEqual(order._get_withdrawal_last_day(), date(2026, 1, 24))
            credit_notes = order._subscription_withdraw()
        self.assertEqual(order.subscription_state, "6_churn")
        self.assertEqual(order.end_date, date(2026, 1, 20))
        self.assertEqual(
            order.close_reason_id, self.env.ref("subscription_close.close_reason_withdrawal")
        )
        self.assertEqual(len(credit_notes), 1)
        self.assertEqual(credit_notes.state, "draft")
        self.assertEqual(credit_notes.move_type, "out_refund")
        self.assertEqual(credit_notes.reversed_entry_id, invoice)
        self.assertEqual(credit_notes.amount_total, 36.6)
        self.assertEqual(credit_notes.subscription_id, order)

    def test_withdrawal_prorated(self):
        self.plan_notice.write({"withdrawal_refund": "prorated", "close_refund": "prorated"})
        with freeze_time("2026-01-10"):
            order = self._create_subscription(plan=self.plan_notice)
            self._run_cron()
        with freeze_time("2026-01-20"):
            credit_notes = order._subscription_withdraw()
        # One credit note (the withdrawal's, not the closing's too), for
        # 21 Jan - 9 Feb: 20 of 31 days.
        self.assertEqual(len(credit_notes), 1)
        self.assertEqual(
            len(order.subscription_invoice_ids.filtered(lambda m: m.move_type == "out_refund")), 1
        )
        self.assertAlmostEqual(credit_notes.amount_total, round(30.0 * 20 / 31, 2))

    def test_withdrawal_refused_when_already_credited(self):
        with freeze_time("2026-01-10"):
            order = self._create_subscription(plan=self.plan_notice)
            self._run_cron()
            self._invoices(order)._reverse_moves()
            with self.assertRaisesText("already have a credit note"):
                order._subscription_withdraw()
        self.assertEqual(order.subscription_state, "3_progress")


@tagged("post_install", "-at_install")
class TestAnnualReminder(SubscriptionCommon):
    def test_reminded_once_a_year(self):
        self.plan_year.annual_reminder = True
        with freeze_time("2025-03-01"):
            order = self._create_subscription(plan=self.plan_year)
            quiet = self._create_subscription()
            closing = self._create_subscription(plan=self.plan_year)
            closing.sudo()._action_close(self.reason, {closing.id: date(2026, 3, 31)})
        template = self.env.ref("subscription_close.mail_template_subscription_annual_reminder")

        def reminders():
            return self.env["mail.message"].search(
                [
                    ("model", "=", "sale.order"),
                    ("res_id", "=", order.id),
                    ("subject", "like", "what it costs and how to cancel it"),
                ]
            )

        with freeze_time("2026-02-28"):
            self._run_cron("subscription_close.ir_cron_send_annual_reminders")
        self.assertFalse(reminders())
        with freeze_time("2026-03-01"):
            self._run_cron("subscription_close.ir_cron_send_annual_reminders")
            self._run_cron("subscription_close.ir_cron_send_annual_reminders")
        message = reminders()
        self.assertEqual(len(message), 1)
        self.assertIn("/subscriptions/cancel?order_id=%s" % order.id, message.body)
        self.assertIn("30.00", message.body)
        self.assertEqual(order.annual_reminder_date, date(2026, 3, 1))
        self.assertFalse(quiet.annual_reminder_date)
        # Closing already: not reminded of a renewal it will not have.
        self.assertFalse(closing.annual_reminder_date)
        self.assertTrue(template.body_html)
        with freeze_time("2027-03-01"):
            self._run_cron("subscription_close.ir_cron_send_annual_reminders")
        self.assertEqual(len(reminders()), 2)


@tagged("post_install", "-at_install")
class TestCancellationPage(SubscriptionPortalCommon):
    """The public cancellation page, as a visitor without an account."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.plan_notice = _create_notice_plan(cls.env, user_pausable=True)
        cls.subscription = cls._create_subscription(plan=cls.plan_notice)
        cls.other_customer, cls.other_portal_user = cls._create_portal_customer(
            "Bob Other", "sc_portal_other"
        )
        cls.other_subscription = cls._create_subscription(
            plan=cls.plan_notice, partner=cls.other_customer
        )
        cls.Cancellation = cls.env["sale.subscription.cancellation"]
        cls.env.company.email = "shop@example.com"

    def _declare(self, csrf=True, **data):
        values = {
            "order_reference": self.subscription.name,
            "email": self.customer.email,
            "kind": "ordinary",
            **data,
        }
        if csrf:
            values["csrf_token"] = Request.csrf_token(self)
        return self.url_open("/subscriptions/cancel", data=values, method="POST")

    def _declarations(self):
        return self.Cancellation.sudo().search([], order="id")

    def _process(self):
        self._run_cron(PROCESS_CRON)

    def _confirmation(self, declaration):
        self.env.invalidate_all()
        mail = declaration.confirmation_mail_id
        self.assertTrue(mail)
        return mail

    def test_the_withdrawal_link_leads_to_a_withdrawal_page(self):
        self.authenticate(None, None)
        page = self.url_open("/subscriptions/cancel?kind=withdrawal").text
        self.assertIn(">Withdraw from contract here</h1>", page)
        self.assertNotIn('id="subscription_withdraw_link"', page)
        self.assertIn(">Confirm withdrawal</button>", page)
        page = self.url_open("/subscriptions/cancel").text
        self.assertIn(">Cancel contracts here</h1>", page)
        self.assertIn('id="subscription_withdraw_link"', page)

    def test_without_a_date_the_plan_says_when(self):
        """A plan that ends its customers' closings at the end of the period
        does so for the cancellation page too."""
        self.plan_notice.write({"notice_days": 0, "user_closable_options": "end_of_period"})
        period_end = self.subscription._get_period_end_dates()[self.subscription.id]
        self.assertGreater(period_end, self.subscription._subscription_today())
        self._login()
        self.assertIn(
            format_date(self.env, period_end, lang_code=self.user_portal.lang),
            self.url_open("/subscriptions/cancel").text,
        )
        self.authenticate(None, None)
        self._declare()
        self._process()
        declaration = self._declarations()
        self.assertEqual((declaration.outcome, declaration.end_date), ("closing", period_end))
        self.assertEqual(self.subscription.end_date, period_end)

    def test_a_declaration_is_evidence(self):
        self.authenticate(None, None)
        self._declare(email="nobody@example.com")
        self._process()
        declaration = self._declarations()
        self.assertEqual(declaration.state, "review")
        as_salesman = declaration.with_user(self.user_salesman)
        for vals in (
            {"email": "someone@example.com"},
            {"declared_at": "2020-01-01 00:00:00"},
            {"state": "received"},
            {"order_id": self.subscription.id},
        ):
            with self.assertRaises(UserError):
                as_salesman.write(vals)
        as_salesman.message_post(body="Called the customer")
        as_salesman.action_mark_done()
        self.assertEqual(declaration.state, "done")
        self.assertEqual(declaration.email, "nobody@example.com")
        # A salesperson who sees their own documents sees the declarations of
        # their subscriptions and those matched with none, not the others'.
        self._declare()
        self._process()
        matched = self._declarations() - declaration
        self.assertEqual(matched.order_id, self.subscription)
        Own = self.Cancellation.with_user(self.user_salesman_own)
        self.subscription.user_id = self.user_salesman
        self.assertEqual(Own.search([]), declaration)
        self.subscription.user_id = self.user_salesman_own
        self.assertEqual(Own.search([]), declaration | matched)

    def test_page_reachable_without_login(self):
        self.authenticate(None, None)
        response = self.url_open("/subscriptions/cancel", allow_redirects=False)
        self.assertEqual(response.status_code, 200)
        page = response.text
        # One form, the confirm button on it, the kinds, no sign-in.
        self.assertEqual(page.count('id="subscription_cancel_form"'), 1)
        self.assertIn('id="subscription_cancel_submit"', page)
        self.assertIn(">Cancel now</button>", page)
        for name in ("order_reference", "email", "kind", "cause", "wished_end_date", "comment"):
            self.assertIn(f'name="{name}"', page)
        self.assertIn('value="extraordinary"', page)
        self.assertIn('value="withdrawal"', page)
        self.assertIn("Withdraw from contract here", page)
        self.assertNotIn('name="login"', page)
        # Nothing of any subscription shows to a visitor without token.
        self.assertNotIn(self.subscription.name, page)
        # Linked from the footer of every page: the subscription page a
        # customer opens from an email, without an account.
        portal_page = self.url_open(self.subscription.get_portal_url()).text
        self.assertIn('class="o_subscription_cancel_footer_link', portal_page)
        self.assertIn('href="/subscriptions/cancel"', portal_page)

    def test_match_closes_as_the_plan_says_and_confirms(self):
        self.authenticate(None, None)
        response = self._declare(comment="Moving abroad", tz="America/New_York")
        self.assertEqual(response.status_code, 200)
        self.assertIn("Your declaration is received", response.text)
        declaration = self._declarations()
        self.assertEqual(len(declaration), 1)
        self.assertEqual(declaration.state, "received")
        # Its processing is triggered at once.
        self.assertTrue(
            self.env["ir.cron.trigger"]
            .sudo()
            .search_count(
                [
                    ("cron_id", "=", self.env.ref(PROCESS_CRON).id),
                    ("call_at", "<=", declaration.declared_at + timedelta(minutes=1)),
                ]
            )
        )
        self._process()
        order = self.subscription
        today = order._subscription_today()
        self.assertEqual(declaration.state, "done")
        self.assertEqual(declaration.order_id, order)
        self.assertEqual(declaration.outcome, "closing")
        self.assertEqual(order.subscription_state, "3_progress")
        self.assertEqual(order.end_date, today + timedelta(days=14))
        self.assertEqual(declaration.end_date, order.end_date)
        self.assertEqual(
            order.close_reason_id, self.env.ref("subscription_close.close_reason_cancelled_online")
        )
        self.assertEqual(order.close_comment, "Moving abroad")
        self.assertEqual(order.subscription_cancellation_ids, declaration)
        # No closure email besides the confirmation.
        self.assertFalse(order.close_mail_to_send)
        # The chatter keeps the declaration, with its date and time.
        message = self._closing_messages(order)
        self.assertEqual(len(message), 1)
        self.assertEqual(message.author_id, self.customer)
        company_tz = order._subscription_tz()
        self.assertIn(declaration._format_declared_at(company_tz), message.body)
        self.assertIn(declaration.name, message.body)
        # The confirmation: what was declared, when (the customer's and the
        # company's time), the end date and how to keep it.
        mail = self._confirmation(declaration)
        self.assertEqual(mail.email_to, self.customer.email)
        self.assertFalse(mail.auto_delete)
        body = mail.body_html
        self.assertIn(declaration._format_declared_at("America/New_York"), body)
        if company_tz != "America/New_York":
            self.assertIn(declaration._format_declared_at(company_tz), body)
        self.assertRegex(declaration._format_declared_at(company_tz), r"\d{2}:\d{2}:\d{2}")
        self.assertIn(format_date(self.env, order.end_date), body)
        self.assertIn("Moving abroad", body)
        self.assertIn(order.name, body)
        self.assertIn("you can keep your subscription", body)
        self.assertIn("Moving abroad", declaration.confirmation_body)
        self.assertIn(format_date(self.env, order.end_date), declaration.confirmation_body)

    def test_mismatch_creates_a_request_and_reveals_nothing(self):
        self.authenticate(None, None)
        self._declare(order_reference="warm-up")
        self._declarations().unlink()

        def declare(**data):
            # The same work either way: the same queries.
            before = self.cr.sql_log_count
            response = self._declare(**data)
            return response, self.cr.sql_log_count - before

        matching, queries = declare()
        wrong_email, queries_wrong_email = declare(email="nobody@example.com")
        no_such, queries_no_such = declare(order_reference="S99999")
        self.assertEqual(queries, queries_wrong_email)
        self.assertEqual(queries, queries_no_such)
        first, second, third = self._declarations()

        def normalized(response, declaration):
            text = response.text
            for declared_at in declaration._get_declared_at_texts():
                text = text.replace(declared_at, "DECLARED_AT")
            for value in (declaration.email, declaration.order_reference):
                text = text.replace(value, "VALUE")
            # The CSRF tokens of the form and of the page's script (they
            # carry the second of the request).
            return re.sub(r'csrf_token(" value=|: )"[^"]*"', "", text)

        self.assertEqual(matching.status_code, wrong_email.status_code)
        self.assertEqual(matching.status_code, no_such.status_code)
        self.assertEqual(normalized(matching, first), normalized(wrong_email, second))
        self.assertEqual(normalized(matching, first), normalized(no_such, third))
        self._process()
        self.assertEqual(first.state, "done")
        for declaration in (second, third):
            self.assertEqual(declaration.state, "review")
            self.assertEqual(declaration.review_reason, "unmatched")
            self.assertFalse(declaration.order_id)
            self.assertTrue(declaration.activity_ids)
            # Acknowledged all the same, to the address given.
            mail = self._confirmation(declaration)
            self.assertEqual(mail.email_to, declaration.email)
            self.assertIn("We could not yet match your declaration", mail.body_html)

    def test_another_customers_reference_with_a_right_email(self):
        self.authenticate(None, None)
        before = self._snapshot(self.other_subscription)
        self._declare(order_reference=self.other_subscription.name, email=self.customer.email)
        self._declare(order_reference=self.subscription.name, email=self.other_customer.email)
        self._process()
        self.assertEqual(self._declarations().mapped("review_reason"), ["unmatched", "unmatched"])
        self.assertEqual(self._snapshot(self.other_subscription), before)
        self.env.invalidate_all()
        self.assertFalse(self.subscription.end_date)

    def test_reference_and_email_ignore_case_and_spaces(self):
        self.authenticate(None, None)
        self._declare(
            order_reference=f"  {self.subscription.name.lower()} ",
            email=self.customer.email.upper(),
        )
        self._process()
        self.assertEqual(self._declarations().order_id, self.subscription)

    def test_wished_end_date(self):
        self.authenticate(None, None)
        today = self.subscription._subscription_today()
        # Too early: as soon as the notice period allows.
        self._declare(wished_end_date=(today + timedelta(days=3)).isoformat())
        self._process()
        self.assertEqual(self.subscription.end_date, today + timedelta(days=14))
        mail = self._confirmation(self._declarations())
        self.assertIn("a notice period of 14 days", mail.body_html)
        # A later wish is kept for another subscription.
        later = self._create_subscription(plan=self.plan_notice)
        self._declare(
            order_reference=later.name, wished_end_date=(today + timedelta(days=40)).isoformat()
        )
        self._process()
        self.assertEqual(later.end_date, today + timedelta(days=40))

    def test_extraordinary_needs_a_cause_and_a_review(self):
        self.authenticate(None, None)
        response = self._declare(kind="extraordinary")
        self.assertEqual(response.status_code, 400)
        self.assertIn("Please fill in this field.", response.text)
        self.assertFalse(self._declarations())
        self._declare(kind="extraordinary", cause="The service has been down for weeks")
        self._process()
        declaration = self._declarations()
        self.assertEqual(declaration.state, "review")
        self.assertEqual(declaration.review_reason, "cause")
        self.assertTrue(declaration.activity_ids)
        # Ends at the ordinary date at the latest.
        self.assertEqual(
            self.subscription.end_date, self.subscription._subscription_today() + timedelta(days=14)
        )
        self.assertIn("We review the cause you gave", self._confirmation(declaration).body_html)
        declaration.with_user(self.user_salesman).action_mark_done()
        self.assertEqual(declaration.state, "done")
        self.assertFalse(declaration.activity_ids)

    def test_withdrawal_within_the_period(self):
        self.plan_notice.minimum_term_months = 12
        self.subscription.start_date = self.subscription._subscription_today() - timedelta(days=5)
        self._run_cron()
        invoice = self._invoices(self.subscription)
        self.assertEqual(invoice.state, "posted")
        self.authenticate(None, None)
        page = self.url_open("/subscriptions/cancel?kind=withdrawal").text
        self.assertIn('id="subscription_withdraw_submit"', page)
        self.assertIn(">Confirm withdrawal</button>", page)
        self.assertRegex(page, r'id="subscription_cancel_kind_withdrawal"[^>]*checked')
        self._declare(kind="withdrawal")
        self._process()
        order = self.subscription
        declaration = self._declarations()
        self.assertEqual(declaration.outcome, "withdrawn")
        self.assertEqual(order.subscription_state, "6_churn")
        self.assertEqual(
            order.close_reason_id, self.env.ref("subscription_close.close_reason_withdrawal")
        )
        credit_note = order.subscription_invoice_ids.filtered(lambda m: m.move_type == "out_refund")
        self.assertEqual(credit_note.state, "draft")
        self.assertEqual(credit_note.amount_total, invoice.amount_total)
        body = self._confirmation(declaration).body_html
        self.assertIn("You withdrew from the contract", body)
        self.assertIn(declaration._format_declared_at(order._subscription_tz()), body)

    def test_withdrawal_after_the_period_is_an_ordinary_cancellation(self):
        self.subscription.start_date = self.subscription._subscription_today() - timedelta(days=20)
        self.authenticate(None, None)
        self._declare(kind="withdrawal")
        self._process()
        declaration = self._declarations()
        self.assertEqual(declaration.outcome, "closing")
        self.assertEqual(
            self.subscription.close_reason_id,
            self.env.ref("subscription_close.close_reason_cancelled_online"),
        )
        self.assertIn(
            "withdrawal period of your subscription is over",
            self._confirmation(declaration).body_html,
        )

    def test_withdrawal_after_an_ordinary_close_is_kept_for_review(self):
        self.subscription.sudo()._action_close(
            self.reason,
            {self.subscription.id: self.subscription._subscription_today()},
            override_terms=True,
        )
        self.authenticate(None, None)
        self._declare(kind="withdrawal")
        self._process()
        declaration = self._declarations()
        self.assertEqual((declaration.state, declaration.review_reason), ("review", "refused"))
        self.assertIn("credit what they paid by hand", declaration.review_note)
        self.assertTrue(declaration.activity_ids)
        self.assertEqual(self.subscription.close_reason_id, self.reason)

    def test_rate_limits(self):
        self.authenticate(None, None)
        # One email, whatever the reference: no more confirmations to it.
        for index in range(EMAIL_LIMIT_PER_DAY):
            self.assertEqual(self._declare(order_reference=f"X{index}").status_code, 200)
        response = self._declare()
        self.assertEqual(response.status_code, 429)
        self.assertIn("Too many cancellations", response.text)
        self.assertEqual(len(self._declarations()), EMAIL_LIMIT_PER_DAY)
        # One client, whatever the email.
        for index in range(CLIENT_LIMIT_PER_HOUR - EMAIL_LIMIT_PER_DAY):
            self.assertEqual(self._declare(email=f"visitor{index}@example.com").status_code, 200)
        self.assertEqual(self._declare(email="another@example.com").status_code, 429)
        self.assertEqual(len(self._declarations()), CLIENT_LIMIT_PER_HOUR)
        # The address is kept only as a keyed hash.
        self.assertNotIn("127.0.0.1", self._declarations()[0].client_key)
        # Nobody blocks a customer who proves they hold the subscription:
        # signed in, their declaration is taken and matched at once.
        self._login()
        response = self._declare(order_reference=self.subscription.name.lower())
        self.assertEqual(response.status_code, 200)
        declaration = self._declarations()[-1]
        self.assertEqual(declaration.order_id, self.subscription)
        self._process()
        self.assertEqual(declaration.state, "done")
        self.assertTrue(self.subscription.is_closing)

    @mute_logger("odoo.http")
    def test_a_file_in_place_of_a_text_is_refused(self):
        self.authenticate(None, None)
        response = self.url_open(
            "/subscriptions/cancel",
            data={
                "order_reference": self.subscription.name,
                "kind": "ordinary",
                "csrf_token": Request.csrf_token(self),
            },
            files={"email": ("email.txt", b"alice@example.com", "text/plain")},
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("The request was not understood", response.text)
        self.assertFalse(self._declarations())

    def test_a_failure_keeps_the_declaration_for_review(self):
        self.authenticate(None, None)
        self._declare()
        declaration = self._declarations()
        with (
            patch.object(
                type(self.env["sale.order"]),
                "_subscription_cancel_declared",
                side_effect=ValueError("broken"),
            ),
            mute_logger("odoo.addons.subscription_close.models.sale_subscription_cancellation"),
        ):
            self._process()
        self.assertEqual(declaration.state, "review")
        self.assertEqual(declaration.review_reason, "refused")
        self.assertIn("broken", declaration.review_note)
        self.assertEqual(self.subscription.subscription_state, "3_progress")
        self.assertFalse(self.subscription.end_date)
        self.assertTrue(declaration.confirmation_mail_id)
        self.assertTrue(declaration.activity_ids)

    @mute_logger("odoo.http")
    def test_refused_requests_create_nothing(self):
        self.authenticate(None, None)
        response = self._declare(csrf=False)
        self.assertEqual(response.status_code, 400)
        for data in (
            {"email": ""},
            {"email": "not an email"},
            {"order_reference": ""},
            {"kind": "everything"},
            {"wished_end_date": "31/12/2026"},
            {"comment": "x" * 2001},
            {"unexpected": "1"},
        ):
            response = self._declare(**data)
            self.assertEqual(response.status_code, 400, data)
        self.assertFalse(self._declarations())
        self.assertFalse(self.subscription.end_date)

    def test_signed_in_customer_gets_the_page_prefilled(self):
        self._login()
        page = self.url_open("/subscriptions/cancel").text
        order = self.subscription
        self.assertIn(f'value="{order.name}"', page)
        self.assertNotIn(self.other_subscription.name, page)
        self.assertIn(f'value="{self.customer.email}"', page)
        earliest = format_date(self.env, order._subscription_today() + timedelta(days=14))
        self.assertIn(earliest, page)
        self.assertIn("a notice period of 14 days", page)
        self._declare()
        self._process()
        declaration = self._declarations()
        self.assertEqual(declaration.user_id, self.user_portal)
        self.assertEqual(declaration.order_id, order)

    def test_link_with_token_prefills_the_page(self):
        order = self.subscription
        url = order._get_cancellation_url()
        self.authenticate(None, None)
        page = self.url_open(url).text
        self.assertIn(f'value="{order.name}"', page)
        self.assertIn(f'value="{self.customer.email}"', page)
        wrong = self.url_open(f"/subscriptions/cancel?order_id={order.id}&access_token=wrong").text
        self.assertNotIn(order.name, wrong)
        # Linked from the subscription page and the subscription emails.
        self._login()
        self.assertIn(url.replace("&", "&amp;"), self.url_open(order.get_portal_url()).text)

    def test_offers_beside_the_confirm_button(self):
        self.plan_notice.retention_placement = "beside"
        self._login()
        page = self.url_open("/subscriptions/cancel").text
        self.assertIn("o_subscription_cancel_offer", page)
        self.assertLess(
            page.index('id="subscription_cancel_submit"'), page.index("o_subscription_cancel_offer")
        )
        self.plan_notice.retention_placement = "before"
        self.assertNotIn("o_subscription_cancel_offer", self.url_open("/subscriptions/cancel").text)


@tagged("post_install", "-at_install")
class TestPortalRetentionPlacement(SubscriptionPortalCommon):
    """The portal's Close popup: a retention offer before confirming, or
    beside the confirm button, as the plan says; the save rate counts both."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.reason.write(
            {
                "retention_message": "<p>Switch to Basic: half the price.</p>",
                "retention_button_text": "Switch",
                "retention_url": "/my/home",
            }
        )
        cls.subscription = cls._create_subscription()

    def test_default_per_company_country(self):
        Plan = self.env["sale.subscription.plan"]
        company = self.env.company
        company.country_id = self.env.ref("base.it")
        self.assertEqual(Plan.create({"name": "IT"}).retention_placement, "before")
        company.country_id = self.env.ref("base.de")
        self.assertEqual(Plan.create({"name": "DE"}).retention_placement, "beside")
        company.write(
            {
                "country_id": self.env.ref("base.us").id,
                "state_id": self.env.ref("base.state_us_5").id,
            }
        )
        self.assertEqual(Plan.create({"name": "CA"}).retention_placement, "beside")
        # The plan's company decides, not the current one.
        german = self.env["res.company"].create(
            {"name": "German shop", "country_id": self.env.ref("base.de").id}
        )
        company.write({"country_id": self.env.ref("base.it").id, "state_id": False})
        plan = Plan.create({"name": "Shop DE", "company_id": german.id})
        self.assertEqual(plan.retention_placement, "beside")

    def test_beside_closes_at_once_and_counts_the_offer(self):
        self.plan_month.retention_placement = "beside"
        self._login()
        page = self.url_open(self.subscription.get_portal_url()).text
        self.assertIn("o_subscription_offers_beside", page)
        response = self._post_close(
            self.subscription, close_reason_id=self.reason.id, close_comment="Too dear"
        )
        self.assertEqual(self._redirect_code(response), "closed")
        self.env.invalidate_all()
        self.assertEqual(self.subscription.subscription_state, "6_churn")
        self.assertEqual(self.subscription.close_comment, "Too dear")
        self.assertEqual(
            self._retention_events(self.subscription).mapped("event_type"),
            ["started", "shown", "closed"],
        )

    def test_before_shows_the_offer_first(self):
        self.plan_month.retention_placement = "before"
        self._login()
        page = self.url_open(self.subscription.get_portal_url()).text
        self.assertNotIn("o_subscription_offers_beside", page)
        response = self._post_close(self.subscription, close_reason_id=self.reason.id)
        self.assertEqual(self._redirect_code(response), "retention")
        self.env.invalidate_all()
        self.assertEqual(self.subscription.subscription_state, "3_progress")

    def test_comment_required_from_the_portal(self):
        self.plan_month.retention_placement = "beside"
        self.reason.comment_required = True
        self._login()
        before = self._snapshot(self.subscription)
        response = self._post_close(self.subscription, close_reason_id=self.reason.id)
        self.assertEqual(self._redirect_code(response), "comment_required")
        self.assertEqual(self._snapshot(self.subscription), before)
        response = self._post_close(
            self.subscription, close_reason_id=self.reason.id, close_comment="x" * 2001
        )
        self.assertEqual(self._redirect_code(response), "invalid_request")
        self.assertEqual(self._snapshot(self.subscription), before)

    def test_portal_close_keeps_the_notice_period(self):
        self.plan_month.notice_days = 10
        self._login()
        page = self.url_open(self.subscription.get_portal_url()).text
        end = self.subscription._subscription_today() + timedelta(days=10)
        self.assertIn(format_date(self.env, end), page)
        self._post_close(
            self.subscription,
            close_reason_id=self.env.ref("subscription_close.close_reason_other").id,
        )
        self.env.invalidate_all()
        self.assertTrue(self.subscription.is_closing)
        self.assertEqual(self.subscription.end_date, end)


@tagged("post_install", "-at_install")
class TestCancellationLanguages(SubscriptionPortalCommon):
    """The closing flow speaks German and Italian, with the words the law and
    the Italian documentation use."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for code in ("de_DE", "it_IT"):
            cls.env["res.lang"]._activate_lang(code)
        cls.env["ir.module.module"]._load_module_terms(
            ["subscription_close"], ["de_DE", "it_IT"], overwrite=True
        )
        cls.subscription = cls._create_subscription()

    def _page_in(self, lang):
        self.user_portal.lang = lang
        if "website" in self.env:
            self.env["website"].search([]).language_ids |= self.env["res.lang"]._lang_get(lang)
        self._login()
        return self.url_open("/subscriptions/cancel").text

    def test_german(self):
        page = self._page_in("de_DE")
        for text in (
            "Verträge hier kündigen",
            ">jetzt kündigen</button>",
            "Vertrag hier widerrufen",
            ">Widerruf bestätigen</button>",
        ):
            self.assertIn(text, page)
        order_page = self.url_open(self.subscription.get_portal_url()).text
        self.assertIn("Abonnement beenden", order_page)
        self.assertIn("Verträge hier kündigen", order_page)
        env_de = self.env(context=dict(self.env.context, lang="de_DE"))
        wizard = env_de["sale.order.close"].get_views([(False, "form")])["views"]["form"]
        self.assertIn('string="Kündigungsgrund"', wizard["arch"])
        states = dict(
            env_de["sale.order"].fields_get(["subscription_state"])["subscription_state"][
                "selection"
            ]
        )
        self.assertEqual(states["6_churn"], "Gekündigt")

    def test_review_todo_in_the_salespersons_language(self):
        self.subscription.user_id = self.user_salesman
        self.user_salesman.lang = "de_DE"
        declaration = self.env["sale.subscription.cancellation"]._declare(
            {
                "order_reference": self.subscription.name,
                "email": self.customer.email,
                "kind": "extraordinary",
                "cause": "Umzug ins Ausland",
                "lang": "it_IT",
                "company_id": self.subscription.company_id.id,
            }
        )
        self._run_cron("subscription_close.ir_cron_process_cancellations")
        self.assertEqual((declaration.state, declaration.review_reason), ("review", "cause"))
        self.assertEqual(declaration.activity_ids.user_id, self.user_salesman)
        self.assertEqual(
            declaration.activity_ids.summary,
            "Außerordentliche Kündigung: wichtigen Grund prüfen",
        )

    def test_italian(self):
        page = self._page_in("it_IT")
        for text in (
            "Disdici qui i contratti",
            ">Disdici ora</button>",
            "Recedi dal contratto qui",
            ">Conferma il recesso</button>",
        ):
            self.assertIn(text, page)
