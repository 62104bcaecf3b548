"""Thin script: `python bench/profile_serving.py ...` runs benchmarks.serving_profile (the installed package)."""
from benchmarks.serving_profile import main

if __name__ == "__main__":
    main()
