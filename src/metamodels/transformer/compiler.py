"""The compiler wrapper: the only module that imports Tracr's compiler (and so JAX).

``compile_program`` runs Tracr's own stages up to the craft model (validation,
graph extraction, basis inference, craft blocks, layer allocation), then builds
the final weight matrices directly in numpy, in exactly the layout of Tracr's
``assemble.assemble_craft_model``. That skips Haiku's ``init`` (one-off XLA
compilations that are >95% of Tracr's compile time) and gives identical
parameters; ``reference_params`` runs Tracr's full path for comparison.

Correctness traps handled here (see the shared notes):
1. SelectorWidth at max_seq_len >= 10 is wrong at ``mlp_exactness=100``, and from
   length 6 on its output is already imprecise enough that a numerical MLP reading it
   goes wrong (7 of 52 sampled open-vocabulary programs; none at 1000): the
   default exactness is 1000 from length 6 on.
2. A numerical Map whose input derives from a numerical Aggregate compiles
   wrongly: Tracr infers the mean's value set as {v / n} instead of {k / n}.
   We correct those value sets after Tracr's basis inference (only programs with
   this pattern get parameters that differ from Tracr's, and they are right).
3. PAD is not masked by Tracr's model: :mod:`metamodels.transformer.forward` runs unpadded.
4. At long lengths the default exactness is too small for the values an MLP must tell apart (a running
   fraction at length 59 has values 1/3422 apart): the exactness is raised to what the MLPs' input value
   sets need (:func:`needed_exactness`); the model's settings record the value used.
5. Attention softens as the key size grows (logits are divided by sqrt(key_size)): above key size 17 the
   queries are scaled so attention stays hard (:func:`attention_scale`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Collection, Sequence

import networkx as nx
import numpy as np
from tracr.compiler import (
    basis_inference,
    craft_graph_to_model,
    expr_to_craft_graph,
    nodes,
    rasp_to_graph,
    validating,
)
from tracr.craft import bases, transformers, vectorspace_fns
from tracr.rasp import rasp
from tracr.utils import errors

from metamodels.errors import MetamodelsError
from metamodels.rasp import program as program_module
from metamodels.rasp import text
from metamodels.rasp.program import Program
from metamodels.transformer import compiled
from metamodels.transformer.compiled import CompiledModel, CompileSettings, Value

DEFAULT_VOCAB: tuple[int, ...] = (1, 2, 3, 4, 5)
DEFAULT_MAX_SEQ_LEN = 5


@dataclasses.dataclass(frozen=True)
class CompileFailure:
    """Why a program could not be compiled: the operation and the rule it breaks."""

    op: str
    reason: str

    def __str__(self) -> str:
        return f"{self.op}: {self.reason}"


class CompileError(MetamodelsError):
    """Raised by :func:`compile_program`; carries the :class:`CompileFailure`s."""

    def __init__(self, failures: Sequence[CompileFailure]) -> None:
        super().__init__("cannot compile: " + "; ".join(str(f) for f in failures))
        self.failures = tuple(failures)


def settings_for(
    vocab: Collection[Value] = DEFAULT_VOCAB,
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN,
    *,
    causal: bool = False,
    mlp_exactness: int | None = None,
) -> CompileSettings:
    """Validated compile settings; ``mlp_exactness=None`` picks 100, or 1000 from length 6 on (trap 1)."""
    if not all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in vocab):
        raise MetamodelsError(f"vocab tokens must be int, float or str, got {list(vocab)!r}")
    if any(isinstance(v, float) and not math.isfinite(v) for v in vocab):
        raise MetamodelsError(f"vocab tokens must be finite numbers, got {list(vocab)!r}")
    values = tuple(sorted(set(vocab), key=lambda v: (type(v).__name__, v)))
    if not values:
        raise MetamodelsError("vocab must contain at least one token")
    if not isinstance(max_seq_len, int) or max_seq_len < 1:
        raise MetamodelsError(f"max_seq_len must be a positive integer, got {max_seq_len!r}")
    if mlp_exactness is None:
        mlp_exactness = 1000 if max_seq_len >= 6 else 100
    if not isinstance(mlp_exactness, int) or mlp_exactness < 1:
        raise MetamodelsError(f"mlp_exactness must be a positive integer, got {mlp_exactness!r}")
    settings = CompileSettings(vocab=values, max_seq_len=max_seq_len, causal=causal, mlp_exactness=mlp_exactness)
    if settings.bos in values or settings.pad in values:
        raise MetamodelsError(f"vocab must not contain the reserved tokens {settings.bos!r} and {settings.pad!r}")
    return settings


def validate(program: Program | rasp.SOp, inputs: Sequence[Sequence[Value]] = ()) -> list[CompileFailure]:
    """Tracr's static checks, then its dynamic checks on each of ``inputs`` (first failure per op)."""
    sop = program.to_rasp() if isinstance(program, Program) else program
    failures = [_failure(u) for u in validating.static_validate(sop)]
    for xs in inputs:
        evaluator = _MemoValidator()
        evaluator.evaluate(sop, list(xs))
        for unsupported in evaluator.unsupported_exprs:
            if all(f.op != unsupported.expr.name for f in failures):
                failures.append(_failure(unsupported))
    return failures


