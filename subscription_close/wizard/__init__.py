from . import sale_order_close
