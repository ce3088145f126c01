"""Grammar-constrained beam search of the mapping decoder, and choosing a candidate by agreement with the model."""

from __future__ import annotations

import json

import pytest
import torch

from metamodels.mapping import data, decoding, training
from metamodels.python import tokens as python_tokens
from metamodels.rasp import program as rasp_program
from metamodels.zoo import build, stats


def _inputs(checkpoint, row):
    model, vocab, meta = training.load(checkpoint)
    config = training.MappingConfig(**meta["config"])
    example = data.Example("", "", "", "", 0, 0, config.featurize(stats.model_from_row(row)), (1, 2))
    return model, vocab, meta, training.collate(config, [example])[0]


def test_beam_candidates_parse_are_distinct_and_scored_by_the_models_own_log_probability(zoo, checkpoint):
    for row in list(build.read_zoo(zoo, split="test"))[:1]:
        model, vocab, meta, inputs = _inputs(checkpoint, row)
        found = decoding.beam_search(model, inputs, vocab, meta["max_len"], beam=4)
        assert 1 <= len(found) <= 4
        assert len({d.ids for d in found}) == len(found)
        assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
        for d in found:
            assert data.parse_decoded(vocab, data.decode_strings(vocab, d.ids)) is not None
            # oracle: teacher forcing the finished sequence through the model gives the same summed log-probability
            ids = torch.tensor([d.ids])
            with torch.no_grad():
                logp = torch.log_softmax(model(inputs, ids[:, :-1]).float(), -1)
            assert d.score == pytest.approx(float(logp[0].gather(-1, ids[0, 1:, None]).sum()), abs=1e-3)


def test_an_untrained_decoder_still_writes_programs_under_the_grammar(zoo):
    language = json.loads((zoo / "manifest.json").read_text())["config"]["language"]
    vocab = data.vocabulary(language)
    config = training.MappingConfig(arch="circuits")
    torch.manual_seed(0)
    model = training.make_model(config, vocab, 120).eval()
    row = next(build.read_zoo(zoo))
    example = data.Example("", "", "", "", 0, 0, config.featurize(stats.model_from_row(row)), (1, 2))
    inputs = training.collate(config, [example])[0]
    unconstrained = data.decode_strings(vocab, training.greedy(model, inputs, 120)[0])
    assert data.parse_decoded(vocab, unconstrained) is None  # random weights write no program unaided
    found = decoding.beam_search(model, inputs, vocab, 120, beam=2)
    assert found and all(data.parse_decoded(vocab, data.decode_strings(vocab, d.ids)) for d in found)
    with pytest.raises(Exception, match="--beam must be at least 1"):
        decoding.beam_search(model, inputs, vocab, 120, beam=0)


def _decoded(vocab, language: str, text: str) -> decoding.Decoded:
    ids = tuple(vocab.ids[t] for t in data.target_strings(language, text))
    return decoding.Decoded(ids, 0.0, data.parse_decoded(vocab, data.decode_strings(vocab, ids)))


def test_search_finds_the_program_the_model_was_trained_on_in_the_prior_or_one_substitution_away(zoo):
    rows = list(build.read_zoo(zoo))
    language = rows[0]["language"]
    vocab = data.vocabulary(language)
    neighbours = rasp_program.neighbours if language == "rasp" else python_tokens.neighbours
    for row in rows[:3]:
        model = stats.model_from_row(row)
        truth = data.parse_program(language, row["program"])
        other = next(r for r in rows if r["fingerprint"] != row["fingerprint"])  # another behaviour
        beam = [_decoded(vocab, language, other["program"])]
        kept = decoding.search(beam, [truth], model, probes=64, expand=False)
        assert [k.origin for k in kept] == ["prior", "beam"] and kept[0].program == truth
        assert kept[0].tally.rate >= 0.9 and kept[0].tally.right > kept[1].tally.right
        # a wrong program one substitution from the truth: the search's neighbours find a program as good as it
        own = decoding.tally(truth, model, decoding.probe(model, 64))
        wrong = next(
            n for n in neighbours(truth) if decoding.tally(n, model, decoding.probe(model, 64)).right < own.right
        )
        wrong_ids = tuple(vocab.ids[t] for t in data.program_strings(wrong))
        kept = decoding.search([decoding.Decoded(wrong_ids, 0.0, wrong)], [], model, probes=64)
        assert kept[0].origin == "neighbour" and kept[0].tally.right >= own.right
        # the same program twice is searched once; ties keep the search order
        twice = decoding.search([beam[0], beam[0]], [], model, probes=64, expand=False)
        assert len(twice) == 1 and twice[0].origin == "beam"


