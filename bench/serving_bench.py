"""Thin script: `python bench/serving_bench.py ...` runs benchmarks.serving_bench (the installed package)."""
from benchmarks.serving_bench import main

if __name__ == "__main__":
    main()
