from . import test_subscription_base
