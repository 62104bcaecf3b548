"""ShopNow's Chaos Toolkit extension: actions, probes, experiments, game days and their reports.

Kept import-light: `import chaos` pulls in nothing heavy; chaoslib is imported by `discover()` only.
`chaos discover chaostoolkit-shopnow --no-install` lists the activities of `chaos.actions`,
`chaos.probes` and `chaos.expectations` (the fault-aware steady-state probes): the distribution
chaostoolkit-shopnow (extensions/chaostoolkit-shopnow, installed by `make setup`) holds the one
package `chaosshopnow` that chaoslib can map to (shopnow-regions has eight top-level packages).
Leave out `--no-install` and chaos would try to install chaostoolkit-shopnow from the registry.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "discover"]


def discover(discover_system: bool = True) -> dict[str, Any]:
    """Discover the activities of this extension (Chaos Toolkit's discovery protocol).

    The local stack is not inspected (`discover_system` is accepted for the protocol; the system
    part stays None): `regionctl ps` describes the running processes.
    """
    from chaoslib.discovery import discover_actions, discover_probes, initialize_discovery_result

    discovery: dict[str, Any] = initialize_discovery_result("shopnow-chaos", __version__, "shopnow")
    discovery["activities"].extend(discover_actions("chaos.actions"))
    discovery["activities"].extend(discover_actions("chaos.net_actions"))
    discovery["activities"].extend(discover_probes("chaos.probes"))
    discovery["activities"].extend(discover_probes("chaos.expectations"))
    return discovery
