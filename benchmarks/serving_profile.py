"""Profile the cell (and the edge) under the serving benchmark's load with py-spy (the `dev` extra).

    .venv/bin/python bench/profile_serving.py [--via grpc|http|edge] [--tier full] [--seconds 10] [--top 25]

Starts the same stack as `regionctl bench serving` (redis-server + a pinned cell on the demo bundle;
with --via edge also an edge in front of it), drives closed-loop sequential requests of one tier for
`--seconds` while `py-spy record` samples the cell (or the edge) and writes collapsed stacks to
var/bench/profile-<via>-<tier>[-edge].txt; then prints the functions with the most samples, by own
time and by inclusive time. py-spy needs ptrace rights (root, or CAP_SYS_PTRACE).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from benchmarks.serving_bench import ServingBenchSettings, bench_stack, clients
from regions.errors import InputError


def top_functions(collapsed: str, *, top: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
    """(own, inclusive, total samples) from py-spy's raw (collapsed) output: `frame;frame;... count`."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return own.most_common(top), inclusive.most_common(top), total


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--via", default="grpc", choices=("grpc", "http", "edge"))
    ap.add_argument("--tier", default="full")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--target", default="", choices=("", "cell", "edge"), help="process to sample (default: edge for --via edge)")
    args = ap.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise InputError("py-spy", "is not installed; pip install -e '.[dev]'")
    settings = ServingBenchSettings(requests=10, with_edge=args.via == "edge", with_haproxy=False)
    target = args.target or ("edge" if args.via == "edge" else "cell")
    out = settings.cache_dir / f"profile-{args.via}-{args.tier}-{target}.txt"
    with bench_stack(settings, log=lambda m: print(m, file=sys.stderr)) as stack, \
            clients(stack, count=settings.count, timeout_s=settings.timeout_s) as calls:
        call = calls[args.via]
        users = list(stack.users)
        for user in users:
            call(user, "full")
        pid = stack.edge.pid if target == "edge" and stack.edge else stack.cell.pid
        stop = threading.Event()
        done = [0]

        def load() -> None:
            n = 0
            while not stop.is_set():
                call(users[n % len(users)], args.tier)
                n += 1
            done[0] = n

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        time.sleep(0.5)  # py-spy --gil: only the thread holding the GIL, i.e. Python CPU, not waits
        subprocess.run([py_spy, "record", "--pid", str(pid), "--duration", str(int(args.seconds)), "--rate", "250",
                        "--format", "raw", "--output", str(out), "--nonblocking", "--gil"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop.set()
        worker.join(timeout=10)
    own, inclusive, total = top_functions(out.read_text(), top=args.top)
    print(f"{target} under {args.via} {args.tier}: {done[0]} requests, {total} samples, stacks in {out}")
    for title, rows in (("own time", own), ("inclusive", inclusive)):
        print(f"-- {title}")
        for frame, n in rows:
            print(f"{100.0 * n / max(total, 1):5.1f}%  {frame}")


if __name__ == "__main__":
    main()
