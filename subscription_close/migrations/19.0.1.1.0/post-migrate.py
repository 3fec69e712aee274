"""The system reasons of what the company or the system closes are
involuntary churn (their data is loaded once: set them here on databases
that had them before the Churn field existed); the plans of a company in
Germany or California show the retention offers beside the confirm button
(the new column took the default of one company for all)."""

from odoo import SUPERUSER_ID, api

INVOLUNTARY_REASONS = (
    "close_reason_expired",
    "close_reason_unpaid",
    "close_reason_payment_failed",
    "close_reason_company",
)


def migrate(cr, version):
    if not version:
        return
    env = api.Environment(cr, SUPERUSER_ID, {})
    ids = [
        env["ir.model.data"]._xmlid_to_res_id(
            f"subscription_close.{xmlid}", raise_if_not_found=False
        )
        for xmlid in INVOLUNTARY_REASONS
    ]
    env["sale.order.close.reason"].browse([id_ for id_ in ids if id_]).exists().write(
        {"churn_type": "involuntary"}
    )
    Plan = env["sale.subscription.plan"].with_context(active_test=False)
    for company, plans in Plan.search([("company_id", "!=", False)]).grouped("company_id").items():
        plans.write({"retention_placement": Plan._default_retention_placement(company)})
