"""The meta-model: weights in, program tokens out.

``weight_encoding`` turns a model's arrays into weight tokens, ``metamodel`` is
the prefix-LM transformer (and its checkpoints), ``batching`` encodes dataset
splits and pads batches (``teacher_forced`` scores a batch against the truth),
``training`` is the training loop, ``decoding`` the grammar-constrained greedy
and beam search.
"""