AGGREGATION = "Categorical aggregate"  # how Tracr's reason starts when a selector averages different values
# How Tracr's reason starts for a numerical Aggregate of values outside {0, 1}: RASP's mean is still well defined
# there, and Tracr refuses to compile such an Aggregate at all (value sets), so no compiled program has one.
NUMERICAL_AGGREGATION = "Numerical aggregate"


class _MemoValidator(program_module.Memoized, validating.DynamicValidationEvaluator):
    """Tracr's dynamic validation, memoized, with one hole closed: a categorical Aggregate whose selector picks
    different values is rejected even where their mean happens to be one of the values (indices 0, 1, 2 average to
    1, which Tracr's check accepts; the compiled model holds a third of each direction there, not 1)."""

    def evaluate(self, expr, xs):
        fresh = id(expr) not in self._memo
        out = super().evaluate(expr, xs)
        if fresh and isinstance(expr, rasp.Aggregate) and rasp.is_categorical(expr):
            if all(u.expr is not expr for u in self.unsupported_exprs):
                values = self.evaluate(expr.sop, xs)
                picked = ({v for v, chosen in zip(values, row) if chosen} for row in self.evaluate(expr.selector, xs))
                if any(len(p) > 1 for p in picked):
                    reason = f"{AGGREGATION} does not support Selectors with width > 1 that require aggregation"
                    self.unsupported_exprs.append(validating.TracrUnsupportedExpr(expr=expr, reason=reason))
        return out


def evaluate_validated(
    program: Program | rasp.SOp, xs: Sequence[Value], causal: bool = False
) -> tuple[list[Value], bool]:
    """RASP evaluation of one input and whether Tracr's dynamic validation accepts it, in one pass.

    ``causal`` (Programs only): as a causally masked model computes it.
    """
    output, failures = evaluate_checked(program, xs, causal)
    return output, not failures


def evaluate_checked(
    program: Program | rasp.SOp, xs: Sequence[Value], causal: bool = False
) -> tuple[list[Value], tuple[CompileFailure, ...]]:
    """RASP evaluation of one input and the reasons Tracr's dynamic validation rejects it (none: accepted)."""
    sop = program.to_rasp(causal) if isinstance(program, Program) else program
    evaluator = _MemoValidator()
    output = evaluator.evaluate(sop, list(xs))
    return list(output), tuple(_failure(u) for u in evaluator.unsupported_exprs)  # type: ignore[arg-type]


def _failure(unsupported: validating.TracrUnsupportedExpr) -> CompileFailure:
    return CompileFailure(op=unsupported.expr.name, reason=unsupported.reason)


