"""metamodels: meta-models that decompile transformer weights into RASP programs.

The public API (stable; see the README's changelog for any change):

- ``parse_program(text) -> Program``, ``format_program(program) -> str``
- ``program_from_rasp(sop, vocab=None, max_seq_len=None) -> Program`` and ``Program.to_rasp()``;
  functions and predicates outside the library are ``Table``s (value tables)
- ``compile_program(program, vocab, max_seq_len, *, causal, mlp_exactness) -> CompiledModel``
- ``canonicalize(program)``, ``tokenize(program)``, ``detokenize(ids)``
- ``load_model(path)``, ``save_model(model, path)``, ``run_model(model, inputs)``
- ``verify(program, model) -> VerificationReport``, ``densify(model, ...) -> Densified``
- ``decompile(model, *, checkpoint=None, beam=1, verify=False, read_tables=True) -> Decompiled`` (program text, tokens, scores)
- ``read_tables(program, model) -> Program``: a program's functions and predicates read from the weights

Heavy modules (Tracr's compiler, JAX) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metamodels import artifacts
from metamodels.errors import MetamodelsError
from metamodels.rasp.canonical import canonicalize
from metamodels.rasp.program import Op, Program
from metamodels.rasp.tables import Table
from metamodels.rasp.text import ProgramSyntaxError, format_program, parse_program

if TYPE_CHECKING:
    from metamodels.transformer.compiled import CompiledModel

__version__ = artifacts.VERSION
__all__ = [
    "Op",
    "Program",
    "Table",
    "ProgramSyntaxError",
    "MetamodelsError",
    "parse_program",
    "format_program",
    "program_from_rasp",
    "canonicalize",
    "compile_program",
    "tokenize",
    "detokenize",
    "load_model",
    "save_model",
    "run_model",
    "verify",
    "densify",
    "decompile",
    "read_tables",
]


def program_from_rasp(sop: Any, vocab: Any = None, max_seq_len: int | None = None) -> Program:
    """A Tracr rasp expression as a Program; see :func:`metamodels.transformer.compiler.program_from_rasp`."""
    from metamodels.transformer import compiler

    return compiler.program_from_rasp(sop, vocab, max_seq_len)


def compile_program(program: Any, vocab: Any = None, max_seq_len: int | None = None, **kwargs: Any) -> CompiledModel:
    """Compile a Program (or Tracr rasp expression); see :func:`metamodels.transformer.compiler.compile_program`."""
    from metamodels.transformer import compiler

    return compiler.compile_program(
        program,
        compiler.DEFAULT_VOCAB if vocab is None else vocab,
        compiler.DEFAULT_MAX_SEQ_LEN if max_seq_len is None else max_seq_len,
        **kwargs,
    )


def tokenize(program: Program) -> list[int]:
    """Token ids of the program's canonical form; see :mod:`metamodels.rasp.tokens`."""
    from metamodels.rasp import tokens

    return tokens.tokenize(program)


def detokenize(ids: list[int]) -> Program:
    """The program a token sequence describes; see :mod:`metamodels.rasp.tokens`."""
    from metamodels.rasp import tokens

    return tokens.detokenize(ids)


def load_model(path: Any) -> CompiledModel:
    """Read a model file; see :mod:`metamodels.transformer.modelfile`."""
    from metamodels.transformer import modelfile

    return modelfile.load(path)


def save_model(model: CompiledModel, path: Any, *, with_source: bool = False) -> None:
    """Write a model file (without its program text unless ``with_source``); see :mod:`metamodels.transformer.modelfile`."""
    from metamodels.transformer import modelfile

    modelfile.save(model, path, with_source=with_source)


def run_model(model: CompiledModel, inputs: list) -> list:
    """Decoded outputs of a compiled model on each input sequence; see :mod:`metamodels.transformer.forward`."""
    from metamodels.transformer import forward

    return forward.run(model, inputs)


def verify(program: Program, model: CompiledModel, **kwargs: Any) -> Any:
    """Check a program against a compiled model; see :func:`metamodels.decompilation.verification.verify`."""
    from metamodels.decompilation import verification

    return verification.verify(program, model, **kwargs)


def densify(model: CompiledModel, **kwargs: Any) -> Any:
    """PCA-compress and rotate a model's residual stream; see :func:`metamodels.transformer.densification.densify`."""
    from metamodels.transformer import densification

    return densification.densify(model, **kwargs)


def decompile(model: CompiledModel, **kwargs: Any) -> Any:
    """Decompile a compiled model with a meta-model; see :func:`metamodels.decompilation.pipeline.decompile`."""
    from metamodels.decompilation import pipeline

    return pipeline.decompile(model, **kwargs)


def read_tables(program: Program, model: CompiledModel) -> Program:
    """``program`` with its functions and predicates read from ``model``'s weights; see :mod:`metamodels.decompilation.readout`."""
    from metamodels.decompilation import readout

    return readout.read_tables(program, model)
