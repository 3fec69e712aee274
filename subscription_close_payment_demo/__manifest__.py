{
    "name": "Subscription Closing: card payments demo",
    "summary": "Demo data of subscription_close's card payments, with Odoo's demo payment "
    "provider (installed by itself next to both)",
    "version": "19.0.1.0.0",
    "category": "Hidden",
    "website": "https://github.com/subscription-close/subscription_close",
    "author": "Subscription Close developers",
    "maintainers": [],
    "license": "LGPL-3",
    "depends": ["subscription_close", "payment_demo"],
    "data": [],
    "demo": ["demo/subscription_close_payment_demo.xml"],
    "auto_install": True,
    "installable": True,
}