def compile_program(
    program: Program | rasp.SOp,
    vocab: Collection[Value] = DEFAULT_VOCAB,
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN,
    *,
    causal: bool = False,
    mlp_exactness: int | None = None,
) -> CompiledModel:
    """Compile a program (or a Tracr ``rasp`` expression) to transformer weights.

    Raises :class:`CompileError` naming the operation Tracr cannot compile and
    why, and ValueError for bad settings.
    """
    result = try_compile(program, settings_for(vocab, max_seq_len, causal=causal, mlp_exactness=mlp_exactness))
    if isinstance(result, CompileFailure):
        raise CompileError([result])
    return result


def try_compile(program: Program | rasp.SOp, settings: CompileSettings) -> CompiledModel | CompileFailure:
    """Compile with explicit settings; expected failures come back as a value.

    A Program's expressions are numbered from 1 for every compile: Tracr labels expressions ``name_id`` from a
    process-wide counter and orders the residual stream by label, so without this the same program compiled
    after different work (another worker count, another order) would get another residual order.
    """
    if not isinstance(program, Program):
        return _try_compile(program, settings)
    outer = rasp.RASPExpr._ids
    rasp.RASPExpr._ids = itertools.count(1)  # type: ignore[misc]
    try:
        result = _try_compile(program.to_rasp(), settings)
    finally:  # later expressions are numbered after every id handed out, so no two share a label
        rasp.RASPExpr._ids = itertools.count(max(next(outer), next(rasp.RASPExpr._ids)))  # type: ignore[misc]
    if isinstance(result, CompiledModel):
        result = dataclasses.replace(result, program_text=text.format_program(program))
    return result


def _try_compile(sop: rasp.SOp, settings: CompileSettings) -> CompiledModel | CompileFailure:
    failures = validate(sop)
    if failures:
        return failures[0]
    try:
        graph, sources, sink, craft_model, settings = _craft(sop, settings)
    except (NotImplementedError, ValueError, TypeError, KeyError) as e:  # Tracr's own refusals
        return CompileFailure(op=sop.name, reason=f"{type(e).__name__}: {e}")
    too_wide = _value_wider_than_key(craft_model, graph)
    if too_wide is not None:
        return too_wide
    layer_of = _layer_allocation(graph, sources)
    return _assemble(craft_model, graph, sink, settings, layer_of)


def _craft(sop: rasp.SOp, settings: CompileSettings):
    """Tracr's pipeline up to (and including) the craft model, as in ``compiling.py``."""
    extracted = rasp_to_graph.extract_rasp_graph(sop)
    graph, sources, sink = extracted.graph, extracted.sources, extracted.sink
    if rasp.tokens.label not in graph.nodes:
        raise MetamodelsError("the program never reads `tokens`; Tracr needs it to build the embedding")
    basis_inference.infer_bases(graph, sink, set(settings.vocab), settings.max_seq_len)
    _correct_mean_value_sets(graph, sink, settings.max_seq_len)
    exactness = max(settings.mlp_exactness, needed_exactness(graph, settings.max_seq_len))
    settings = dataclasses.replace(settings, mlp_exactness=exactness)
    expr_to_craft_graph.add_craft_components_to_rasp_graph(
        graph, bos_dir=bases.BasisDirection(rasp.tokens.label, settings.bos), mlp_exactness=settings.mlp_exactness
    )
    craft_model = craft_graph_to_model.craft_graph_to_model(graph, sources)
    return graph, sources, sink, craft_model, settings


MAX_SCALED_INPUT = 1e5  # exactness x |MLP input| stays below this: float32 keeps L * x - L * t exact to ~0.01


