"""Wiring-guided decoding: the data flow read from the weights narrows the grammar without excluding the truth.

Oracles: the true program's own canonical tokens (every one must stay allowed), and the true program's RASP
evaluation (a decoder that knows nothing — random logits — guided by the weights alone must land on a program
that computes what the source program computes, once any table token it holds is read).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from metamodels.dataset import sampling
from metamodels.decompilation import guide, readout
from metamodels.evaluation import oracle
from metamodels.meta import decoding
from metamodels.rasp import canonical
from metamodels.rasp import tokens as tokens_mod
from metamodels.rasp.program import Program
from metamodels.rasp.tables import Table
from metamodels.transformer import battery, compiler, densification
from tests import cases
from tests.meta.test_decoding import WEIGHTS, Scripted


def _sampled(index: int):
    program = sampling.sample(sampling.SamplerConfig(min_ops=3, max_ops=9), 5, index).program
    return program, compiler.compile_program(program)


@pytest.mark.parametrize("index", range(6))
def test_the_true_tokens_are_always_allowed(index):
    program, model = _sampled(index)
    g = guide.guide_or_none(model)
    assert g is not None
    grammar = tokens_mod.Grammar()
    narrowed = 0
    for token in tokens_mod.tokenize_strings(program):
        allowed = g.allowed(grammar)
        assert token in allowed, (token, sorted(allowed))
        narrowed += len(allowed) < len(grammar.allowed())
        grammar.step(token)
    assert narrowed > 0  # the guide does narrow


@pytest.mark.parametrize("index", range(6))
def test_random_logits_under_the_guide_compute_the_source_program_after_readout(index):
    program, model = _sampled(index)
    random = Scripted(lambda history, position: 4 * torch.randn(len(history), len(tokens_mod.VOCAB)), 600)
    torch.manual_seed(index)
    [unguided] = decoding.greedy(random, [WEIGHTS])
    [c] = decoding.greedy(random, [WEIGHTS], [guide.guide_or_none(model)])
    assert c.program is not None and unguided.program is not None
    inputs = battery.make_battery(model.settings.vocab, model.settings.max_seq_len, per_length=20, seed=3)
    want = oracle.outputs_of(program, inputs, False)
    assert oracle.same_outputs(oracle.outputs_of(readout.read_tables(c.program, model), inputs, False), want)
    assert tokens_mod.tokenize_strings(unguided.program) != tokens_mod.tokenize_strings(program)  # chance alone fails


def _skeleton(program: Program) -> list[str]:
    """Naming-independent digests of every variable's data flow: functions, predicates and factors blanked.

    A SequenceMap's function becomes a commutative one: the weights do not order an MLP's inputs.
    """
    blank = [dataclasses.replace(op, fn=None if op.fn is None else "max" if len(op.args) == 2 else Table.unread(1),
                                 predicate="TRUE" if op.kind == "Select" else None,
                                 coeffs=(1.0, 1.0) if op.coeffs else None) for op in program.ops]  # fmt: skip
    return sorted(canonical.structure_keys(Program(tuple(blank), program.output).without_dead_code()).values())


@pytest.mark.parametrize("name", ["sort_freq", "pair_balance", "detect_pattern_abc_causal", "shuffle_dyck"])
def test_deep_tracr_programs_keep_their_data_flow_under_random_logits(name):
    sop, vocab, max_seq_len, causal = cases.tracr_cases()[name]
    model = compiler.compile_program(sop, vocab, max_seq_len, causal=causal)
    random = Scripted(lambda history, position: 4 * torch.randn(len(history), len(tokens_mod.VOCAB)), 600)
    torch.manual_seed(0)
    [c] = decoding.greedy(random, [WEIGHTS], [guide.guide_or_none(model)])
    [unguided] = decoding.greedy(random, [WEIGHTS])
    assert c.program is not None and unguided.program is not None
    truth = compiler.program_from_rasp(sop, vocab, max_seq_len)
    assert _skeleton(c.program) == _skeleton(truth) != _skeleton(unguided.program)


def test_a_guide_that_allows_nothing_leaves_the_grammar():
    class Nothing:
        def allowed(self, grammar):
            return set()

    random = Scripted(lambda history, position: 4 * torch.randn(len(history), len(tokens_mod.VOCAB)), 600)
    [c] = decoding.greedy(random, [WEIGHTS], [Nothing()])
    assert c.program is not None


def test_models_without_residual_labels_have_no_guide():
    model = compiler.compile_program(cases.tracr_cases()["sort"][0], (1, 2, 3, 4, 5), 5)
    assert guide.guide_or_none(model) is not None
    assert guide.guide_or_none(densification.densify(model, seed=0).model) is None
