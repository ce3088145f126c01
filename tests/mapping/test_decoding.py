"""Grammar-constrained beam search of the mapping decoder, and choosing a candidate by agreement with the model."""

from __future__ import annotations

import json

import pytest
import torch

from metamodels.mapping import data, decoding, training
from metamodels.zoo import build, stats


def _inputs(checkpoint, row):
    model, vocab, meta = training.load(checkpoint)
    config = training.MappingConfig(**meta["config"])
    example = data.Example("", "", "", "", 0, 0, config.featurize(stats.model_from_row(row)), (1, 2))
    return model, vocab, meta, training.collate(config, [example])[0]


def test_beam_candidates_parse_are_distinct_and_scored_by_the_models_own_log_probability(zoo, checkpoint):
    for row in list(build.read_zoo(zoo, split="test"))[:2]:
        model, vocab, meta, inputs = _inputs(checkpoint, row)
        found = decoding.beam_search(model, inputs, vocab, meta["max_len"], beam=4)
        assert 1 <= len(found) <= 4
        assert len({d.ids for d in found}) == len(found)
        assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
        for d in found:
            assert training.parse_decoded(vocab, data.decode_strings(vocab, d.ids)) is not None
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
    assert training.parse_decoded(vocab, unconstrained) is None  # random weights write no program unaided
    found = decoding.beam_search(model, inputs, vocab, 120, beam=2)
    assert found and all(training.parse_decoded(vocab, data.decode_strings(vocab, d.ids)) for d in found)
    with pytest.raises(Exception, match="--beam must be at least 1"):
        decoding.beam_search(model, inputs, vocab, 120, beam=0)


def test_choosing_by_agreement_finds_the_program_the_model_was_trained_on(zoo):
    rows = list(build.read_zoo(zoo))
    vocab = data.vocabulary(rows[0]["language"])

    def decoded(text: str) -> decoding.Decoded:
        ids = tuple(vocab.ids[t] for t in data.target_strings(rows[0]["language"], text))
        return decoding.Decoded(ids, 0.0, training.parse_decoded(vocab, data.decode_strings(vocab, ids)))

    for row in rows[:3]:
        model = stats.model_from_row(row)
        other = next(r for r in rows if r["fingerprint"] != row["fingerprint"])  # another behaviour
        probed = decoding.probe(model, 64, seed=5)
        best, tallies = decoding.choose([decoded(other["program"]), decoded(row["program"])], model, probed)
        assert best == 1 and tallies[1].rate >= 0.9 and tallies[1].right > tallies[0].right
        same = decoding.choose([decoded(row["program"]), decoded(row["program"])], model, probed)[0]
        assert same == 0  # ties go to the more likely (earlier) candidate
