metamodels evaluate --split written --verify-k 32   # 45 programs, shipped checkpoint
python benchmarks/tracr_programs.py --json docs/any-program/tracr_programs.json   # Tracr's lib/test-case programs + odd ones
