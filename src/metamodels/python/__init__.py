"""Python programs with loops (paper 002, App. B.2): structure and interpreter, tokens and grammar, generator.

In: a seed and an index (and the input domain). Out: a :class:`~metamodels.python.program.PyProgram`,
its canonical text, its tokens, and its output on any input.
"""
