"""Datasets of (program, compiled weights): build.py (orchestrator), examples.py (one example),
store.py (Parquet), lib.py (hand-written programs), stats.py (tables, plots), loader.py (PyTorch)."""
