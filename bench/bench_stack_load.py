"""Thin script: `python bench/bench_stack_load.py ...` runs benchmarks.stack_load_bench (the installed package)."""
from benchmarks.stack_load_bench import main

if __name__ == "__main__":
    main()
