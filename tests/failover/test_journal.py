"""The decision journal: appending, the hash chain, and verify() naming the first bad entry."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import typer
from failover.control_store import Fence, FenceRejected
from failover.journal import (
    GENESIS, Action, Head, Journal, JournalEntry, canonical_json, chain_hash, entry_key, make_entry, verify_records,
)
from failover.sqlite_store import SqliteStore
from regionctl import journal_cmds
from regions.errors import InputError, PermanentError

INPUTS = {"votes": {"us-east": ["down", "down", "up"]}, "threshold": 2,
          "before": {"us-east": 50, "us-west": 50}, "after": {"us-east": 0, "us-west": 100}}


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "control.db")
    yield s
    s.close()


def _fill(journal: Journal, n: int) -> list[JournalEntry]:
    return [journal.append(actor="controller:A", action=Action.WEIGHT_CHANGE, inputs={**INPUTS, "n": i},
                           reason=f"decision {i}", at=1_700_000_000.0 + i) for i in range(n)]


def _tamper(store: SqliteStore, index: int, **changes: object) -> None:
    key = entry_key("journal/", index)
    data = json.loads(store.get(key).value)  # type: ignore[union-attr]
    data.update(changes)
    store.put(key, json.dumps(data))


# -- appending -----------------------------------------------------------------------------------
def test_entries_chain_from_genesis(store: SqliteStore) -> None:
    entries = _fill(Journal(store), 3)
    assert [e.index for e in entries] == [0, 1, 2]
    assert entries[0].prev_hash == GENESIS
    assert entries[1].prev_hash == entries[0].hash and entries[2].prev_hash == entries[1].hash
    assert Journal(store).entries() == entries
    result = Journal(store).verify()
    assert result.ok and result.count == 3 and result.head_hash == entries[-1].hash


def test_entries_keep_the_inputs_as_json(store: SqliteStore) -> None:
    entry = Journal(store).append(actor="operator:alice", action="drain", inputs={"regions": ("eu-west",)},
                                  reason="planned evacuation", at=5.0)
    assert entry.inputs == {"regions": ["eu-west"]}
    assert Journal(store).entries()[0] == entry


def test_limit_returns_the_newest_oldest_first(store: SqliteStore) -> None:
    _fill(Journal(store), 5)
    assert [e.index for e in Journal(store).entries(limit=2)] == [3, 4]
    assert [e.index for e in Journal(store).entries(limit=50)] == [0, 1, 2, 3, 4]
    assert Journal(store).entries(limit=0) == []


def test_two_writers_on_one_file_extend_one_chain(tmp_path: Path) -> None:
    a, b = SqliteStore(tmp_path / "c.db"), SqliteStore(tmp_path / "c.db")
    for i in range(4):
        Journal(a).append(actor="controller:A", action="note", inputs={"i": i}, reason="a", at=float(i))
        Journal(b).append(actor="controller:B", action="note", inputs={"i": i}, reason="b", at=float(i))
    assert Journal(a).verify().ok and Journal(a).verify().count == 8


class _HeadAlwaysMoves:
    """A store on which every compare-and-set of the journal head loses (another writer's head
    advance lands first, yet never past our entry)."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner

    def put(self, key: str, value: str, *, cas: int | None = None) -> bool:
        if key.endswith("head"):
            return False
        return self.inner.put(key, value, cas=cas)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_head_that_cannot_be_advanced_is_a_clear_error_not_silence(store: SqliteStore) -> None:
    journal = Journal(_HeadAlwaysMoves(store), clock=lambda: 1.0)  # type: ignore[arg-type]
    with pytest.raises(PermanentError, match="head could not be advanced after 20 attempts"):
        journal.append(actor="a", action=Action.NOTE, inputs={}, reason="r")
    assert store.get(entry_key("journal/", 0)) is not None  # the entry itself is written
    assert Journal(store).verify().ok


