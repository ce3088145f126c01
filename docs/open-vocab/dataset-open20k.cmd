metamodels dataset build /work/data/open20k --n 20000 --ops 1-12 --vocab-size 3-16 --max-seq-len 4-10 --open-vocab --seed 0 --workers 2 --max-params 262144 --max-tokens 192 --max-layers 16
