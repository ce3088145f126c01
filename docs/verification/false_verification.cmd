python benchmarks/false_verification.py --sampled 40 --per-program 16 --seed 0
