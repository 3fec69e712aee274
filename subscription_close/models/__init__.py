from . import sale_subscription_plan
from . import product_template
from . import sale_order
