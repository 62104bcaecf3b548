"""The degradation ladder: decide which tier to try next, then act (tenacity style).

Two pure functions make every decision:

    choose_next(view, settings) -> Choice      the next tier to call, and the tiers passed over on
                                               the way with their reason (max_tier, anonymous,
                                               not_configured, breaker_open, budget)
    judge(attempt, settings)    -> Verdict     whether a tier's answer serves, else why not
                                               (timeout, error, empty, too_few), and what its
                                               dependencies' breakers should record

`Ladder.run` is the thin loop around them: it peeks at the breakers, calls the chosen tier with its
stage budget, applies the post-processing (the re-ranking rules) to the output of EVERY tier,
asks `judge`, reports to the breakers and goes on until a tier serves.

Budgets and late answers. A tier callable receives its budget in seconds and is expected to honour
it (a Redis socket timeout, a FAISS search bound): the ladder does not run tiers in threads and
cannot interrupt them. A tier that comes back after its budget counts as a failure (timeout) for
its breakers, so a dependency that is slow every time opens its breaker and stops costing time.
Its answer is still USED if the request's deadline has not expired: the work is done, the answer
beats a cheaper tier, and the cheaper tiers would need time the request no longer has. If the
deadline has expired it is dropped (reason timeout) and the popularity floor answers at once.

The floor. POPULARITY is in memory and cannot be skipped: no breaker, no budget, no max_tier,
anonymous or not. If it raises, the process is broken and the ladder raises PermanentError.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

from fallback_tiers.breaker import CircuitBreaker
from fallback_tiers.deadline import Deadline, stage_budget
from fallback_tiers.settings import LadderSettings
from fallback_tiers.tiers import (
    DependencyFailed, ScoredItem, SkipReason, Tier, TierCounters, TierOutput, TierRequest, min_items, record_tiers,
)
from regions.errors import InputError, PermanentError

TierFn = Callable[[TierRequest, float], TierOutput]
"""fetch(request, budget_s) -> TierOutput. Raise (or return an empty output) when there is nothing."""
PostProcess = Callable[[TierOutput, int], Sequence[ScoredItem]]
"""rules(output, count) -> the slate (serving.reranking.ladder_rules builds one)."""


@dataclass(frozen=True)
class TierSpec:
    tier: Tier
    fetch: TierFn
    dependencies: frozenset[str] = frozenset()
    """Names of the breakers this tier needs closed (e.g. {"redis", "ranker"}); the floor has none."""


@dataclass(frozen=True)
class LadderResult:
    items: tuple[ScoredItem, ...]
    tier: Tier
    """The tier that served."""
    skipped: tuple[tuple[Tier, SkipReason], ...]
    """Every tier above the serving one, in ladder order, with why it did not serve."""
    elapsed_s: float
    late: bool = False
    """The serving tier came back after its stage budget (used because the deadline allowed)."""

    def record(self, counters: TierCounters) -> None:
        record_tiers(counters, served=self.tier, skipped=self.skipped)


# -- decide ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LadderView:
    """A snapshot of everything the choice depends on."""

    request: TierRequest
    configured: Mapping[Tier, frozenset[str]]
    """Tiers this process can call, with their dependencies."""
    open_dependencies: frozenset[str]
    """Dependencies whose breaker would refuse a call now."""
    remaining_s: float
    considered: tuple[tuple[Tier, SkipReason], ...] = ()
    """Tiers already passed over (the choice continues below the last of them)."""


@dataclass(frozen=True)
class Choice:
    tier: Tier
    budget_s: float
    skipped: tuple[tuple[Tier, SkipReason], ...] = ()
    """Tiers passed over before `tier` in this choice."""


def skip_reason(tier: Tier, view: LadderView, *, settings: LadderSettings) -> SkipReason | None:
    """Why `tier` may not even be tried under `view`; None when it may. The floor is never refused."""
    if tier.is_floor:
        return None
    if tier.rank < view.request.max_tier.rank:
        return SkipReason.MAX_TIER
    if tier.needs_user and view.request.anonymous:
        return SkipReason.ANONYMOUS
    if tier not in view.configured:
        return SkipReason.NOT_CONFIGURED
    if view.configured[tier] & view.open_dependencies:
        return SkipReason.BREAKER_OPEN
    budget = stage_budget(
        remaining_s=view.remaining_s, cap_s=settings.stage_budget_s[tier], reserve_s=settings.floor_reserve_s,
    )
    if budget <= 0 or budget < settings.min_budget_s[tier]:
        return SkipReason.BUDGET
    return None


def choose_next(view: LadderView, *, settings: LadderSettings) -> Choice:
    """The next tier to call below those already considered; always ends at the floor."""
    start = view.considered[-1][0].rank + 1 if view.considered else 0
    passed: list[tuple[Tier, SkipReason]] = []
    for tier in Tier.ladder()[start:]:
        reason = skip_reason(tier, view, settings=settings)
        if reason is not None:
            passed.append((tier, reason))
            continue
        reserve = 0.0 if tier.is_floor else settings.floor_reserve_s
        budget = stage_budget(remaining_s=view.remaining_s, cap_s=settings.stage_budget_s[tier], reserve_s=reserve)
        return Choice(tier=tier, budget_s=budget, skipped=tuple(passed))
    raise AssertionError("unreachable: the floor tier is never refused")  # pragma: no cover


class Outcome(StrEnum):
    RETURNED = "returned"
    RAISED_TIMEOUT = "raised_timeout"
    RAISED_ERROR = "raised_error"
    RULES_ERROR = "rules_error"
    """The tier answered but the post-processing raised on its output (a bug, not the dependency)."""


class BreakerReport(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True)
class Attempt:
    """What happened when a tier was called."""

    tier: Tier
    outcome: Outcome
    count: int
    kept: int = 0
    """Items left after the rules and backfill."""
    late: bool = False
    """It came back after its stage budget."""
    remaining_s: float = 0.0
    """Left of the request's deadline when it came back."""


