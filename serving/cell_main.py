"""Run one region's cell: HTTP (uvicorn) and gRPC in one process."""
from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import uvicorn

from fallback_tiers.admission import AdmissionSettings
from fallback_tiers.settings import LadderSettings
from regions.topology import Topology
from replication.geo_artifacts import open_geo_store
from serving.cell_runtime import CellRuntime, CellSettings
from serving.drift_monitor import SamplerSettings
from serving.feature_store import FeatureStore
from serving.grpc_server import start_grpc
from serving.http_app import create_app


def build_runtime(topology: Topology, *, region: str, artifacts_url: str, state_dir: Path,
                  tokens_file: str = "") -> CellRuntime:
    reg = topology.region(region)
    store = FeatureStore.from_url(reg.redis_url(topology.region_host(region)), region=region, topology=topology)
    return CellRuntime(
        topology=topology, region=region, store=store,
        artifacts=open_geo_store(artifacts_url, reg.geography, topology=topology),  # its geography's bundles only
        cache_dir=state_dir / "cells" / region / "bundles", settings=CellSettings.from_env(os.environ, base=CellSettings(tokens_file=tokens_file)),
        ladder_settings=LadderSettings.from_env(os.environ), sampler_settings=SamplerSettings.from_env(os.environ),
        admission_settings=AdmissionSettings.from_env(os.environ),
    )


def run_cell(topology: Topology, *, region: str, artifacts_url: str, state_dir: Path, tokens_file: str = "") -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s cell-{region} %(levelname)s %(name)s: %(message)s")
    reg = topology.region(region)
    runtime = build_runtime(topology, region=region, artifacts_url=artifacts_url, state_dir=state_dir, tokens_file=tokens_file)
    runtime.start()
    grpc_server, _ = start_grpc(runtime, host=topology.region_host(region), port=reg.grpc_port)
    config = uvicorn.Config(create_app(runtime), host=topology.region_host(region), port=reg.http_port, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    stopped = threading.Event()

    def shutdown(*_: object) -> None:
        stopped.set()
        server.should_exit = True

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    try:
        server.run()
    finally:
        grpc_server.stop(grace=1.0)
        runtime.stop()
