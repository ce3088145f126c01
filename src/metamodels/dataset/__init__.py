"""Datasets of (program, compiled weights): program in, Parquet shards out.

``sampling`` draws programs (rasp-gen), ``examples`` makes one example (sample -> compile -> differential
check -> row), ``build`` orchestrates a whole build (process pool or Ray, resumable), ``store`` owns the
Parquet schema, shards and manifest, ``stats`` prints tables and plots, ``lib`` and ``written`` are the
hand-written evaluation splits.
"""
