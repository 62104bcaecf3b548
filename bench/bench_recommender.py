"""Thin script: `python bench/bench_recommender.py ...` runs benchmarks.recommender_bench (the installed package)."""
from benchmarks.recommender_bench import main

if __name__ == "__main__":
    main()
