"""The actions of the ShopNow chaos extension (re-exported from chaos.actions)."""
from chaos import actions as _actions
from chaos.actions import *  # noqa: F401,F403  (the same functions, with their docstrings)

__all__ = list(_actions.__all__)