def test_fenced_append_refuses_a_deposed_leader(tmp_path: Path) -> None:
    clock = [0.0]
    store = SqliteStore(tmp_path / "c.db", clock=lambda: clock[0])
    store.acquire_lease("controller", "A", 3)
    fence = Fence(lease="controller", holder="A", term=store.lease_holder("controller").term)  # type: ignore[union-attr]
    first = Journal(store).append(actor="controller:A", action="failstatic", inputs={}, reason="x", fence=fence)
    assert first.term == fence.term
    clock[0] += 10
    store.acquire_lease("controller", "B", 3)
    with pytest.raises(FenceRejected):
        Journal(store).append(actor="controller:A", action="weight_change", inputs={}, reason="late", fence=fence)
    assert len(Journal(store).entries()) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"action": "reboot"}, "action"), ({"actor": ""}, "actor"), ({"inputs": [1, 2]}, "inputs"),
     ({"inputs": {"x": float("nan")}}, "inputs"), ({"inputs": {"x": object()}}, "inputs")],
)
def test_bad_entries_are_input_errors(kwargs: dict[str, object], field: str) -> None:
    base = {"index": 0, "prev_hash": GENESIS, "at": 1.0, "actor": "a", "action": "note", "inputs": {}, "reason": ""}
    with pytest.raises(InputError) as info:
        make_entry(**{**base, **kwargs})  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize("action", list(Action))
def test_every_action_round_trips(action: Action) -> None:
    entry = make_entry(index=0, prev_hash=GENESIS, at=1.5, actor="a", action=action, inputs=INPUTS, reason="r")
    assert JournalEntry.from_json(entry.to_json()) == entry
    assert verify_records([(0, entry.to_json())]).ok


# -- tampering, in the store ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("index", "changes"),
    [(0, {"reason": "nothing happened"}), (2, {"inputs": {"after": {"us-east": 100}}}), (4, {"actor": "mallory"}),
     (3, {"at": 1.0}), (1, {"term": 7}), (2, {"action": "undrain"})],
)
def test_tampering_with_one_entry_names_its_index(store: SqliteStore, index: int, changes: dict[str, object]) -> None:
    _fill(Journal(store), 5)
    _tamper(store, index, **changes)
    result = Journal(store).verify()
    assert not result.ok and result.first_bad_index == index, result.message


def test_tampering_and_rehashing_is_caught_at_the_next_entry(store: SqliteStore) -> None:
    _fill(Journal(store), 4)
    entry = JournalEntry.from_json(store.get(entry_key("journal/", 1)).value)  # type: ignore[union-attr]
    body = {**entry.body(), "reason": "rewritten"}
    store.put(entry_key("journal/", 1), canonical_json({**body, "hash": chain_hash(entry.prev_hash, body)}))
    result = Journal(store).verify()
    assert (result.ok, result.first_bad_index) == (False, 2)


@pytest.mark.parametrize("index", [0, 2])
def test_deleting_an_entry_names_its_index(store: SqliteStore, index: int) -> None:
    _fill(Journal(store), 4)
    store.delete(entry_key("journal/", index))
    result = Journal(store).verify()
    assert (result.ok, result.first_bad_index) == (False, index), result.message


def test_cutting_off_the_last_entries_is_caught_by_the_head(store: SqliteStore) -> None:
    _fill(Journal(store), 4)
    store.delete(entry_key("journal/", 3))
    store.delete(entry_key("journal/", 2))
    result = Journal(store).verify()
    assert (result.ok, result.first_bad_index) == (False, 2), result.message


def test_swapping_two_entries_names_the_first(store: SqliteStore) -> None:
    _fill(Journal(store), 5)
    one, three = (store.get(entry_key("journal/", i)).value for i in (1, 3))  # type: ignore[union-attr]
    store.put(entry_key("journal/", 1), three)
    store.put(entry_key("journal/", 3), one)
    result = Journal(store).verify()
    assert (result.ok, result.first_bad_index) == (False, 1), result.message


def test_garbage_in_an_entry_names_its_index(store: SqliteStore) -> None:
    _fill(Journal(store), 3)
    store.put(entry_key("journal/", 1), "{not json")
    result = Journal(store).verify()
    assert (result.ok, result.first_bad_index) == (False, 1)


