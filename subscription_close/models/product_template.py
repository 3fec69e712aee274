from odoo import fields, models


class ProductTemplate(models.Model):
    _inherit = "product.template"

    recurring_invoice = fields.Boolean(
        string="Subscription",
        help="A subscription product is sold on a recurring plan: an order that "
        "contains it is a subscription.",
    )
    subscription_plan_id = fields.Many2one(
        "sale.subscription.plan",
        string="Default Recurring Plan",
        help="The plan of a quotation or a cart that sells this product without a plan yet "
        "(e.g. bought online).",
    )
