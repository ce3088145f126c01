"""Transformers as weights: RASP program in, runnable model out.

``compiler`` (the only module that imports Tracr's compiler and JAX) turns a
:class:`~metamodels.rasp.program.Program` into a :class:`compiled.CompiledModel`
(named numpy arrays in Tracr's layout); ``forward`` runs one in numpy;
``modelfile`` stores it as safetensors + JSON; ``battery`` makes the inputs it is
judged on; ``residual_basis`` and ``densification`` change its basis (canonical
basis, rotations, PCA compression, unit and residual permutations).
"""
