"""The cell's admission gate (serving.admission_gate) on a virtual clock, its metrics under the real
promtool, and the servers' arrival stamps (HTTP middleware, gRPC interceptor) on real servers."""
from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fallback_tiers.admission import AdmissionSettings
from fallback_tiers.tiers import Tier
from observability.promtool import check_metrics
from regions.processes import free_port
from serving.admission_gate import AdmissionGate
from serving.admission_metrics import AdmissionMetrics
from serving.grpc_server import ARRIVAL, ArrivalInterceptor
from serving.http_app import ARRIVED_AT, ArrivalMiddleware
from tests.fallback_tiers.virtual import VirtualClock


def gate(**changes: object) -> tuple[AdmissionGate, VirtualClock]:
    clock = VirtualClock()
    return AdmissionGate(AdmissionSettings(**changes), clock=clock), clock  # type: ignore[arg-type]


def test_queue_time_is_counted_from_the_arrival_stamp() -> None:
    g, clock = gate()
    arrived = clock()
    clock.advance(0.030)
    ticket = g.admit(asked=Tier.FULL, arrived_at=arrived)
    assert ticket.admission.max_tier is Tier.CACHED and ticket.admission.reason.value == "queue_time"
    assert g.remaining_s(ticket, 0.150) == pytest.approx(0.120)   # the deadline started at arrival
    g.done(ticket, ranked=False)
    snap = g.snapshot()
    assert snap.admitted == 1 and snap.queued_s_sum == pytest.approx(0.030)
    assert snap.degraded[("queue_time", "cached")] == 1 and snap.full_in_flight == 0


def test_no_stamp_means_nothing_queued_and_a_future_stamp_is_clamped() -> None:
    g, clock = gate()
    assert g.admit(asked=Tier.FULL, arrived_at=None).admission.max_tier is Tier.FULL
    assert g.admit(asked=Tier.FULL, arrived_at=clock() + 5).admission.max_tier is Tier.FULL
    assert g.snapshot().queued_s_sum == 0.0


def test_full_rankings_in_flight_count_against_the_limit_until_done() -> None:
    g, clock = gate(initial_limit=2.0)
    a, b = (g.admit(asked=Tier.FULL, arrived_at=clock()) for _ in range(2))
    assert (a.in_flight, b.in_flight) == (1, 2)
    third = g.admit(asked=Tier.FULL, arrived_at=clock())
    assert third.admission.max_tier is Tier.CACHED and third.admission.reason.value == "concurrency_limit"
    g.done(third, ranked=False)                # a degraded request never held a slot
    assert g.snapshot().full_in_flight == 2
    g.done(a, ranked=False)                     # a full ranking that never ran frees its slot, no sample
    assert g.snapshot().full_in_flight == 1
    assert g.admit(asked=Tier.FULL, arrived_at=clock()).admission.max_tier is Tier.FULL


def test_slow_full_rankings_lower_the_limit() -> None:
    g, clock = gate(initial_limit=8.0)

    def rounds(rtt: float, n: int) -> float:
        for _ in range(n):  # fill the limit each round, as a saturated cell does
            tickets = []
            while not tickets or tickets[-1].admission.full:
                tickets.append(g.admit(asked=Tier.FULL, arrived_at=clock()))
            clock.advance(rtt)
            for t in tickets:
                g.done(t, ranked=t.admission.full)
        return g.snapshot().limit

    fast = rounds(0.005, 10)
    assert fast > 8.0                                  # within tolerance: it grew
    slow = rounds(0.050, 20)
    assert slow < 0.6 * fast and g.snapshot().short_rtt_s == pytest.approx(0.050)


def test_off_never_degrades_and_does_not_move_the_limit() -> None:
    g, clock = gate(enabled=False, initial_limit=1.0)
    arrived = clock()
    clock.advance(1.0)
    tickets = [g.admit(asked=Tier.FULL, arrived_at=arrived) for _ in range(10)]
    assert {t.admission.max_tier for t in tickets} == {Tier.FULL}
    for t in tickets:
        g.done(t, ranked=True)
    snap = g.snapshot()
    assert snap.limit == 1.0 and sum(snap.degraded.values()) == 0 and not snap.enabled


