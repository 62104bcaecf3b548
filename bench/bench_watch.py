"""Thin script: `python bench/bench_watch.py ...` runs benchmarks.watch_bench (the installed package)."""
from benchmarks.watch_bench import main

if __name__ == "__main__":
    main()
