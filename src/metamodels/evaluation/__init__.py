"""Evaluation: a meta-model and a dataset split in, measured accuracy out.

``oracle`` compares a program's outputs with the truth, ``metrics`` holds the
groupings and verified@k, ``evaluate`` runs a checkpoint over a split, ``report``
prints tables and plots.
"""
