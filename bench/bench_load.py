"""Thin script: `python bench/bench_load.py ...` runs benchmarks.load_bench (the installed package)."""
from benchmarks.load_bench import main

if __name__ == "__main__":
    main()
