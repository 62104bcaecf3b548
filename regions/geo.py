"""The geo-pinning policy: where may a user's personal data live?

Personal data (features, interaction logs, cached results) of a user whose home geography is G
may be held only by regions of G. Every component that stores user data asks this module.
"""
from __future__ import annotations

import hashlib

from regions.errors import InputError
from regions.topology import Topology


def may_hold_personal_data(topology: Topology, *, region: str, home_geography: str) -> bool:
    """True when `region` may store personal data of a user living in `home_geography`."""
    return topology.region(region).geography == topology.geography(home_geography).name


def require_personal_data_allowed(topology: Topology, *, region: str, home_geography: str) -> None:
    """Raise InputError when storing this user's data in `region` would break residency."""
    if not may_hold_personal_data(topology, region=region, home_geography=home_geography):
        raise InputError(
            "region",
            f"region {region!r} is in geography {topology.region(region).geography!r} and may not hold "
            f"personal data of users from {home_geography!r}",
        )


def replication_peers(topology: Topology, region: str) -> tuple[str, ...]:
    """Regions that receive copies of `region`'s interaction log: same geography, never itself."""
    geo = topology.region(region).geography
    return tuple(r.name for r in topology.regions_in(geo) if r.name != region)


def home_geography_of(user_id: str, topology: Topology) -> str:
    """Home geography of a user id.

    User ids carry their geography as a prefix ("eu-12345"), which is how the synthetic
    marketplace and the edge agree on it without a lookup. Ids without a known prefix are
    placed deterministically by hash, weighted by nothing: the mapping only has to be stable.
    """
    prefix, sep, _ = user_id.partition("-")
    if sep and prefix in topology.geographies:
        return prefix
    if not user_id:
        raise InputError("user_id", "must not be empty")
    names = sorted(topology.geographies)
    digest = int.from_bytes(hashlib.sha256(user_id.encode()).digest()[:8], "big")
    return names[digest % len(names)]
