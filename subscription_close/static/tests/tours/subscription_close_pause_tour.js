import { registry } from "@web/core/registry";

/**
 * A portal customer about to close a pausable subscription takes the pause
 * instead, from the Close popup: the page says Paused until..., and Resume
 * now puts it back in progress.
 */
registry.category("web_tour.tours").add("subscription_close_pause_tour", {
    steps: () => [
        {
            content: "The subscription is In Progress, with Pause and Close on the left",
            trigger:
                ".o_portal_sidebar:has(#o_subscription_pause_button) #subscription_info .o_subscription_status[data-status='3_progress']",
        },
        {
            content: "Click Close subscription",
            trigger: ".o_portal_sidebar #o_subscription_close_button",
            run: "click",
        },
        {
            content: "Pick a reason",
            trigger: "#modal_subscription_close.show #subscription_close_form label:contains('No longer needed')",
            run: "click",
        },
        {
            content: "The popup offers to pause instead: take one month",
            trigger:
                "#modal_subscription_close.show #subscription_pause_instead .o_subscription_pause_instead_button:contains('1 month')",
            run: "click",
            expectUnloadPage: true,
        },
        {
            content: "The page says the subscription is paused until a date",
            trigger: "#subscription_alert.alert-success:contains('paused until')",
        },
        {
            content: "Paused Until, in the subscription block",
            trigger:
                "#subscription_info:has(.o_subscription_status[data-status='4_paused']):contains('Paused Until:') #subscription_paused_until",
        },
        {
            content: "No Pause button any more; Resume now",
            trigger: ".o_portal_sidebar:not(:has(#o_subscription_pause_button)) #o_subscription_resume_button",
            run: "click",
            expectUnloadPage: true,
        },
        {
            content: "The page says the subscription is active again",
            trigger: "#subscription_alert.alert-success:contains('active again')",
        },
        {
            content: "The subscription is In Progress again",
            trigger: "#subscription_info .o_subscription_status[data-status='3_progress']",
        },
        {
            content: "And can be paused again",
            trigger: ".o_portal_sidebar #o_subscription_pause_button",
        },
    ],
});
