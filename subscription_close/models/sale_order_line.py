from odoo import api, fields, models


class SaleOrderLine(models.Model):
    """Sale's invoicing figures of the recurring lines of a subscription.

    An order line is invoiced once; a recurring line once per period. For
    the recurring lines of a subscription (:meth:`SaleOrder._get_recurring_lines`)
    sale's quantities and amounts *to invoice* are those of the **current
    period**: the period starting on the next invoice date while it is due
    (``invoice_due``), else the last period billed. Only customer invoices of
    that period count as invoiced quantities: a credit note of a subscription
    (e.g. the prorated one of a closing) credits an amount, it does not give
    the period back. What was invoiced over all periods (sale's amounts
    invoiced, the sales analysis) is left as sale computes it.

    Everything is computed from stored fields (the order's next invoice date
    and ``invoice_due``, the periods of the invoices), never from today.
    """

    _inherit = "sale.order.line"

    def _get_subscription_recurring_lines(self):
        """The lines of ``self`` that a subscription bills every period."""
        recurring = self.browse()
        for order, lines in self.grouped("order_id").items():
            if order.is_subscription:
                recurring |= lines & order._get_recurring_lines()
        return recurring

    def _get_period_invoice_lines(self):
        """The lines of the customer invoices (not cancelled) that bill the
        current period of the subscription of the recurring line ``self``."""
        self.ensure_one()
        day = self.order_id._get_current_period_day()
        if not day:
            return self.env["account.move.line"]
        return self.invoice_lines.filtered(
            lambda line: (
                line.move_id.move_type == "out_invoice"
                and line.move_id.state != "cancel"
                and line.move_id.subscription_period_start
                and line.move_id.subscription_period_start
                <= day
                <= line.move_id.subscription_period_end
            )
        )

    def _prepare_qty_invoiced(self):
        invoiced = super()._prepare_qty_invoiced()
        for line in self._get_subscription_recurring_lines():
            invoiced[line] = sum(
                invoice_line.product_uom_id._compute_quantity(
                    invoice_line.quantity, line.product_uom_id, round=False
                )
                for invoice_line in line._get_period_invoice_lines()
            )
        return invoiced

    @api.depends(
        "order_id.next_invoice_date",
        "order_id.invoice_due",
        "invoice_lines.move_id.subscription_period_start",
        "invoice_lines.move_id.subscription_period_end",
    )
    def _compute_qty_invoiced(self):
        return super()._compute_qty_invoiced()

    @api.depends("order_id.invoice_due")
    def _compute_qty_to_invoice(self):
        """A recurring line is to invoice while the period of its
        subscription is due, for what that period has not billed yet."""
        res = super()._compute_qty_to_invoice()
        for line in self._get_subscription_recurring_lines():
            if line.state == "sale" and line.order_id.invoice_due:
                line.qty_to_invoice = max(line.product_uom_qty - line.qty_invoiced, 0.0)
            else:
                line.qty_to_invoice = 0.0
        return res

    def _get_period_billed_quantity(self):
        """The quantity the current period of the recurring line ``self``
        bills: the line's while the period is due or once it is invoiced,
        nothing for a period that has not begun (a paused or churned
        subscription whose period was never billed)."""
        self.ensure_one()
        if self.state != "sale":
            return 0.0
        if self.order_id.invoice_due or self._get_period_invoice_lines():
            return self.product_uom_qty
        return 0.0

    def _get_period_posted_lines(self):
        self.ensure_one()
        return self._get_period_invoice_lines().filtered(
            lambda invoice_line: invoice_line.move_id.state == "posted"
        )

    @api.depends(
        "order_id.next_invoice_date",
        "order_id.invoice_due",
        "invoice_lines.move_id.subscription_period_start",
        "invoice_lines.move_id.subscription_period_end",
    )
    def _compute_untaxed_amount_to_invoice(self):
        res = super()._compute_untaxed_amount_to_invoice()
        for line in self._get_subscription_recurring_lines():
            quantity = line._get_period_billed_quantity()
            if not quantity:
                line.untaxed_amount_to_invoice = 0.0
                continue
            posted = sum(
                invoice_line.currency_id._convert(
                    invoice_line.price_subtotal,
                    line.currency_id,
                    line.company_id,
                    invoice_line.move_id.invoice_date or fields.Date.today(),
                )
                for invoice_line in line._get_period_posted_lines()
            )
            line.untaxed_amount_to_invoice = max(line.price_subtotal - posted, 0.0)
        return res

    @api.depends(
        "order_id.next_invoice_date",
        "order_id.invoice_due",
        "invoice_lines.move_id.subscription_period_start",
        "invoice_lines.move_id.subscription_period_end",
        "invoice_lines.move_id.state",
    )
    def _compute_amount_to_invoice(self):
        res = super()._compute_amount_to_invoice()
        for line in self._get_subscription_recurring_lines():
            quantity = line._get_period_billed_quantity()
            if not (quantity and line.product_uom_qty):
                line.amount_to_invoice = 0.0
                continue
            posted = sum(
                invoice_line.product_uom_id._compute_quantity(
                    invoice_line.quantity, line.product_uom_id
                )
                for invoice_line in line._get_period_posted_lines()
            )
            unit_price_total = line.price_total / line.product_uom_qty
            line.amount_to_invoice = max(quantity - posted, 0.0) * unit_price_total
        return res

    def _prepare_invoice_line(self, **optional_values):
        """A recurring line billed for a period says which, under its
        description: "1 Dec 2026 – 31 Dec 2026"."""
        values = super()._prepare_invoice_line(**optional_values)
        order = self.order_id
        if (
            not self.display_type
            and order.is_subscription
            and order.invoice_due
            and self in order._get_recurring_lines()
        ):
            label = order._get_subscription_period_label(*order._get_invoice_period())
            values["name"] = f"{values.get('name') or self.name}\n{label}"
        return values
