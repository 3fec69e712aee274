import { registry } from "@web/core/registry";

/**
 * A salesperson closes an In Progress subscription from its form:
 * Close ‣ Close Reason popup ‣ pick a reason ‣ Submit ‣ Churned tag + reason.
 */
registry.category("web_tour.tours").add("subscription_close_backend_tour", {
    steps: () => [
        {
            content: "The subscription is In Progress",
            trigger: ".o_form_view .o_statusbar_status button.o_arrow_button_current:contains('In Progress')",
        },
        {
            content: "Click Close",
            trigger: ".o_form_view .o_statusbar_buttons button[name='action_open_close_wizard']",
            run: "click",
        },
        {
            content: "The Close Reason popup opens",
            trigger: ".modal .modal-title:contains('Close Reason')",
        },
        {
            content: "Type the beginning of a reason: a salesperson is told to pick one, not to type one",
            trigger:
                ".modal .o_field_widget[name='close_reason_id'] input[placeholder*='ask a sales manager']:not([placeholder*='type a new one'])",
            run: "edit Too exp",
        },
        {
            content: "Pick it from the dropdown",
            trigger: ".o-autocomplete--dropdown-item a:contains('Too expensive')",
            run: "click",
        },
        {
            content: "Submit",
            trigger: ".modal footer button[name='action_close']",
            run: "click",
        },
        {
            content: "The Churned tag is shown",
            trigger: ".o_form_view .ribbon:contains('Churned')",
        },
        {
            content: "The Close Reason is shown",
            trigger: ".o_form_view .o_field_widget[name='close_reason_id']:contains('Too expensive')",
        },
        {
            content: "The chatter names the reason",
            trigger: ".o-mail-Message:contains('Close Reason: Too expensive')",
        },
    ],
});
