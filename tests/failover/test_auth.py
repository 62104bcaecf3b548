"""Tokens and roles of the control API (pure parsing, the file on disk, header checks)."""
from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from failover.auth import (
    GRANTS, Forbidden, Permission, Role, TokenBook, Unauthorized, parse_tokens, tokens_path,
)
from regions.tokens import ensure_tokens_file
from regions.errors import InputError

TOKEN = "t" * 24


@pytest.mark.parametrize(("role", "permission", "allowed"), [
    (Role.VIEWER, Permission.READ, True), (Role.VIEWER, Permission.DIRECT, False), (Role.VIEWER, Permission.DRILL, False),
    (Role.DIRECTOR, Permission.READ, True), (Role.DIRECTOR, Permission.DIRECT, True),
    (Role.DIRECTOR, Permission.DRILL, True),
    (Role.CHAOS, Permission.READ, True), (Role.CHAOS, Permission.DIRECT, False), (Role.CHAOS, Permission.DRILL, False),
])
def test_grants(role: Role, permission: Permission, allowed: bool) -> None:
    assert (permission in GRANTS[role]) is allowed
    book = TokenBook(parse_tokens({TOKEN: role.value}))
    if allowed:
        assert book.authorize(f"Bearer {TOKEN}", permission).role is role
    else:
        with pytest.raises(Forbidden, match=role.value):
            book.authorize(f"Bearer {TOKEN}", permission)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic abc", f"bearer {TOKEN}", "Bearer " + "x" * 24])
def test_missing_malformed_or_unknown_tokens_are_unauthorized(header: str | None) -> None:
    book = TokenBook(parse_tokens({TOKEN: "director"}))
    with pytest.raises(Unauthorized) as caught:
        book.authenticate(header)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(("raw", "message"), [
    ({}, "non-empty"),
    ([], "non-empty"),
    ({"short": "viewer"}, "at least 16"),
    ({TOKEN: "admin"}, "unknown role 'admin'"),
    ({TOKEN: {"role": "viewer", "name": ""}}, "name"),
    ({TOKEN: {"name": "x"}}, "unknown role None"),
])
def test_bad_token_files_name_the_entry_not_the_token(raw: Any, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        parse_tokens(raw)
    assert TOKEN not in str(caught.value)


def test_actor_names_come_from_the_file_or_a_fingerprint() -> None:
    book = parse_tokens({TOKEN: {"role": "director", "name": "alice"}, "u" * 24: "chaos"})
    assert book[TOKEN].actor == "director:alice"
    assert book["u" * 24].actor.startswith("chaos:chaos-") and len(book["u" * 24].name) == len("chaos-") + 8


def test_token_for_prefers_the_least_powerful_role() -> None:
    book = TokenBook(parse_tokens({"d" * 20: "director", "v" * 20: "viewer", "c" * 20: "chaos"}))
    assert book.token_for(Permission.READ) == "v" * 20
    assert book.token_for(Permission.DRILL) == "d" * 20
    assert book.token_for(Permission.DIRECT) == "d" * 20
    assert TokenBook(parse_tokens({"v" * 20: "viewer"})).token_for(Permission.DIRECT) is None


def test_generated_file_is_private_has_every_role_and_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "stack" / "tokens.json"
    assert ensure_tokens_file(path) is True
    first = path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(json.loads(first).values()) == sorted(r.value for r in Role)
    assert ensure_tokens_file(path) is False
    assert path.read_text() == first
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokens.json"]  # no temporary left behind


def test_racing_creators_agree_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_tokens_file(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    TokenBook.load(path)


@pytest.mark.parametrize(("environ", "explicit", "expected"), [
    ({}, "/x/t.json", "/x/t.json"),
    ({"REGIONCTL_TOKENS_FILE": "/a/b.json"}, None, "/a/b.json"),
    ({"REGIONCTL_STATE_DIR": "/s"}, None, "/s/tokens.json"),
    ({"REGIONCTL_TOKENS_FILE": "/a/b.json", "REGIONCTL_STATE_DIR": "/s"}, None, "/a/b.json"),
])
def test_tokens_path(environ: dict[str, str], explicit: str | None, expected: str) -> None:
    assert str(tokens_path(environ, explicit)) == expected


def test_default_tokens_path_is_the_stack_state_dir() -> None:
    assert tokens_path({}).parts[-3:] == ("var", "stack", "tokens.json")


def test_loading_a_missing_or_broken_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--tokens"):
        TokenBook.load(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        TokenBook.load(tmp_path / "bad.json")
