{
    "name": "Subscription Closing",
    "summary": "Recurring plans, subscription orders and closing them "
    "from the backend or the customer portal",
    "version": "19.0.1.0.0",
    "category": "Sales/Subscriptions",
    "website": "https://github.com/subscription-close/subscription_close",
    "author": "Subscription Close developers",
    "maintainers": [],
    "license": "LGPL-3",
    "application": True,
    "installable": True,
    "depends": ["sale"],
    # Odoo Enterprise's Subscriptions defines the same models: never both.
    "excludes": ["sale_subscription"],
    "data": [
        "security/subscription_close_security.xml",
        "security/ir.model.access.csv",
        "data/mail_message_subtype_data.xml",
        "data/sale_order_close_reason_data.xml",
        "data/mail_template_data.xml",
        "data/ir_cron_data.xml",
        "views/sale_subscription_plan_views.xml",
        "views/product_template_views.xml",
        "views/sale_order_close_reason_views.xml",
        "wizard/sale_make_invoice_advance_views.xml",
        "wizard/sale_order_close_views.xml",
        "wizard/sale_order_reopen_views.xml",
        "wizard/sale_order_pause_views.xml",
        "views/sale_order_views.xml",
        "views/sale_subscription_churn_views.xml",
        "views/account_move_views.xml",
        "report/sale_subscription_retention_report_views.xml",
        "views/sale_portal_templates.xml",
        "views/subscription_close_menus.xml",
    ],
    "assets": {
        "web.assets_frontend": [
            "subscription_close/static/src/scss/subscription_portal.scss",
        ],
        "web.assets_tests": [
            "subscription_close/static/tests/tours/*.js",
        ],
    },
    "demo": [
        "demo/subscription_close_demo.xml",
        "demo/subscription_close_lifecycle_demo.xml",
    ],
}