def needed_exactness(graph, max_seq_len: int) -> int:
    """The MLP exactness (Tracr's ``large_number`` L) that separates every value an MLP discretises (trap 4).

    Tracr's discretising MLPs (a numerical Map's input, SelectorWidth's attention-to-BOS weight 1/(w+1)) switch
    from one input value to the next over a width 1/L below the midpoint, so two values a gap g apart need
    L >= 2/g; we ask 3/g (room for the attention's own rounding), capped where float32 stops resolving L * x
    (then the model can differ from RASP). Up to length 17 Tracr's defaults (100, 1000 from length 6) already
    give that for SelectorWidth and means of 0/1 values, and the weights are Tracr's own.
    """
    needed, largest = 1.0, 1.0
    for node in graph.nodes.values():
        expr = node[nodes.EXPR]
        if isinstance(expr, rasp.Map) and rasp.is_numerical(expr.inner):
            values = sorted({float(v) for v in graph.nodes[expr.inner.label][nodes.VALUE_SET]})
        elif isinstance(expr, rasp.SelectorWidth):
            values = sorted(1 / (w + 1) for w in range(max_seq_len + 1))
        else:
            continue
        gaps = [b - a for a, b in zip(values, values[1:]) if b > a]
        if gaps:
            needed, largest = max(needed, 3 / min(gaps)), max(largest, *(abs(v) for v in values))
    return int(math.ceil(min(needed, MAX_SCALED_INPUT / largest)))


def value_sets(sop: rasp.SOp, vocab: Collection[Value], max_seq_len: int) -> dict[str, set[Value]]:
    """The value set Tracr infers for every expression of ``sop`` (by label), trap 2 corrected."""
    extracted = rasp_to_graph.extract_rasp_graph(sop)
    graph, sink = extracted.graph, extracted.sink
    basis_inference.infer_bases(graph, sink, set(vocab), max_seq_len)
    _correct_mean_value_sets(graph, sink, max_seq_len)
    return {label: set(node.get(nodes.VALUE_SET, ())) for label, node in graph.nodes.items()}


def program_from_rasp(
    sop: rasp.SOp, vocab: Collection[Value] | None = None, max_seq_len: int | None = None
) -> program_module.Program:
    """A Tracr ``rasp`` expression as a Program; functions and predicates outside the library become tables over
    the value sets Tracr infers for ``vocab`` and ``max_seq_len`` (see :func:`metamodels.rasp.program.program_from_rasp`).
    """
    known = None if vocab is None or max_seq_len is None else (lambda: value_sets(sop, vocab, max_seq_len))
    return program_module.program_from_rasp(sop, known)


def _correct_mean_value_sets(graph, sink, max_seq_len: int) -> None:
    """Trap 2: give numerical means their true value set {v * k / n} and update what depends on it."""
    changed: set[str] = set()
    for node_id in nx.dfs_postorder_nodes(graph.reverse(), sink[nodes.ID]):
        node = graph.nodes[node_id]
        expr = node[nodes.EXPR]
        if isinstance(expr, rasp.Aggregate) and rasp.is_numerical(expr):
            values = graph.nodes[expr.sop.label][nodes.VALUE_SET]
            node[nodes.VALUE_SET] = {v * k / n for v in values for n in range(1, max_seq_len + 1) for k in range(n + 1)}
        elif isinstance(expr, (rasp.Map, rasp.SequenceMap)) and any(c.label in changed for c in expr.children):
            inputs = [graph.nodes[c.label][nodes.VALUE_SET] for c in expr.children]
            f = errors.ignoring_arithmetic_errors(expr.f)
            node[nodes.VALUE_SET] = {y for args in itertools.product(*inputs) if (y := f(*args)) is not None}
            if rasp.is_categorical(expr):
                node[nodes.OUTPUT_BASIS] = bases.VectorSpaceWithBasis.from_values(
                    expr.label, node[nodes.VALUE_SET]
                ).basis
        else:
            continue
        changed.add(node_id)


