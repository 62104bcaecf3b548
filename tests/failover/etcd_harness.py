"""The etcd side of the control-store contract suite: a store on its own key prefix of the shared
cluster, and what "the lease's TTL ran out" means there (etcd revokes the lease: its key goes)."""
from __future__ import annotations

import uuid
from typing import Iterator

from failover.etcd_store import EtcdStore
from regions.etcd_cluster import Cluster


def revoke_lease(store: EtcdStore, name: str) -> None:
    """What a lease TTL running out does in etcd: the lease ends and its key is deleted."""
    kv, _ = store._range(store._lease_key(name), op="test expire")
    assert kv is not None and kv.lease, f"lease {name!r} is not held"
    store._revoke(kv.lease, op="test expire")


def etcd_store(cluster: Cluster) -> Iterator[tuple[EtcdStore, str]]:
    prefix = f"test-{uuid.uuid4().hex[:8]}/"
    url = cluster.url(prefix=prefix)
    store = EtcdStore(cluster.endpoints, prefix=prefix)
    yield store, url
    store.close()
