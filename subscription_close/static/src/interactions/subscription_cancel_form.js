import { Interaction } from "@web/public/interaction";
import { registry } from "@web/core/registry";

/**
 * The cancellation page: the time zone of the visitor's browser goes with
 * the declaration, so that its confirmation states the time of the
 * declaration in the visitor's own time. The form works without it.
 */
export class SubscriptionCancelForm extends Interaction {
    static selector = ".o_subscription_cancel_form";

    start() {
        const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
        for (const input of this.el.querySelectorAll("input.o_subscription_cancel_tz")) {
            input.value = timeZone;
        }
    }
}

registry
    .category("public.interactions")
    .add("subscription_close.subscription_cancel_form", SubscriptionCancelForm);