def test_the_python_prefix_accepts_exactly_the_grammars_next_tokens(zoo):
    rows = list(build.read_zoo(zoo))[:3]
    if rows[0]["language"] != "python":
        pytest.skip("a Python zoo's test")
    for row in rows:
        tokens = python_tokens.tokenize(row["program"])
        for cut in range(0, len(tokens), 7):
            prefix = decoding._PythonPrefix(tuple(tokens[:cut]))
            # oracle: the parser's own next-token set, each token tried by a full parse
            assert {t for t in python_tokens.VOCAB if prefix.accepts(t)} == set(python_tokens.allowed_next(tokens[:cut]))


def test_most_likely_ranks_programs_by_the_models_teacher_forced_log_probability(zoo, checkpoint):
    row = next(build.read_zoo(zoo, split="test"))
    model, vocab, meta, inputs = _inputs(checkpoint, row)
    programs = [data.parse_program(row["language"], r["program"]) for r in list(build.read_zoo(zoo))[:6]]
    ranked = decoding.most_likely(model, inputs, vocab, programs, k=3, chunk=4)  # two chunks: padding across them

    def logp(p) -> float:  # oracle: one program at a time, no padding
        ids = torch.tensor([[vocab.ids[t] for t in data.program_strings(p)]])
        with torch.no_grad():
            out = torch.log_softmax(model(inputs, ids[:, :-1]).float(), -1)
        return float(out[0].gather(-1, ids[0, 1:, None]).sum())

    expected = sorted(programs, key=logp, reverse=True)[:3]
    assert [logp(p) for p in ranked] == pytest.approx([logp(p) for p in expected], abs=1e-4)


def test_screening_probes_are_short_and_counterexamples_are_the_shortest(zoo):
    row = next(build.read_zoo(zoo))
    model = stats.model_from_row(row)
    short = decoding.probe(model, 32, seed=0, longest=2)
    assert short.inputs and max(map(len, short.inputs)) <= 2
    from metamodels.mapping import decompile

    truth = data.parse_program(row["language"], row["program"])
    assert decompile.agreement(truth, model, probes=32, longest=2).longest == 2
    probed = decoding.probe(model, 64, seed=0)
    wrong = data.parse_program(row["language"], next(r for r in build.read_zoo(zoo) if r["fingerprint"] !=
                                                     row["fingerprint"])["program"])  # fmt: skip
    measured = decoding.tally(wrong, model, probed)
    counter = measured.counterexamples
    disagreeing = [xs for xs, want in zip(probed.inputs, probed.outputs)
                   if any(g is not None and g != m for g, m in zip(_run(wrong, model, xs), want))]  # fmt: skip
    assert counter and [len(c[0]) for c in counter] == sorted(map(len, disagreeing))[: len(counter)]
    # the balanced rate, counted here pair by pair: per model output value, the share the program matches
    pairs = [(g, m) for xs, want in zip(probed.inputs, probed.outputs) for g, m in zip(_run(wrong, model, xs), want)
             if g is not None]  # fmt: skip
    values = {m for _, m in pairs}
    recall = [sum(g == m for g, m in pairs if m == v) / sum(m == v for _, m in pairs) for v in values]
    assert measured.balanced == pytest.approx(sum(recall) / len(recall))
    assert measured.rate == pytest.approx(sum(g == m for g, m in pairs) / len(pairs))


def test_agreeing_needs_the_rate_and_the_balanced_rate():
    assert decoding.Tally(96, 100, (), 0.95).agrees()
    assert not decoding.Tally(96, 100, (), 0.5).agrees()  # a constant on outputs 96% one value
    assert not decoding.Tally(90, 100, (), 0.95).agrees()
    assert not decoding.Tally(0, 0, (), 1.0).agrees()  # nothing compared


def _run(program, model, xs):
    from metamodels.zoo import programs

    cfg = model.config
    return list(programs.from_program(program, cfg.input_vocab, cfg.max_seq_len, cfg.causal).evaluate(xs))
