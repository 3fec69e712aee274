from . import sale_make_invoice_advance
from . import sale_order_close
from . import sale_order_reopen
from . import sale_order_pause