@dataclass(frozen=True)
class Verdict:
    serves: bool
    reason: SkipReason | None
    """Why it does not serve (None when it serves)."""
    breaker: BreakerReport


def judge(attempt: Attempt, *, settings: LadderSettings) -> Verdict:
    """Does this attempt serve the request, and what do its dependencies' breakers record?"""
    if attempt.outcome is Outcome.RAISED_TIMEOUT:
        return Verdict(serves=False, reason=SkipReason.TIMEOUT, breaker=BreakerReport.FAILURE)
    if attempt.outcome is Outcome.RAISED_ERROR:
        return Verdict(serves=False, reason=SkipReason.ERROR, breaker=BreakerReport.FAILURE)
    breaker = BreakerReport.FAILURE if attempt.late else BreakerReport.SUCCESS
    if attempt.outcome is Outcome.RULES_ERROR:
        return Verdict(serves=False, reason=SkipReason.ERROR, breaker=breaker)
    if attempt.tier.is_floor:
        return Verdict(serves=True, reason=None, breaker=breaker)
    if attempt.late and attempt.remaining_s <= 0:
        return Verdict(serves=False, reason=SkipReason.TIMEOUT, breaker=breaker)
    if attempt.kept == 0:
        return Verdict(serves=False, reason=SkipReason.EMPTY, breaker=breaker)
    if attempt.kept < min_items(attempt.count, settings.min_fill_fraction):
        return Verdict(serves=False, reason=SkipReason.TOO_FEW, breaker=breaker)
    return Verdict(serves=True, reason=None, breaker=breaker)