# -- properties of the pure chain ----------------------------------------------------------------
def _chain(n: int) -> list[JournalEntry]:
    entries: list[JournalEntry] = []
    for i in range(n):
        entries.append(make_entry(index=i, prev_hash=entries[-1].hash if entries else GENESIS, at=float(i),
                                  actor="controller:A", action="weight_change", inputs={"i": i}, reason=str(i)))
    return entries


def _records(entries: list[JournalEntry]) -> list[tuple[int, str]]:
    return [(e.index, e.to_json()) for e in entries]


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5)
                           | st.floats(allow_nan=False, allow_infinity=False),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                       max_size=3), max_leaves=8)


@settings(max_examples=80, deadline=None)
@given(inputs=st.dictionaries(st.text(max_size=5), json_values, max_size=4))
def test_any_json_inputs_round_trip_and_verify(inputs: dict[str, object]) -> None:
    entry = make_entry(index=0, prev_hash=GENESIS, at=2.0, actor="a", action="override", inputs=inputs, reason="r")
    assert JournalEntry.from_json(entry.to_json()) == entry
    assert verify_records([(0, entry.to_json())], head=Head(0, entry.hash)).ok


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 8), data=st.data())
def test_any_single_field_change_is_caught_at_that_index(n: int, data: st.DataObject) -> None:
    entries = _chain(n)
    i = data.draw(st.integers(0, n - 1))
    field = data.draw(st.sampled_from(["at", "actor", "reason", "inputs", "term", "prev_hash", "hash", "index"]))
    new = {"at": 99.5, "actor": "mallory", "reason": "forged", "inputs": {"forged": True}, "term": 42,
           "prev_hash": "f" * 64, "hash": "e" * 64, "index": n + 5}[field]
    data_i = json.loads(entries[i].to_json())
    assume(data_i[field] != new)
    data_i[field] = new
    records = _records(entries)
    records[i] = (i, json.dumps(data_i))
    result = verify_records(records, head=Head(n - 1, entries[-1].hash))
    assert (result.ok, result.first_bad_index) == (False, i)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 8), data=st.data())
def test_any_deletion_or_swap_is_caught(n: int, data: st.DataObject) -> None:
    entries = _chain(n)
    head = Head(n - 1, entries[-1].hash)
    i = data.draw(st.integers(0, n - 1))
    deleted = _records(entries)
    del deleted[i]
    assert verify_records(deleted, head=head).first_bad_index == i
    j = data.draw(st.integers(0, n - 1))
    assume(i != j)
    swapped = _records(entries)
    swapped[i], swapped[j] = (i, swapped[j][1]), (j, swapped[i][1])
    assert verify_records(swapped, head=head).first_bad_index == min(i, j)


def test_canonical_json_ignores_key_order() -> None:
    assert canonical_json({"b": 1, "a": {"y": 2, "x": 3}}) == canonical_json({"a": {"x": 3, "y": 2}, "b": 1})


# -- the CLI -------------------------------------------------------------------------------------
def _app() -> typer.Typer:
    app = typer.Typer()
    journal_cmds.register(app)

    @app.callback()
    def root() -> None:  # keeps `journal` a sub-command, as in regionctl
        pass

    return app


def test_cli_lists_and_verifies(tmp_path: Path) -> None:
    path = tmp_path / "control.db"
    with SqliteStore(path) as store:
        _fill(Journal(store), 3)
    url = f"sqlite://{path}"
    runner = CliRunner()
    shown = runner.invoke(_app(), ["journal", "--store", url, "--limit", "2"], env={"COLUMNS": "240"})
    assert shown.exit_code == 0, shown.output
    assert "decision 2" in shown.output and "decision 1" in shown.output and "decision 0" not in shown.output
    ok = runner.invoke(_app(), ["journal", "--verify"], env={"REGIONCTL_CONTROL_STORE": url, "COLUMNS": "240"})
    assert ok.exit_code == 0 and "journal OK" in ok.output
    with SqliteStore(path) as store:
        _tamper(store, 1, reason="edited")
    broken = runner.invoke(_app(), ["journal", "--verify", "--store", url], env={"COLUMNS": "240"})
    assert broken.exit_code == 1 and "entry 1" in broken.output
