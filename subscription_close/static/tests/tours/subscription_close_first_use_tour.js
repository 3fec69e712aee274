import { registry } from "@web/core/registry";

/**
 * A sales manager opens Configuration ‣ Close Reasons: clicking a reason opens
 * its form with the Retention offer tab (not an inline edit), its count holds
 * the churned subscriptions only and opens them; a reason created here is
 * offered in the portal.
 */
registry.category("web_tour.tours").add("subscription_close_reason_form_tour", {
    steps: () => [
        {
            content: "The reasons can still be reordered by drag and drop",
            trigger: ".o_list_view .o_data_row .o_row_handle",
        },
        {
            content: "The count of No longer needed is its churned subscription only",
            trigger:
                ".o_list_view .o_data_row:has(td[name='name']:contains('No longer needed')) td[name='subscription_count']:text(1)",
        },
        {
            content: "Click the reason",
            trigger: ".o_list_view .o_data_row td[name='name']:contains('No longer needed')",
            run: "click",
        },
        {
            content: "Its form opens, not an editable row",
            trigger: ".o_form_view .o_field_widget[name='name'] input:value(No longer needed)",
        },
        {
            content: "Open the Retention offer tab",
            trigger: ".o_form_view .o_notebook .nav-link:contains('Retention offer')",
            run: "click",
        },
        {
            content: "Write the retention button",
            trigger: ".o_form_view .o_field_widget[name='retention_button_text'] input",
            run: "edit Talk to us",
        },
        {
            content: "Save",
            trigger: ".o_form_view .o_form_button_save",
            run: "click",
        },
        {
            trigger: ".o_form_view .o_form_saved",
        },
        {
            content: "The stat button counts the churned subscription only",
            trigger: ".o_form_view .oe_stat_button[name='action_open_subscriptions']:contains('1')",
            run: "click",
        },
        {
            content: "It opens that churned subscription, and only it",
            trigger:
                ".o_list_view tbody:not(:has(.o_data_row:nth-child(2))) .o_data_row:contains('Churned')",
        },
        {
            content: "Back to the reasons",
            trigger: ".o_breadcrumb .breadcrumb-item:first-child a",
            run: "click",
        },
        {
            content: "Create a reason from the menu",
            trigger: ".o_list_view .o_list_button_add",
            run: "click",
        },
        {
            trigger: ".o_form_view .o_field_widget[name='name'] input",
            run: "edit Moved to a competitor",
        },
        {
            content: "It is visible in the portal by default",
            trigger: ".o_form_view .o_field_widget[name='visible_in_portal'] input:checked",
        },
        {
            trigger: ".o_form_view .o_form_button_save",
            run: "click",
        },
        {
            trigger: ".o_form_view .o_form_saved",
        },
    ],
});

/**
 * A sales manager types a new reason in the Close popup: the placeholder says
 * they may, the reason is created, and (asserted in Python) kept out of the
 * portal until a manager ticks it.
 */
registry.category("web_tour.tours").add("subscription_close_new_reason_tour", {
    steps: () => [
        {
            content: "Click Close",
            trigger: ".o_form_view .o_statusbar_buttons button[name='action_open_close_wizard']",
            run: "click",
        },
        {
            content: "The placeholder invites a manager to type a new reason",
            trigger:
                ".modal .o_field_widget[name='close_reason_id'] input[placeholder*='type a new one']",
            run: "edit Moving abroad",
        },
        {
            content: "Create it",
            trigger: ".o-autocomplete--dropdown-item a:contains('Create \"Moving abroad\"')",
            run: "click",
        },
        {
            trigger: ".modal .o_field_widget[name='close_reason_id'] input:value(Moving abroad)",
        },
        {
            content: "Submit",
            trigger: ".modal footer button[name='action_close']",
            run: "click",
        },
        {
            content: "The subscription is closed with it",
            trigger: ".o_form_view .o_field_widget[name='close_reason_id']:contains('Moving abroad')",
        },
    ],
});

/**
 * A churned subscription, seen by a salesperson: no Next Invoice Date (list,
 * kanban, form), no Create Invoice, read-only lines; a running one keeps them.
 */
registry.category("web_tour.tours").add("subscription_close_churned_tour", {
    steps: () => [
        {
            content: "List: the running subscription shows its next invoice date",
            trigger:
                ".o_list_view .o_data_row:contains('In Progress') td[name='next_invoice_date']:not(:empty)",
        },
        {
            content: "List: the churned one does not",
            trigger: ".o_list_view .o_data_row:contains('Churned') td[name='next_invoice_date']:empty",
        },
        {
            content: "Kanban view",
            trigger: ".o_switch_view.o_kanban",
            run: "click",
        },
        {
            content: "Kanban: the running card shows its next invoice date",
            trigger:
                ".o_kanban_group:has(.o_column_title:contains('In Progress')) .o_kanban_record .o_field_widget[name='next_invoice_date']",
        },
        {
            content: "Kanban: the churned card does not",
            trigger:
                ".o_kanban_group:has(.o_column_title:contains('Churned')) .o_kanban_record:not(:has(.o_field_widget[name='next_invoice_date']))",
        },
        {
            content: "Open the churned subscription",
            trigger: ".o_kanban_group:has(.o_column_title:contains('Churned')) .o_kanban_record",
            run: "click",
        },
        {
            content: "It is churned",
            trigger: ".o_form_view .ribbon:contains('Churned')",
        },
        {
            content: "No next invoice date, no Create Invoice, no line can be added",
            trigger:
                ".o_form_view:not(:has(.o_field_widget[name='next_invoice_date'])):not(:has(.o_statusbar_buttons button:contains('Create Invoice'))):not(:has(.o_field_x2many_list_row_add))",
        },
        {
            content: "The lines are read-only",
            trigger: ".o_form_view .o_field_widget[name='order_line'] .o_list_renderer:not(.o_list_renderer_editable) .o_data_row",
        },
        {
            content: "Reopen it",
            trigger: ".o_form_view .o_statusbar_buttons button[name='action_open_reopen_wizard']",
            run: "click",
        },
        {
            trigger: ".modal .modal-footer .btn-primary",
            run: "click",
        },
        {
            content: "In progress again: the next invoice date, Create Invoice and the lines are back",
            trigger:
                ".o_form_view:not(:has(.ribbon)) .o_field_widget[name='next_invoice_date']",
        },
        {
            trigger: ".o_form_view .o_statusbar_buttons button:contains('Create Invoice')",
        },
        {
            trigger: ".o_form_view .o_field_x2many_list_row_add",
        },
    ],
});

/**
 * A salesperson keeps a subscription whose closing is scheduled: the button
 * says Keep Subscription (not a second "Cancel"), the chatter says it.
 */
registry.category("web_tour.tours").add("subscription_close_keep_backend_tour", {
    steps: () => [
        {
            content: "The subscription is Closing",
            trigger: ".o_form_view .ribbon:contains('Closing')",
        },
        {
            content: "Keep Subscription",
            trigger:
                ".o_form_view .o_statusbar_buttons button[name='action_cancel_close']:text(Keep Subscription)",
            run: "click",
        },
        {
            content: "Confirm",
            trigger: ".modal .modal-footer .btn-primary",
            run: "click",
        },
        {
            content: "No longer closing",
            trigger: ".o_form_view:not(:has(.ribbon)) .o_statusbar_buttons button[name='action_open_close_wizard']",
        },
        {
            content: "The chatter says who kept it",
            trigger: ".o-mail-Message:contains('Subscription kept by')",
        },
    ],
});
