import { registry } from "@web/core/registry";

/**
 * A plan that closes at the end of the period: the customer closes, sees the
 * subscription Closing, then changes their mind and keeps it.
 */
registry.category("web_tour.tours").add("subscription_close_portal_scheduled_tour", {
    steps: () => [
        {
            content: "Click Close subscription",
            trigger: ".o_portal_sidebar #o_subscription_close_button",
            run: "click",
        },
        {
            content: "The popup says the subscription stays active until the end of the period",
            trigger: "#modal_subscription_close.show #subscription_close_when",
        },
        {
            content: "Pick a reason",
            trigger: "#subscription_close_form label:contains('Too expensive')",
            run: "click",
        },
        {
            content: "Submit",
            trigger: "#subscription_close_submit",
            run: "click",
            expectUnloadPage: true,
        },
        {
            content: "The subscription is Closing",
            trigger: "#subscription_info .o_subscription_status[data-status='4_closing']:contains('Closing')",
        },
        {
            content: "Keep my subscription",
            trigger: ".o_portal_sidebar #o_subscription_keep_button",
            run: "click",
            expectUnloadPage: true,
        },
        {
            content: "The subscription goes on",
            trigger: "#subscription_alert.alert-success",
        },
        {
            content: "In Progress again, with the Close subscription button back",
            trigger: "#subscription_info .o_subscription_status[data-status='3_progress']",
        },
        {
            trigger: ".o_portal_sidebar #o_subscription_close_button",
        },
    ],
});