# -- act -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ladder:
    """The tiers of one process, the breakers they share, the rules, and the settings."""

    tiers: Sequence[TierSpec]
    breakers: Mapping[str, CircuitBreaker]
    post_process: PostProcess
    settings: LadderSettings = field(default_factory=LadderSettings)
    _by_tier: Mapping[Tier, TierSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_tier: dict[Tier, TierSpec] = {}
        for spec in self.tiers:
            if spec.tier in by_tier:
                raise InputError("tiers", f"tier {spec.tier.value} is given twice; give each tier once.")
            unknown = sorted(spec.dependencies - set(self.breakers))
            if unknown:
                raise InputError("breakers", f"tier {spec.tier.value} needs {', '.join(unknown)}, which has no "
                                             "breaker; pass a CircuitBreaker for every dependency.")
            by_tier[spec.tier] = spec
        floor = by_tier.get(Tier.POPULARITY)
        if floor is None:
            raise InputError("tiers", "the popularity tier is missing; it is the floor and must always be given.")
        if floor.dependencies:
            raise InputError("tiers", "the popularity tier declares dependencies; the floor must need none.")
        object.__setattr__(self, "_by_tier", MappingProxyType(by_tier))

    def run(self, request: TierRequest, deadline: Deadline) -> LadderResult:
        started = deadline.now()
        configured = {tier: spec.dependencies for tier, spec in self._by_tier.items()}
        considered: list[tuple[Tier, SkipReason]] = []
        while True:
            view = LadderView(
                request=request, configured=configured, open_dependencies=self._open_dependencies(),
                remaining_s=deadline.remaining(), considered=tuple(considered),
            )
            choice = choose_next(view, settings=self.settings)
            considered.extend(choice.skipped)
            spec = self._by_tier[choice.tier]
            if choice.tier.is_floor:
                return self._floor(spec, request, choice.budget_s, deadline, started, tuple(considered))
            acquired = self._acquire(spec.dependencies)
            if acquired is None:  # a breaker opened between the peek and now
                considered.append((choice.tier, SkipReason.BREAKER_OPEN))
                continue
            attempt, slate, error = self._attempt(spec, request, choice.budget_s, deadline)
            verdict = judge(attempt, settings=self.settings)
            self._report(acquired, verdict.breaker, error)
            if verdict.serves:
                return LadderResult(
                    items=slate, tier=choice.tier, skipped=tuple(considered),
                    elapsed_s=deadline.now() - started, late=attempt.late,
                )
            assert verdict.reason is not None
            considered.append((choice.tier, verdict.reason))

    def _attempt(
        self, spec: TierSpec, request: TierRequest, budget_s: float, deadline: Deadline,
    ) -> tuple[Attempt, tuple[ScoredItem, ...], BaseException | None]:
        began = deadline.now()
        try:
            output = spec.fetch(request, budget_s)
        except TimeoutError as exc:
            return Attempt(tier=spec.tier, outcome=Outcome.RAISED_TIMEOUT, count=request.count), (), exc
        except Exception as exc:  # any failure of a non-floor tier degrades to the next tier
            return Attempt(tier=spec.tier, outcome=Outcome.RAISED_ERROR, count=request.count), (), exc
        returned = deadline.now()
        late = returned - began > budget_s
        remaining = deadline.remaining(returned)
        try:
            slate = tuple(self.post_process(output, request.count))[: request.count]
        except Exception as exc:
            attempt = Attempt(tier=spec.tier, outcome=Outcome.RULES_ERROR, count=request.count, late=late,
                              remaining_s=remaining)
            return attempt, (), exc
        attempt = Attempt(tier=spec.tier, outcome=Outcome.RETURNED, count=request.count, kept=len(slate),
                          late=late, remaining_s=remaining)
        return attempt, slate, None

    def _floor(
        self, spec: TierSpec, request: TierRequest, budget_s: float, deadline: Deadline, started: float,
        skipped: tuple[tuple[Tier, SkipReason], ...],
    ) -> LadderResult:
        began = deadline.now()
        try:
            output = spec.fetch(request, budget_s)
            returned = deadline.now()
            slate = tuple(self.post_process(output, request.count))[: request.count]
        except Exception as exc:
            raise PermanentError(
                "the popularity floor failed, so this process cannot answer; it is a bug or a bad bundle: "
                "check the popularity list and the rules, then restart the cell."
            ) from exc
        return LadderResult(
            items=slate, tier=spec.tier, skipped=skipped, elapsed_s=deadline.now() - started,
            late=returned - began > budget_s,
        )

    def _open_dependencies(self) -> frozenset[str]:
        return frozenset(name for name, breaker in self.breakers.items() if not breaker.would_allow())

    def _acquire(self, dependencies: frozenset[str]) -> list[tuple[str, CircuitBreaker, float]] | None:
        """(name, breaker, admitted at) of every dependency, or None (each taken one given back)."""
        taken: list[tuple[str, CircuitBreaker, float]] = []
        for name in sorted(dependencies):
            breaker = self.breakers[name]
            admitted = breaker.acquire()
            if admitted is None:
                for _, other, _ in taken:
                    other.abandon()
                return None
            taken.append((name, breaker, admitted))
        return taken

    @staticmethod
    def _report(
        acquired: list[tuple[str, CircuitBreaker, float]], report: BreakerReport, error: BaseException | None,
    ) -> None:
        blamed = error.dependency if isinstance(error, DependencyFailed) else None
        if blamed is not None and blamed not in {name for name, _, _ in acquired}:
            blamed = None  # it blamed a dependency it did not declare: blame them all
        for name, breaker, admitted in acquired:
            if report is BreakerReport.SUCCESS:
                breaker.record_success()
            elif blamed is None or name == blamed:
                breaker.record_failure(admitted_at=admitted)
            else:
                breaker.abandon()
