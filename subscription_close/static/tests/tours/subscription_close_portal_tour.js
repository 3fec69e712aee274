import { registry } from "@web/core/registry";

/**
 * A portal customer closes a closable subscription from the order page:
 * Close subscription ‣ popup with the pre-configured reasons only ‣ Submit ‣ Closed.
 */
registry.category("web_tour.tours").add("subscription_close_portal_tour", {
    steps: () => [
        {
            content: "The subscription is In Progress",
            trigger: "#subscription_info .o_subscription_status[data-status='3_progress']",
        },
        {
            content: "Click Close subscription, on the left",
            trigger: ".o_portal_sidebar #o_subscription_close_button",
            run: "click",
        },
        {
            content: "The popup offers the reasons, and no free-text reason (only a comment)",
            trigger:
                "#modal_subscription_close.show #subscription_close_form:has(input[type=radio]):not(:has(textarea:not([name=close_comment]))):not(:has(input[type=text]))",
        },
        {
            content: "System reasons are not offered",
            trigger: "#subscription_close_form:not(:contains('Subscription expired')):not(:contains('Closed by the company'))",
        },
        {
            content: "Pick a reason",
            trigger: "#subscription_close_form label:contains('No longer needed')",
            run: "click",
        },
        {
            content: "Submit",
            trigger: "#subscription_close_submit",
            run: "click",
            expectUnloadPage: true,
        },
        {
            content: "The page confirms the closing",
            trigger: "#subscription_alert.alert-success",
        },
        {
            content: "The subscription is Closed",
            trigger: "#subscription_info .o_subscription_status[data-status='6_churn']:contains('Closed')",
        },
        {
            content: "with its reason",
            trigger: "#subscription_close_reason:contains('No longer needed')",
        },
    ],
});
