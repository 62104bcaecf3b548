"""Where the CLI's reads and changes go when the operator did not say: the running stack.

    controller_url(api, topology)   --api / REGIONCTL_API_URL, else the controller port of --topology,
                                    else of the topology the running stack recorded (stack.json),
                                    else of REGIONCTL_TOPOLOGY / topology.toml
    store_url(store)                --store / REGIONCTL_CONTROL_STORE, else the stack's control store
                                    (<REGIONCTL_STATE_DIR or var/stack>/control.db, an absolute path)
    open_existing_store(url)        open a store to READ: a SQLite file that does not exist is an
                                    error (InputError), never created empty
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from contracts.environment import topology_path
from failover.control_store import ControlStore
from failover.control_stores import store_from_url
from regions import stack
from regions.errors import InputError
from regions.topology import Topology, load_topology


def stack_topology(topology: Optional[Path]) -> Topology:
    if topology is not None:
        return load_topology(topology)
    recorded = stack.StackState.load(stack.default_state_dir()).topology_path
    if recorded and Path(recorded).exists():
        return load_topology(Path(recorded))
    return load_topology(topology_path(os.environ))


def controller_url(api: Optional[str], topology: Optional[Path]) -> str:
    if api:
        return api
    topo = stack_topology(topology)
    return f"http://{topo.settings.host}:{topo.settings.controller_port}"


def store_url(store: Optional[str]) -> str:
    return store or stack.stack_urls(stack.default_state_dir()).control_store


def open_existing_store(url: str) -> ControlStore:
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite" and rest != ":memory:" and not Path(rest).exists():
        raise InputError("--store", f"no control store at {Path(rest).resolve()}; start the stack (`regionctl up`), "
                                    "or name an existing one with --store / REGIONCTL_CONTROL_STORE")
    return store_from_url(url)


__all__ = ["controller_url", "open_existing_store", "stack_topology", "store_url"]