def _value_wider_than_key(craft_model, graph) -> CompileFailure | None:
    """Tracr's assembly crashes when a head's value space is wider than the layer's key size."""
    _, _, key_size, _, _ = _config(craft_model)
    for block in craft_model.blocks:
        if isinstance(block, transformers.MLP):
            continue
        for head in block.as_multi().heads():
            if head.w_ov.matrix.shape[1] > key_size:
                label = head.w_ov.output_space.basis[0].name
                name = graph.nodes[label][nodes.EXPR].name if label in graph.nodes else label
                return CompileFailure(
                    op=name,
                    reason=f"its attention head moves {head.w_ov.matrix.shape[1]} values but the key size is {key_size}; "
                    "Tracr cannot assemble a head whose value space is wider than its key space",
                )
    return None


def _layer_allocation(graph, sources) -> dict[str, int]:
    """Sublayer index of each operation, as Tracr allocated it (0 attn, 1 mlp, 2 attn, ...)."""
    allocation = craft_graph_to_model._allocate_modules_to_layers(graph, sources)  # noqa: SLF001 - Tracr's own rule
    return {graph.nodes[node_id][nodes.EXPR].name: int(layer) for node_id, layer in allocation.items()}


def _assemble(craft_model, graph, sink, settings: CompileSettings, layer_of: dict[str, int]) -> CompiledModel:
    """numpy twin of ``craft_model_to_transformer`` + ``assemble.assemble_craft_model``."""
    tokens_values = graph.nodes[rasp.tokens.label][nodes.VALUE_SET] | {settings.bos, settings.pad}
    tokens_space = bases.VectorSpaceWithBasis.from_values(rasp.tokens.label, tokens_values)
    indices_space = bases.VectorSpaceWithBasis.from_values(rasp.indices.label, range(settings.max_seq_len))
    output_space = bases.VectorSpaceWithBasis(sink[nodes.OUTPUT_BASIS])
    residual = bases.join_vector_spaces(craft_model.residual_space, tokens_space, indices_space, output_space)
    d = residual.num_dims

    def project(space: bases.VectorSpaceWithBasis) -> np.ndarray:  # [D, dim(space)]
        return vectorspace_fns.project(residual, space).matrix

    n_layers, n_heads, key_size, mlp_hidden, module_names = _config(craft_model)
    params = _embeddings(residual, tokens_space, indices_space)
    for layer in range(n_layers):
        for key, shape in compiled.layer_shapes(d, n_heads * key_size, mlp_hidden).items():
            params[f"transformer/layer_{layer}/{key}"] = np.zeros(shape, np.float32)
    for name, block in zip(module_names, craft_model.blocks):
        if isinstance(block, transformers.MLP):
            hidden = block.fst.output_space.num_dims
            params[f"{name}/linear_1/w"][:, :hidden] = project(block.fst.input_space) @ block.fst.matrix
            params[f"{name}/linear_2/w"][:hidden, :] = block.snd.matrix @ project(block.snd.output_space).T
        else:
            for h, head in enumerate(block.as_multi().heads()):
                cols = slice(h * key_size, h * key_size + head.w_qk.matrix.shape[1])
                params[f"{name}/query/w"][:, cols] = project(head.w_qk.left_space) @ head.w_qk.matrix
                params[f"{name}/key/w"][:, cols] = project(head.w_qk.right_space)
                vcols = slice(h * key_size, h * key_size + head.w_ov.matrix.shape[1])
                params[f"{name}/value/w"][:, vcols] = project(head.w_ov.input_space) @ head.w_ov.matrix
                params[f"{name}/linear/w"][vcols, :] = project(head.w_ov.output_space).T
    scale = attention_scale(key_size)
    for layer in range(n_layers) if scale != 1.0 else ():
        params[f"transformer/layer_{layer}/attn/query/w"] *= np.float32(scale)
    categorical = rasp.is_categorical(sink[nodes.EXPR])
    params["unembed"] = project(output_space).astype(np.float32)
    return CompiledModel(
        params=params,
        settings=settings,
        n_layers=n_layers,
        n_heads=n_heads,
        key_size=key_size,
        mlp_hidden=mlp_hidden,
        input_values=tuple(direction.value for direction in tokens_space.basis),
        output_encoding="categorical" if categorical else "numerical",
        output_values=tuple(direction.value for direction in output_space.basis) if categorical else (),
        residual_labels=tuple(compiled.direction_label(d.name, d.value) for d in residual.basis),
        layer_of=layer_of,
    )


