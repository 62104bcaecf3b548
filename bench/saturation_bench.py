"""Thin script: `python bench/saturation_bench.py ...` runs benchmarks.saturation_bench (the installed package)."""
from benchmarks.saturation_bench import main

if __name__ == "__main__":
    main()
