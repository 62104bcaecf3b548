"""The probes of the ShopNow chaos extension (re-exported from chaos.probes and chaos.expectations)."""
from chaos import expectations as _expectations
from chaos import probes as _probes
from chaos.expectations import *  # noqa: F401,F403
from chaos.probes import *  # noqa: F401,F403

__all__ = list(_probes.__all__) + list(_expectations.__all__)
