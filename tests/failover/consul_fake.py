"""A small stand-in for a Consul agent's HTTP API, for tests only.

No Consul binary can be installed on the development machines, so without CONSUL_HTTP_ADDR the
Consul backend would never run. This server speaks just enough of the HTTP API (KV with cas /
acquire / release / recurse, sessions create / renew / destroy / info, /v1/txn with
check-session, set and cas, agent service register / deregister / list) for the REAL py-consul
client and failover.consul_store to run the same contract tests as SQLite. It follows Consul's
documented semantics (ModifyIndex from one raft-like counter, LockIndex grows per new lock
holder, 409 with per-operation errors for a failed transaction), but it is not Consul: session
TTLs never run out by time (tests end sessions with destroy), and there is one node, no ACLs.
Results against a real agent (CONSUL_HTTP_ADDR) remain the reference.
"""
from __future__ import annotations

import base64
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.index = 0
        self.kv: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}

    def bump(self) -> int:
        self.index += 1
        return self.index

    def set(self, key: str, value: bytes | None, *, session: str | None = None, keep_session: bool = True) -> None:
        old = self.kv.get(key)
        idx = self.bump()
        entry = {"Key": key, "Flags": 0, "CreateIndex": old["CreateIndex"] if old else idx, "ModifyIndex": idx,
                 "LockIndex": old["LockIndex"] if old else 0,
                 "Value": base64.b64encode(value).decode() if value else None}
        if keep_session and old and old.get("Session"):
            entry["Session"] = old["Session"]
        if session is not None:
            if not old or old.get("Session") != session:
                entry["LockIndex"] += 1
            entry["Session"] = session
        self.kv[key] = entry

    def release_session(self, sid: str) -> None:
        for entry in self.kv.values():
            if entry.get("Session") == sid:
                del entry["Session"]
                entry["ModifyIndex"] = self.bump()


class _Handler(BaseHTTPRequestHandler):
    state: _State

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _reply(self, code: int, body: Any, *, raw: bool = False) -> None:
        data = (body if raw else json.dumps(body)).encode() if body is not None else b""
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Consul-Index", str(self.state.index))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _parse(self) -> tuple[str, dict[str, str], bytes]:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        return parts.path, query, self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        path, query, _ = self._parse()
        s = self.state
        with s.lock:
            if path.startswith("/v1/kv/"):
                key = path[len("/v1/kv/"):]
                found = ([e for k, e in sorted(s.kv.items()) if k.startswith(key)] if "recurse" in query
                         else [s.kv[key]] if key in s.kv else [])
                return self._reply(200, found) if found else self._reply(404, None)
            if path.startswith("/v1/session/info/"):
                sid = path.rsplit("/", 1)[-1]
                return self._reply(200, [s.sessions[sid]] if sid in s.sessions else [])
            if path == "/v1/agent/services":
                return self._reply(200, s.services)
        self._reply(404, None)

    def do_DELETE(self) -> None:
        path, query, _ = self._parse()
        s = self.state
        with s.lock:
            key = path[len("/v1/kv/"):]
            if "recurse" in query:
                for k in [k for k in s.kv if k.startswith(key)]:
                    del s.kv[k]
                return self._reply(200, True)
            if "cas" in query and (key not in s.kv or s.kv[key]["ModifyIndex"] != int(query["cas"])):
                return self._reply(200, False)
            s.kv.pop(key, None)
            s.bump()
            self._reply(200, True)

    def do_PUT(self) -> None:
        path, query, body = self._parse()
        s = self.state
        with s.lock:
            if path.startswith("/v1/kv/"):
                return self._reply(200, self._kv_put(path[len("/v1/kv/"):], query, body))
            if path == "/v1/session/create":
                sid = str(uuid.uuid4())
                s.sessions[sid] = {"ID": sid, **(json.loads(body) if body else {})}
                return self._reply(200, {"ID": sid})
            if path.startswith("/v1/session/renew/"):
                sid = path.rsplit("/", 1)[-1]
                return self._reply(200, [s.sessions[sid]]) if sid in s.sessions else self._reply(404, None)
            if path.startswith("/v1/session/destroy/"):
                sid = path.rsplit("/", 1)[-1]
                s.sessions.pop(sid, None)
                s.release_session(sid)
                return self._reply(200, True)
            if path == "/v1/txn":
                return self._txn(json.loads(body))
            if path == "/v1/agent/service/register":
                service = json.loads(body)
                s.services[service.get("id") or service["name"]] = service
                return self._reply(200, None)
            if path.startswith("/v1/agent/service/deregister/"):
                s.services.pop(path.rsplit("/", 1)[-1], None)
                return self._reply(200, None)
        self._reply(404, None)

    def _kv_put(self, key: str, query: dict[str, str], body: bytes) -> bool:
        s, old = self.state, self.state.kv.get(key)
        if "cas" in query:
            cas = int(query["cas"])
            if (cas == 0 and old is not None) or (cas != 0 and (old is None or old["ModifyIndex"] != cas)):
                return False
        if "acquire" in query:
            sid = query["acquire"]
            if sid not in s.sessions:
                raise _InvalidSession(sid)
            if old is not None and old.get("Session") not in (None, sid):
                return False
            s.set(key, body, session=sid)
            return True
        if "release" in query:
            if old is None or old.get("Session") != query["release"]:
                return False
            s.set(key, body, keep_session=False)
            return True
        s.set(key, body)
        return True

    def _txn(self, ops: list[dict[str, Any]]) -> None:
        s = self.state
        for i, op in enumerate(ops):
            kv = op["KV"]
            old = s.kv.get(kv["Key"])
            failed = ((kv["Verb"] == "check-session" and (old is None or old.get("Session") != kv["Session"]))
                      or (kv["Verb"] == "cas" and ((kv["Index"] == 0 and old is not None)
                                                   or (kv["Index"] != 0 and (old is None
                                                                             or old["ModifyIndex"] != kv["Index"])))))
            if failed:
                return self._reply(409, {"Results": None, "Errors": [{"OpIndex": i, "What": f"{kv['Verb']} failed"}]})
        for kv in (op["KV"] for op in ops):
            if kv["Verb"] in ("set", "cas"):
                s.set(kv["Key"], base64.b64decode(kv["Value"]))
        self._reply(200, {"Results": [], "Errors": None})


class _InvalidSession(Exception):
    pass


class FakeConsul:
    """Serve the stand-in on 127.0.0.1:<free port> in a thread; `close()` stops it."""

    def __init__(self) -> None:
        state = _State()

        class Handler(_Handler):
            pass

        Handler.state = state

        def handle_put(self: _Handler) -> None:
            try:
                _Handler.do_PUT(self)
            except _InvalidSession as exc:
                self._reply(500, f'invalid session "{exc}"', raw=True)

        Handler.do_PUT = handle_put  # type: ignore[method-assign]
        self.state = state
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
