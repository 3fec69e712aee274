import { registry } from "@web/core/registry";

/**
 * A visitor without an account cancels a subscription on a phone: the
 * footer's "Cancel contracts here" leads straight to the one form, whose
 * confirm button is on that first page; the answer says the declaration is
 * received, with its date and time.
 */
registry.category("web_tour.tours").add("subscription_close_cancel_page_tour", {
    steps: () => [
        {
            content: "Cancel contracts here, in the footer",
            trigger: "footer a.o_subscription_cancel_footer_link",
            run: "click",
            expectUnloadPage: true,
        },
        {
            content: "The form and its confirm button, on the first page",
            trigger: "#subscription_cancel_form:has(#subscription_cancel_submit)",
        },
        {
            content: "Nothing wider than the phone",
            trigger: "#subscription_cancel_form",
            run() {
                const width = document.documentElement.clientWidth;
                if (document.documentElement.scrollWidth > width + 1) {
                    throw new Error("The cancellation page is wider than the screen");
                }
            },
        },
        {
            content: "The subscription reference",
            trigger: "#subscription_cancel_reference",
            run: "edit S-TOUR-REF",
        },
        {
            content: "The email address",
            trigger: "#subscription_cancel_email",
            run: "edit tour@example.com",
        },
        {
            content: "Extraordinary asks for its cause",
            trigger: "label[for='subscription_cancel_kind_extraordinary']",
            run: "click",
        },
        {
            trigger: "#subscription_cancel_cause:visible",
            run: "edit The service stopped working",
        },
        {
            content: "Withdrawal shows Confirm withdrawal instead",
            trigger: "label[for='subscription_cancel_kind_withdrawal']",
            run: "click",
        },
        {
            trigger: "#subscription_withdraw_submit:visible",
        },
        {
            trigger: "#subscription_cancel_form:not(:has(#subscription_cancel_submit:visible))",
        },
        {
            content: "Back to an ordinary cancellation",
            trigger: "label[for='subscription_cancel_kind_ordinary']",
            run: "click",
        },
        {
            content: "Cancel now",
            trigger: "#subscription_cancel_submit:visible",
            run: "click",
            expectUnloadPage: true,
        },
        {
            content: "The declaration is received, dated",
            trigger: "#subscription_cancel_received:contains('tour@example.com')",
        },
    ],
});