COLDNESS = 100.0  # Tracr's softmax coldness: a match scores 100, BOS (attended when nothing else is) 50
MIN_GAP = 12.0  # least logit gap between a match and BOS after the 1/sqrt(key_size) scaling: BOS weight < 1e-5


def attention_scale(key_size: int) -> float:
    """Factor on every query weight so that attention stays hard at any key size (trap 5).

    The forward pass divides attention logits by sqrt(key_size) (as Tracr's Haiku model does), so Tracr's gap of
    50 between a match and BOS shrinks to 50/sqrt(K): at K = 61 (an index comparison at length 59) BOS keeps
    weight 0.0017 and a numerical mean is off by that much. Up to K = 17 the gap is at least 12 and the
    weights are Tracr's own (factor 1); above, queries are scaled so the gap is 12 — the same hard attention.
    """
    gap = 0.5 * COLDNESS / math.sqrt(key_size)
    return 1.0 if gap >= MIN_GAP else MIN_GAP / gap


def _config(craft_model) -> tuple[int, int, int, int, list[str]]:
    """(n_layers, n_heads, key_size, mlp_hidden, module names), as ``assemble._get_model_config_and_module_names``."""
    candidates = iter(f"transformer/layer_{i}/{t}" for i in range(len(craft_model.blocks)) for t in ("attn", "mlp"))
    heads: list = []
    mlps: list = []
    names: list[str] = []
    for block in craft_model.blocks:
        kind = "mlp" if isinstance(block, transformers.MLP) else "attn"
        (mlps if kind == "mlp" else heads).extend([block] if kind == "mlp" else list(block.as_multi().heads()))
        name = next(candidates)
        while not name.endswith(kind):
            name = next(candidates)
        names.append(name)
    n_layers = int(names[-1].split("_")[1].split("/")[0]) + 1 if names else 0
    n_heads = max(
        (len(list(b.as_multi().heads())) for b in craft_model.blocks if not isinstance(b, transformers.MLP)), default=1
    )
    key_size = max((max(h.w_qk.matrix.shape) for h in heads), default=1)
    mlp_hidden = max((m.fst.output_space.num_dims for m in mlps), default=1)
    return n_layers, n_heads, key_size, mlp_hidden, names


def _embeddings(residual, tokens_space, indices_space) -> dict[str, np.ndarray]:
    tokens_to_res = vectorspace_fns.project(tokens_space, residual)
    one = bases.BasisDirection("one")
    if one in residual:
        one_to_res = vectorspace_fns.Linear.from_action(
            tokens_space, residual, lambda x: residual.vector_from_basis_direction(one)
        )
        tokens_to_res = vectorspace_fns.Linear.combine_in_parallel([tokens_to_res, one_to_res])
    index_to_res = vectorspace_fns.project(indices_space, residual)
    pos = np.concatenate([np.zeros((1, residual.num_dims)), index_to_res.matrix], axis=0)
    return {
        "token_embed/embeddings": tokens_to_res.matrix.astype(np.float32),
        "pos_embed/embeddings": pos.astype(np.float32),
    }


def reference_params(program: Program | rasp.SOp, settings: CompileSettings) -> dict[str, np.ndarray]:
    """Tracr's own ``compile_rasp_to_model`` parameters, flattened to our keys (slow: seconds per program)."""
    from tracr.compiler import compiling

    sop = program.to_rasp() if isinstance(program, Program) else program
    model = compiling.compile_rasp_to_model(
        sop,
        set(settings.vocab),
        settings.max_seq_len,
        causal=settings.causal,
        compiler_bos=settings.bos,
        compiler_pad=settings.pad,
        mlp_exactness=settings.mlp_exactness,
    )
    return {
        f"{module}/{name}": np.asarray(value) for module, inner in model.params.items() for name, value in inner.items()
    }
