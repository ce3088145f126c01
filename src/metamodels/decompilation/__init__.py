"""Decompilation: a model in, a checked program out.

``pipeline`` orchestrates encode → decode → read out → verify → repair;
``readout`` reads a decoded structure's functions and predicates from the
weights; ``verification`` checks a program against a model (behaviour, then
weights up to permutation).
"""
