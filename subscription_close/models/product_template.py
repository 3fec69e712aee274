from odoo import fields, models


class ProductTemplate(models.Model):
    _inherit = "product.template"

    recurring_invoice = fields.Boolean(
        string="Subscription",
        help="A subscription product is sold on a recurring plan: an order that "
        "contains it is a subscription.",
    )
