"""chaostoolkit-shopnow: the Chaos Toolkit extension of the ShopNow stack.

    chaos discover chaostoolkit-shopnow --no-install      lists every action and probe
    chaosshopnow.actions, chaosshopnow.probes             the activities, re-exported (same
                                                          functions, docstrings and signatures)

Experiments may name either module ("chaos.actions" as the shipped ones do, or
"chaosshopnow.actions"): they are the same functions. The code is in the shopnow-regions
project's `chaos` package; this distribution exists because chaoslib maps a distribution name to
its first top-level package, and shopnow-regions ships eight.
"""
from __future__ import annotations

from chaos import __version__, discover

__all__ = ["__version__", "discover"]
