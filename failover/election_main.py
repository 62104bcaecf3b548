"""A runnable controller stand-in: campaign for leadership and, while leading, write heartbeats.

    python -m failover.election_main --store sqlite:///tmp/control.db --id A [--ttl 3]

It prints one line per change of state (flushed, for tests and logs):

    LEADER id=A term=2           this process took the lease
    STANDBY id=B leader=A        another process leads
    DEPOSED id=A error=...       a fenced write was refused: someone else leads now

While leading it writes `heartbeats/<lease>` ({"holder", "term", "seq", "at"}) with a fenced
put every tick, and journals a `leader_change` entry when it takes over. SIGTERM or SIGINT
releases the lease so that a standby takes over at once. The environment is read here only:
REGIONCTL_CONTROL_STORE when --store is not given.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from types import FrameType

from failover.control_store import DEFAULT_STORE_URL, ENV_VAR, FenceRejected
from failover.control_stores import store_from_url
from failover.journal import Action, Journal
from failover.leadership import DEFAULT_LEASE, LeaderState, Leadership, LeadershipSettings
from regions.errors import ShopNowError, TemporaryError


def _say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m failover.election_main", description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=os.environ.get(ENV_VAR, DEFAULT_STORE_URL),
                        help=f"control store URL (default: ${ENV_VAR} or {DEFAULT_STORE_URL})")
    parser.add_argument("--id", required=True, help="this process's holder id, unique among controllers")
    parser.add_argument("--name", default=DEFAULT_LEASE, help="lease name (default: %(default)s)")
    parser.add_argument("--ttl", type=float, default=LeadershipSettings.ttl_s, help="lease TTL in seconds")
    args = parser.parse_args(argv)

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        store = store_from_url(args.store)
    except ShopNowError as exc:
        _say(f"ERROR id={args.id} error={exc}")
        return 2
    journal = Journal(store)
    seq = 0

    def on_change(old: LeaderState, new: LeaderState) -> None:
        if new.is_leader:
            _say(f"LEADER id={args.id} term={new.term}")
            try:
                journal.append(actor=f"controller:{args.id}", action=Action.LEADER_CHANGE,
                               inputs={"term": new.term, "previous_leader": old.leader, "ttl_s": args.ttl},
                               reason="took the controller lease", fence=leadership.fence())
            except (FenceRejected, TemporaryError) as exc:
                _say(f"JOURNAL-FAILED id={args.id} error={exc}")
        else:
            _say(f"STANDBY id={args.id} leader={new.leader}")

    leadership = Leadership(store, holder=args.id, name=args.name, ttl_s=args.ttl, on_change=on_change,
                            sleep=lambda seconds: None if stopping.wait(seconds) else None)

    def after_tick(leading: bool) -> None:
        nonlocal seq
        if not leading:
            return
        seq += 1
        beat = json.dumps({"holder": args.id, "term": leadership.state.term, "seq": seq, "at": time.time()})
        try:
            leadership.fenced_put(f"heartbeats/{args.name}", beat)
        except FenceRejected as exc:
            _say(f"DEPOSED id={args.id} error={exc}")
        except TemporaryError as exc:
            _say(f"STORE-UNAVAILABLE id={args.id} error={exc}")

    _say(f"CAMPAIGN id={args.id} store={args.store} ttl={args.ttl}")
    try:
        leadership.run(stop=stopping.is_set, after_tick=after_tick)
    finally:
        store.close()
    _say(f"STOPPED id={args.id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
