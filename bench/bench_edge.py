"""Thin script: `python bench/bench_edge.py ...` runs benchmarks.edge_bench (the installed package)."""
from benchmarks.edge_bench import main

if __name__ == "__main__":
    main()
