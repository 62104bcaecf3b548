"""A bounded schemathesis run against a real server: every operation of an OpenAPI document, with
valid (positive) and invalid (negative) requests, checked by schemathesis' own checks.

    conformance_failures(document, base_url, token=, max_examples=, after=)  -> ["<op> <mode>: <why>", ...]

Checks: no 5xx, status code documented, content type documented, documented headers sent (the
401's WWW-Authenticate), body valid against the documented schema, invalid input refused
(negative data), auth enforced where the operation declares the bearer scheme (`token` is given to
schemathesis for the document's `bearer` scheme). Unknown query keys are not generated: FastAPI
ignores them, as HTTP APIs commonly do. Hypothesis does not shrink (one failing example per
operation and mode is enough to report), is derandomized (every run sends the same requests) and
keeps no example database; `max_examples` bounds each operation and mode.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection, ignored_auth]


def conformance_failures(document: dict[str, Any], base_url: str, *, token: str | None = None,
                         max_examples: int = 10, after: Callable[[Any], None] | None = None,
                         only: str | None = None, modes: tuple[GenerationMode, ...] = tuple(GenerationMode),
                         timing: dict[str, float] | None = None) -> list[str]:
    """What schemathesis found wrong with the server at `base_url` against `document` (empty: none).
    `after(case)` runs after each call (a test resets what a call changed); `only` limits the run to
    operations whose label ("GET /healthz") contains it; `timing` receives seconds per operation."""
    config: dict[str, Any] = {"generation": {"allow-extra-parameters": False}}  # FastAPI ignores unknown query keys
    if token:  # the document's bearer scheme: negative cases may leave it out or spoil it
        config["auth"] = {"openapi": {"bearer": {"bearer": token}}}
    schema = schemathesis.openapi.from_dict(document, config=schemathesis.Config.from_dict(config))
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if only and only not in operation.label:
            continue
        started = time.perf_counter()
        for mode in modes:
            try:
                strategy = operation.as_strategy(generation_mode=mode)
            except Exception as exc:  # e.g. no negative form exists for an operation without inputs
                if mode is GenerationMode.POSITIVE:
                    failures.append(f"{operation.label} {mode.value}: cannot generate requests: {exc}")
                continue

            @given(case=strategy)
            @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def run(case: Any) -> None:
                try:
                    case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=10)
                finally:
                    if after is not None:
                        after(case)

            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup, or an unsatisfiable strategy
                if type(exc).__name__ == "Unsatisfiable" and mode is GenerationMode.NEGATIVE:
                    continue
                failures.append(f"{operation.label} {mode.value}: {type(exc).__name__}: {str(exc)[:1500]}")
        if timing is not None:
            timing[operation.label] = round(time.perf_counter() - started, 2)
    return failures


__all__ = ["CHECKS", "conformance_failures"]
