cd /work/main
M=.venv/bin/metamodels
$M evaluate --split written --verify-k 32 > /tmp/m_written_wiring.txt 2>/dev/null
$M evaluate --split written --verify-k 32 --no-wiring > /tmp/m_written_nowiring.txt 2>/dev/null
.venv/bin/python benchmarks/tracr_programs.py --json /tmp/tracr_wiring.json > /tmp/m_tracr.txt 2>&1
$M evaluate --data data/ds4k --split test --verify-k 32 --verify-limit 60 > /tmp/m_ds4k_wiring.txt 2>/dev/null
$M evaluate --data data/ds4k --split test --verify-k 32 --verify-limit 60 --no-wiring > /tmp/m_ds4k_nowiring.txt 2>/dev/null
echo done > /tmp/measure.done
