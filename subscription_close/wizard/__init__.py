from . import sale_order_close
from . import sale_order_reopen
