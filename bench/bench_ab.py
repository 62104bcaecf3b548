"""Thin script: `python bench/bench_ab.py ...` runs benchmarks.ab_bench (the installed package)."""
from benchmarks.ab_bench import main

if __name__ == "__main__":
    main()
