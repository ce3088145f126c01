#!/usr/bin/env bash
# The figures of README "Verification (measured)", in order; resumable (the dataset build resumes).
set -x
M=.venv/bin/metamodels
$M dataset build data/ds4k --n 4000 --ops 1-9 --seed 0 --workers 2 > docs/verification/ds4k_build.txt 2>&1
.venv/bin/python benchmarks/false_verification.py --sampled 40 --per-program 16 --seed 0 > docs/verification/false_verification.txt 2>&1
$M evaluate --split written --verify-k 32 > docs/verification/written_verify32.txt 2>/dev/null
$M evaluate --data data/ds4k --split test --verify-k 32 --verify-limit 40 > docs/verification/ds4k_test_verify32.txt 2>/dev/null
