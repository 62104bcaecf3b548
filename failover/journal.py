"""The decision journal: every steering decision, append-only, in a SHA-256 hash chain.

Each entry records when, who (actor), what (action), on which inputs (health votes,
thresholds, weights before and after, ...) and why. Its hash is

    sha256(prev_hash + canonical_json(entry without its hash))

with prev_hash = GENESIS for entry 0, so changing, removing or reordering any entry breaks the
chain at that entry. Entries live in the control store so that leader and standby share them:

    <prefix>entries/<index, 12 digits>   one entry (canonical JSON, hash included)
    <prefix>head                         {"index": n, "hash": h}: the newest entry known; lets
                                         verify() notice entries cut off the end

Appending takes the next index with put(cas=0) ("only if absent"), so concurrent writers never
fork the chain; a leader appends with its Fence, so a deposed leader cannot. The pure part
(make_entry, verify_records) takes values and returns values; Journal does the store I/O.
A hash chain detects tampering by anyone who cannot also rewrite every later entry and the
head: keep the head hash printed by `regionctl journal --verify` for a stronger anchor.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Callable, Mapping, Sequence

from failover.control_store import ControlStore, Fence
from regions.cas_retry import LOST, CasRetry, Lost
from regions.errors import InputError, PermanentError

GENESIS = "0" * 64
DEFAULT_PREFIX = "journal/"
MAX_APPEND_ATTEMPTS = 20
"""Each failed attempt means another writer appended first; 20 in a row means something is wrong."""
APPEND_RETRY = CasRetry(
    attempts=MAX_APPEND_ATTEMPTS, backoff_s=0.002, max_backoff_s=0.05,
    exhausted=lambda n: PermanentError(f"could not append to the journal after {n} attempts: "
                                       "other writers kept taking the next index"))
HEAD_RETRY = CasRetry(
    attempts=MAX_APPEND_ATTEMPTS, backoff_s=0.002, max_backoff_s=0.05,
    exhausted=lambda n: PermanentError(f"the journal head could not be advanced after {n} attempts (the entry "
                                       "itself is written); run `regionctl journal --verify`"))


class Action(StrEnum):
    WEIGHT_CHANGE = "weight_change"
    DRAIN = "drain"
    UNDRAIN = "undrain"
    OVERRIDE = "override"
    OVERRIDE_CLEARED = "override_cleared"
    DRILL_STEP = "drill_step"
    FAILSTATIC = "failstatic"
    FAILSTATIC_CLEARED = "failstatic_cleared"
    LEADER_CHANGE = "leader_change"
    BUNDLE_PROMOTE = "bundle_promote"
    BUNDLE_ROLLBACK = "bundle_rollback"
    ROLLOUT_START = "rollout_start"
    ROLLOUT_STAGE = "rollout_stage"
    ROLLOUT_COMPLETE = "rollout_complete"
    ROLLOUT_ROLLBACK = "rollout_rollback"
    ROLLOUT_ABORT = "rollout_abort"
    EXPERIMENT_CREATE = "experiment_create"
    EXPERIMENT_STOP = "experiment_stop"
    NOTE = "note"


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, no NaN: the same value always gives the same text."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError("inputs", f"must be JSON (str, number, bool, null, lists, objects; no NaN): {exc}") from exc


def chain_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(body)).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class JournalEntry:
    index: int
    at: float
    actor: str
    action: str
    inputs: Mapping[str, Any]
    reason: str
    term: int | None
    prev_hash: str
    hash: str

    def body(self) -> dict[str, Any]:
        """Everything the hash covers (all fields but the hash itself)."""
        data = asdict(self)
        del data["hash"]
        data["inputs"] = dict(self.inputs)
        return data

    def to_json(self) -> str:
        return canonical_json({**self.body(), "hash": self.hash})

    @classmethod
    def from_json(cls, text: str | bytes) -> JournalEntry:
        try:
            data = json.loads(text)
            entry = cls(
                index=int(data["index"]), at=float(data["at"]), actor=str(data["actor"]),
                action=str(data["action"]), inputs=dict(data["inputs"]), reason=str(data["reason"]),
                term=None if data["term"] is None else int(data["term"]),
                prev_hash=str(data["prev_hash"]), hash=str(data["hash"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PermanentError(f"not a journal entry ({exc}); run `regionctl journal --verify`") from exc
        if set(data) != {*entry.body(), "hash"}:
            raise PermanentError(f"journal entry {entry.index} has unexpected fields {sorted(data)}")
        return entry


def make_entry(*, index: int, prev_hash: str, at: float, actor: str, action: Action | str,
               inputs: Mapping[str, Any], reason: str, term: int | None = None) -> JournalEntry:
    """A new entry chained to `prev_hash`. Pure: the time is handed in."""
    try:
        action = Action(action)
    except ValueError:
        allowed = ", ".join(a.value for a in Action)
        raise InputError("action", f"unknown action {action!r}; allowed: {allowed}") from None
    if not actor:
        raise InputError("actor", "must name who decided (e.g. 'controller:A' or 'operator:alice')")
    if not isinstance(inputs, Mapping):
        raise InputError("inputs", "must be a mapping (health votes, thresholds, weights before/after)")
    normal_inputs = json.loads(canonical_json(dict(inputs)))  # tuples -> lists: what is hashed is what is kept
    body = {"index": index, "at": float(at), "actor": actor, "action": action.value, "inputs": normal_inputs,
            "reason": reason, "term": term, "prev_hash": prev_hash}
    return JournalEntry(**body, hash=chain_hash(prev_hash, body))


@dataclass(frozen=True)
class Head:
    index: int
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    first_bad_index: int | None
    message: str
    count: int = 0
    head_hash: str | None = None


def verify_records(records: Sequence[tuple[int, str | bytes]], *, head: Head | None = None) -> VerifyResult:
    """Check a journal given as (index taken from the key, stored text), in key order.
    Pure. Names the first index that is missing, unreadable, out of place or altered."""
    prev = GENESIS
    for position, (key_index, text) in enumerate(records):
        if key_index != position:
            return VerifyResult(False, position, f"entry {position} is missing (the next stored entry is "
                                                 f"{key_index}): entries were deleted", position)
        try:
            entry = JournalEntry.from_json(text)
        except PermanentError as exc:
            return VerifyResult(False, position, f"entry {position} cannot be read: {exc}", position)
        if entry.index != position:
            return VerifyResult(False, position, f"entry {position} holds entry {entry.index}: entries were "
                                                 "reordered or moved", position)
        if entry.prev_hash != prev:
            return VerifyResult(False, position, f"entry {position} does not chain to entry {position - 1}: "
                                                 "one of them was replaced, or entries were removed", position)
        if chain_hash(prev, entry.body()) != entry.hash:
            return VerifyResult(False, position, f"entry {position} was altered: its content does not match "
                                                 "its hash", position)
        prev = entry.hash
    count = len(records)
    if head is not None:
        if head.index >= count:
            return VerifyResult(False, count, f"entries {count}..{head.index} are missing: the journal was "
                                              f"cut short (the head names entry {head.index})", count)
        if head.index >= 0 and JournalEntry.from_json(records[head.index][1]).hash != head.hash:
            return VerifyResult(False, head.index, f"entry {head.index} does not match the hash recorded in "
                                                   "the head", count)
    return VerifyResult(True, None, f"{count} entries, chain intact", count, prev if count else None)


def entry_key(prefix: str, index: int) -> str:
    return f"{prefix}entries/{index:012d}"


class Journal:
    """The decision journal in a control store."""

    def __init__(self, store: ControlStore, *, prefix: str = DEFAULT_PREFIX,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.prefix = prefix
        self._clock = clock

    def _head(self) -> tuple[Head | None, int | None]:
        stored = self.store.get(f"{self.prefix}head")
        if stored is None:
            return None, None
        try:
            data = json.loads(stored.value)
            return Head(index=int(data["index"]), hash=str(data["hash"])), stored.version
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentError(f"journal head {self.prefix}head is unreadable ({exc}); "
                                 "run `regionctl journal --verify`") from exc

    def _last(self) -> JournalEntry | None:
        """The newest entry: from the head, then forward over entries the head has not caught up with."""
        head, _ = self._head()
        index, last = (head.index, None) if head else (-1, None)
        if head is not None:
            stored = self.store.get(entry_key(self.prefix, head.index))
            if stored is None:
                raise PermanentError(f"journal entry {head.index} named by the head is missing; "
                                     "run `regionctl journal --verify`")
            last = JournalEntry.from_json(stored.value)
        while (stored := self.store.get(entry_key(self.prefix, index + 1))) is not None:
            index, last = index + 1, JournalEntry.from_json(stored.value)
        return last

    def _advance_head(self, entry: JournalEntry) -> None:
        text = canonical_json({"index": entry.index, "hash": entry.hash})

        def try_once() -> None | Lost:
            head, version = self._head()
            if head is not None and head.index >= entry.index:
                return None  # a later writer already moved the head past us
            return None if self.store.put(f"{self.prefix}head", text, cas=version or 0) else LOST

        HEAD_RETRY.run(try_once)

    def append(self, *, actor: str, action: Action | str, inputs: Mapping[str, Any], reason: str,
               at: float | None = None, fence: Fence | None = None) -> JournalEntry:
        """Add an entry at the end. With `fence`, the write is refused (FenceRejected) once the
        fence's holder has lost its lease."""
        def try_once() -> JournalEntry | Lost:
            last = self._last()
            entry = make_entry(
                index=last.index + 1 if last else 0, prev_hash=last.hash if last else GENESIS,
                at=self._clock() if at is None else at, actor=actor, action=action, inputs=inputs,
                reason=reason, term=fence.term if fence else None,
            )
            key = entry_key(self.prefix, entry.index)
            written = (self.store.fenced_put(key, entry.to_json(), fence=fence, cas=0) if fence
                       else self.store.put(key, entry.to_json(), cas=0))
            return entry if written else LOST

        entry = APPEND_RETRY.run(try_once)
        self._advance_head(entry)
        return entry

    def _records(self) -> list[tuple[int, bytes]]:
        records = []
        for key, stored in self.store.list(f"{self.prefix}entries/").items():
            suffix = key.rsplit("/", 1)[-1]
            if not suffix.isdigit():
                raise PermanentError(f"unexpected key {key!r} among journal entries")
            records.append((int(suffix), stored.value))
        return records

    def entries(self, *, limit: int | None = None) -> list[JournalEntry]:
        """The newest `limit` entries (all if None), oldest first."""
        if limit is not None and limit < 0:
            raise InputError("limit", f"must be >= 0, got {limit}")
        records = self._records()
        chosen = records if limit is None else records[max(0, len(records) - limit):] if limit else []
        return [JournalEntry.from_json(text) for _, text in chosen]

    def verify(self) -> VerifyResult:
        return verify_records(self._records(), head=self._head()[0])