def test_threads_leave_the_counts_consistent() -> None:
    g = AdmissionGate(AdmissionSettings(initial_limit=4.0))

    def work() -> None:
        for _ in range(500):
            t = g.admit(asked=Tier.FULL, arrived_at=time.monotonic())
            g.done(t, ranked=t.admission.full)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = g.snapshot()
    assert snap.full_in_flight == 0 and snap.admitted == 4000


def test_metrics_pass_promtool_and_show_the_counts() -> None:
    g, clock = gate(initial_limit=1.0)
    held = g.admit(asked=Tier.FULL, arrived_at=clock())
    g.admit(asked=Tier.FULL, arrived_at=clock())             # limit reached
    arrived = clock()
    clock.advance(0.1)
    g.admit(asked=Tier.FULL, arrived_at=arrived)             # queued 100 ms
    registry = CollectorRegistry()
    registry.register(AdmissionMetrics(g))
    text = generate_latest(registry).decode()
    lint = check_metrics(text)
    assert lint.ok, lint.output
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("shopnow_cell_admission_requests_total", ())] == 3
    assert samples[("shopnow_cell_admission_degraded_total", (("reason", "concurrency_limit"), ("tier", "cached")))] == 1
    assert samples[("shopnow_cell_admission_degraded_total", (("reason", "queue_time"), ("tier", "segment")))] == 1
    assert samples[("shopnow_cell_admission_full_in_flight", ())] == 1
    assert samples[("shopnow_cell_admission_limit", ())] == 1.0
    assert samples[("shopnow_cell_admission_enabled", ())] == 1.0
    assert samples[("shopnow_cell_admission_queued_seconds_total", ())] == pytest.approx(0.1)
    g.done(held, ranked=True)


def test_promtool_does_fail_a_badly_named_counter() -> None:
    """The lint above can fail: a counter without _total is reported."""
    assert not check_metrics("# HELP shopnow_bad A counter.\n# TYPE shopnow_bad counter\nshopnow_bad 1\n").ok


def test_http_middleware_stamps_before_the_threadpool() -> None:
    """The stamp is taken before FastAPI runs a sync route in its threadpool: with the pool's one
    thread held, a second request's stamp is earlier than its handler by the time it waited."""
    import anyio.to_thread

    app = FastAPI()
    app.add_middleware(ArrivalMiddleware)
    release = threading.Event()
    seen: dict[str, float] = {}

    @app.get("/hold")
    def hold() -> dict[str, str]:
        release.wait(5)
        return {}

    @app.get("/stamp")
    def stamp(request: Request) -> dict[str, float]:
        seen["waited"] = time.monotonic() - request.scope[ARRIVED_AT]
        return {}

    with TestClient(app) as client:
        def one_thread() -> None:
            anyio.to_thread.current_default_thread_limiter().total_tokens = 1

        client.portal.call(one_thread)  # type: ignore[union-attr]
        holder = threading.Thread(target=client.get, args=("/hold",))
        holder.start()
        time.sleep(0.2)
        waiter = threading.Thread(target=client.get, args=("/stamp",))
        waiter.start()
        time.sleep(0.3)
        release.set()
        holder.join(5)
        waiter.join(5)
    assert seen["waited"] >= 0.2


def test_grpc_interceptor_stamps_before_the_executor_queue() -> None:
    """With the server's one worker busy, a second call's stamp is from before it waited for it."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    release = threading.Event()
    waited: list[float] = []

    class Slow(health_pb2_grpc.HealthServicer):
        def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext) -> health_pb2.HealthCheckResponse:
            if request.service == "hold":
                release.wait(5)
            else:
                waited.append(time.monotonic() - (ARRIVAL.get() or time.monotonic()))
            return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1), interceptors=(ArrivalInterceptor(),))
    health_pb2_grpc.add_HealthServicer_to_server(Slow(), server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            held = stub.Check.future(health_pb2.HealthCheckRequest(service="hold"), timeout=10)
            time.sleep(0.2)
            second = stub.Check.future(health_pb2.HealthCheckRequest(service="x"), timeout=10)
            time.sleep(0.3)
            release.set()
            held.result()
            second.result()
    finally:
        server.stop(0)
    assert waited and waited[0] >= 0.25
