"""The actions of the ShopNow chaos extension (re-exported from chaos.actions and, for the network
faults of a netns stack, chaos.net_actions)."""
from chaos import actions as _actions
from chaos import net_actions as _net_actions
from chaos.actions import *  # noqa: F401,F403  (the same functions, with their docstrings)
from chaos.net_actions import *  # noqa: F401,F403

__all__ = list(_actions.__all__) + list(_net_actions.__all__)
