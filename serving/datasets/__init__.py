"""Data-set adapters for training (docs/data.md): the interface in base, the shipped adapters in
synthetic, completejourney and movielens, `--data PATH` in csv_dir, the lookup in registry."""
