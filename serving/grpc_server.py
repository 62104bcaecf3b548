"""The cell's gRPC server: shopnow.v1.Recommender (Recommend, LogEvents) and grpc.health.v1.

Errors map to status codes: bad input INVALID_ARGUMENT (the message names the field), unknown
product NOT_FOUND, a log that cannot acknowledge UNAVAILABLE. A client's deadline is honoured: the
cell's own budget is the smaller of the request's `deadline_ms` and the time left on the call.
"""
from __future__ import annotations

import logging
import time
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from contracts.cell_api import MAX_BATCH, MAX_DEADLINE_S, check_count, event_from_pb, surface_name
from contracts.events import Event
from contracts.proto import recommend_pb2 as pb
from contracts.proto import recommend_pb2_grpc as pb_grpc
from contracts.tiers import Tier
from regions.errors import InputError, TemporaryError
from serving.admission_gate import ArrivalStamp
from serving.cell_runtime import CellRuntime
from serving.recommender import Answer, UnknownProduct

log = logging.getLogger(__name__)
SERVICE = "shopnow.v1.Recommender"


def answer_pb(answer: Answer) -> pb.RecommendResponse:
    return pb.RecommendResponse(
        items=[pb.Item(item_id=i.item_id, score=float(i.score)) for i in answer.items], tier=answer.tier,
        region=answer.region, bundle_version=answer.bundle_version,
        skipped=[pb.Skip(tier=t, reason=r) for t, r in answer.skipped], stale=answer.stale, latency_ms=answer.latency_ms,
        experiment=answer.experiment, arm=answer.arm,
    )


ARRIVAL = ArrivalStamp()
"""The arrival time of the call the current worker thread serves (set by ArrivalInterceptor)."""


class ArrivalInterceptor(grpc.ServerInterceptor):
    """Stamps a call's arrival when the server looks up its handler: on the server's poller thread,
    before the call is queued for the executor, so the admission gate counts the executor queue
    (serving.admission_gate). The wrapped handler hands the stamp to the worker thread."""

    def intercept_service(self, continuation: Any, handler_call_details: grpc.HandlerCallDetails) -> Any:
        arrived = time.monotonic()
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        def stamped(request: Any, context: grpc.ServicerContext) -> Any:
            ARRIVAL.set(arrived)
            try:
                return inner(request, context)
            finally:
                ARRIVAL.set(None)

        return grpc.unary_unary_rpc_method_handler(stamped, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)


class RecommenderServicer(pb_grpc.RecommenderServicer):
    def __init__(self, runtime: CellRuntime) -> None:
        self.runtime = runtime

    def _budget(self, request: pb.RecommendRequest, context: grpc.ServicerContext) -> float:
        budget = self.runtime.recommender.ladder_settings.deadline_s
        if request.deadline_ms > 0:
            budget = min(budget, request.deadline_ms / 1000.0)
        remaining = context.time_remaining()
        if remaining is not None:
            budget = min(budget, max(remaining - 0.002, 0.001))
        return min(budget, MAX_DEADLINE_S)

    def Recommend(self, request: pb.RecommendRequest, context: grpc.ServicerContext) -> pb.RecommendResponse:
        rec = self.runtime.recommender
        delay = rec.faults.answer_delay_s()
        if delay:  # chaos fault: a slow host, before (and outside) the cell's own timing
            time.sleep(delay)
        started = time.perf_counter()
        surface = surface_name(request.surface)
        try:
            count = check_count(request.count or 8)
            if request.surface == pb.SIMILAR:
                answer = rec.similar(product_id=request.product_id, count=count)
            elif request.surface == pb.CART:
                if not request.cart_items:
                    raise InputError("cart_items", "give at least one product id")
                answer = rec.cart(cart_items=list(request.cart_items), count=count)
            else:
                user = None if request.anonymous or not request.user_id else request.user_id
                tier = Tier.parse(request.max_tier) if request.max_tier else Tier.FULL
                answer = self.runtime.homepage(user_id=user, count=count, asked=tier,
                                               deadline_s=self._budget(request, context),
                                               geography=request.geography if user else "", arrived_at=ARRIVAL.get())
        except UnknownProduct as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except InputError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception as exc:
            self.runtime.observe(surface=surface, tier="error", ok=False, latency_ms=(time.perf_counter() - started) * 1000)
            log.exception("Recommend failed")
            context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__})")
        self.runtime.observe(surface=surface, tier=answer.tier, ok=True, latency_ms=answer.latency_ms, skipped=answer.skipped,
                        version=answer.bundle_version, experiment=answer.experiment)
        return answer_pb(answer)

    def _events(self, request: pb.EventBatch) -> list[Event]:
        """The batch as Events (contracts.cell_api.event_from_pb); InputError naming events[i].field."""
        now, events = time.time(), []
        for i, message in enumerate(request.events):
            try:
                events.append(event_from_pb(message, now=now, topology=self.runtime.topology))
            except InputError as exc:
                self.runtime.metrics.refuse_events(exc.field)
                raise InputError(f"events[{i}].{exc.field}", exc.reason) from exc
        return events

    def LogEvents(self, request: pb.EventBatch, context: grpc.ServicerContext) -> pb.LogAck:
        if len(request.events) > MAX_BATCH:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"events: at most {MAX_BATCH} events per batch, got {len(request.events)}")
        try:
            ids = self.runtime.store_events(self._events(request))
        except InputError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except TemporaryError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"not acknowledged: {exc}")
        return pb.LogAck(accepted=len(ids), stream_ids=ids)


def start_grpc(runtime: CellRuntime, *, host: str, port: int, workers: int = 16) -> tuple[grpc.Server, health.HealthServicer]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
                         interceptors=(ArrivalInterceptor(),))
    pb_grpc.add_RecommenderServicer_to_server(RecommenderServicer(runtime), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise TemporaryError(f"could not bind gRPC to {host}:{port}; is the port in use?")
    server.start()
    return server, health_servicer
