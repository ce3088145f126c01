cd /work/main
M=.venv/bin/metamodels
$M evaluate --split written --verify-k 32 > /tmp/m_written_wiring.txt 2>/dev/null
$M evaluate --split written --verify-k 32 --no-wiring > /tmp/m_written_nowiring.txt 2>/dev/null
.venv/bin/python benchmarks/tracr_programs.py --json /tmp/tracr_wiring.json > /tmp/m_tracr.txt 2>&1
$M evaluate --data data/ds4k --split test --verify-k 32 --verify-limit 60 > /tmp/m_ds4k_wiring.txt 2>/dev/null
$M evaluate --data data/ds4k --split test --verify-k 32 --verify-limit 60 --no-wiring > /tmp/m_ds4k_nowiring.txt 2>/dev/null
# stop 29: the written split at 113 programs (all of them in verified@k), and a 17.9 M-parameter model
$M evaluate --split written --verify-k 32 --verify-limit 200 > docs/any-program/written113_wiring.txt 2>/dev/null
.venv/bin/python benchmarks/large_model.py > docs/any-program/large_model.txt 2>&1
# stop 30: the default mode on the written split, judged by Tracr's evaluation of the originals
.venv/bin/python benchmarks/tracr_programs.py --written > docs/any-program/written113_default.txt 2>/dev/null
# stop 30: the i.i.d. test split at 232 models (the 100k dataset's test examples among its first 20,000 indices)
$M dataset build data/ds20k --n 20000 --ops 1-9 --seed 0 --workers 1
$M evaluate --data data/ds20k --split test --verify-k 32 --verify-limit 232 > docs/any-program/ds20k_wiring.txt 2>/dev/null
$M evaluate --data data/ds20k --split test --verify-k 32 --verify-limit 232 --no-wiring > docs/any-program/ds20k_nowiring.txt 2>/dev/null  # after the verification fix (before: ds20k_nowiring_before_fix.txt)
echo done > /tmp/measure.done
# stop 36: greedy guided by the wiring (decompilation/guide.py) vs the meta-model alone; ds20k rebuilt as above
$M evaluate --data data/ds20k --split test > docs/any-program/ds20k_greedy_guided.txt 2>/dev/null
$M evaluate --data data/ds20k --split test --no-wiring > docs/any-program/ds20k_greedy_alone.txt 2>/dev/null
$M evaluate --split written > docs/any-program/written113_greedy_guided.txt 2>/dev/null
