"""Thin script: `python bench/bench_replication.py ...` runs benchmarks.replication_bench (the installed package)."""
from benchmarks.replication_bench import main

if __name__ == "__main__":
    main()
