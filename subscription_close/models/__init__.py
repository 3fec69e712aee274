from . import sale_subscription_plan
from . import sale_order_close_reason
from . import product_template
from . import account_move
from . import sale_order
from . import sale_order_closing
from . import sale_order_invoicing
