import { registry } from "@web/core/registry";

const openPopupAndPickOffer = () => [
    {
        content: "Click Close subscription",
        trigger: ".o_portal_sidebar #o_subscription_close_button",
        run: "click",
    },
    {
        content: "Pick the reason that has a retention offer",
        trigger: "#modal_subscription_close.show #subscription_close_form label:contains('Too expensive')",
        run: "click",
    },
    {
        content: "The offer shows before the final confirmation, Submit gives way to Close anyway",
        trigger:
            "#subscription_close_form .o_subscription_retention:visible:contains('costs half as much')",
    },
    {
        trigger: "#subscription_close_form:has(#subscription_close_submit:not(:visible))",
    },
    {
        content: "One Keep my subscription button, in the offer: the footer gives way",
        trigger: "#subscription_close_form:has(.modal-footer:hidden) .o_subscription_retention_keep:visible",
        run() {
            const keep = [...document.querySelectorAll("#modal_subscription_close a, #modal_subscription_close button")]
                .filter((el) => el.checkVisibility() && el.textContent.includes("Keep my subscription"));
            if (keep.length !== 1) {
                throw new Error(`${keep.length} visible "Keep my subscription" buttons, expected 1`);
            }
        },
    },
];

/** The customer sees the offer and keeps the subscription: nothing changes. */
registry.category("web_tour.tours").add("subscription_close_retention_kept_tour", {
    steps: () => [
        ...openPopupAndPickOffer(),
        {
            content: "Keep my subscription",
            trigger: "#subscription_close_form .o_subscription_retention:visible .o_subscription_retention_keep",
            run: "click",
            expectUnloadPage: true,
        },
        {
            content: "Back on the page, the subscription is still In Progress",
            trigger: "body:not(:has(#modal_subscription_close.show)) #subscription_info .o_subscription_status[data-status='3_progress']",
        },
    ],
});

/** The customer sees the offer and closes anyway. */
registry.category("web_tour.tours").add("subscription_close_retention_tour", {
    steps: () => [
        ...openPopupAndPickOffer(),
        {
            content: "Close anyway",
            trigger: "#subscription_close_form .o_subscription_retention:visible .o_subscription_retention_close",
            run: "click",
            expectUnloadPage: true,
        },
        {
            content: "The subscription is Closed",
            trigger: "#subscription_info .o_subscription_status[data-status='6_churn']",
        },
    ],
});
