from . import test_subscription_base
from . import test_close_backend
from . import test_performance
from . import test_ui
from . import test_i18n
from . import test_portal
from . import test_scheduled_close
from . import test_churn
