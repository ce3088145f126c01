"""Zoo rows -> (graph, target tokens) examples for the mapping meta-models.

Paper 002 §3.3 turns an n-layer transformer into a chain graph of n vertices, vertex i holding "the concatenated
parameters of the i-th layer". It does not say how layers of different widths enter the first fully-connected layer;
here a layer's parameters are concatenated in the model file's fixed order (``GPTConfig.shapes``: LayerNorms,
attention W/b of Q, K, V, O, MLP in/out), each flattened row-major, then zero-padded or truncated to
``features`` values (default 16,384: a layer of d_model <= 32 whole, larger layers lose their tail: the MLP).
Embeddings and unembedding are not vertices (the paper's graph has one vertex per layer).

Targets are the program's tokens: RASP in the project's layer-structured program tokens
(:mod:`metamodels.rasp.tokens`, ``BOS ... EOS``), Python in ``tokenize``-level tokens
(:mod:`metamodels.python.tokens`) with a ``BOS`` in front. One :class:`Vocabulary` per language maps both to ids.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from metamodels.dataset import store
from metamodels.errors import MetamodelsError
from metamodels.python import program as python_program
from metamodels.python import tokens as python_tokens
from metamodels.python.program import PyProgram
from metamodels.rasp import text
from metamodels.rasp import tokens as rasp_tokens
from metamodels.rasp.program import Program
from metamodels.transformer.trained import TrainedModel
from metamodels.zoo import build, stats

FEATURES = 16_384  # values per vertex (see the module docstring)


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Target tokens of one language: ``tokens[i]`` is id i; ids 0, 1, 2 are PAD, BOS, EOS."""

    language: str
    tokens: tuple[str, ...]

    @functools.cached_property
    def ids(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)


def vocabulary(language: str) -> Vocabulary:
    if language == "rasp":
        return Vocabulary(
            "rasp", ("PAD", "BOS", "EOS", *(t for t in rasp_tokens.VOCAB.tokens if t not in ("PAD", "BOS", "EOS")))
        )
    if language == "python":
        return Vocabulary(
            "python", ("PAD", "BOS", python_tokens.EOS, *(t for t in python_tokens.VOCAB if t != python_tokens.EOS))
        )
    raise MetamodelsError(f"unknown language {language!r} (rasp or python)")


def target_strings(language: str, program_text: str) -> list[str]:
    """The program's target tokens, BOS first and EOS last."""
    if language == "rasp":
        return rasp_tokens.tokenize_strings(text.parse_program(program_text))
    return ["BOS", *python_tokens.tokenize(program_text), python_tokens.EOS]


def program_strings(program: Program | PyProgram) -> list[str]:
    """A program's target tokens (as :func:`target_strings` of its text)."""
    if isinstance(program, Program):
        return rasp_tokens.tokenize_strings(program)
    return target_strings("python", python_program.format_program(program))


def prior(directory: Path, pool: int, seed: int = 0) -> list[Program | PyProgram]:
    """Up to ``pool`` distinct programs of the zoo's train split, in a seeded random order (a search's prior)."""
    language = store.read_manifest(Path(directory))["config"]["language"]  # type: ignore[index]
    return [parse_program(language, t) for t in prior_texts(directory, pool, seed)]


def prior_texts(directory: Path, pool: int, seed: int = 0) -> list[str]:
    """The texts of :func:`prior`."""
    texts = sorted({r["program"] for r in build.read_zoo(directory, "train", ["program", "view"]) if r["view"] == 0})
    order = np.random.default_rng(seed).permutation(len(texts))[:pool]
    return [texts[i] for i in order]


def parse_program(language: str, program_text: str) -> Program | PyProgram:
    return text.parse_program(program_text) if language == "rasp" else python_tokens.parse_text(program_text)


def parse_decoded(vocab: Vocabulary, strings: list[str]) -> Program | PyProgram | None:
    """The program decoded token strings spell (as :func:`decode_strings` gives them), or None when they spell none."""
    try:
        if vocab.language == "rasp":
            return rasp_tokens.detokenize([rasp_tokens.VOCAB.id(t) for t in ["BOS", *strings]])
        return python_tokens.parse(strings)
    except (MetamodelsError, KeyError, ValueError, IndexError):
        return None


def vertex_features(model: TrainedModel, features: int = FEATURES) -> np.ndarray:
    """The model's graph: one vertex per layer, its parameters concatenated and padded/truncated.

    Returns ``[n_layers, features]`` (float16: a zoo's graphs are held in memory for training).
    """
    out = np.zeros((model.config.n_layers, features), np.float16)
    for layer in range(model.config.n_layers):
        prefix = f"blocks.{layer}."
        flat = np.concatenate([model.params[n].ravel() for n in model.config.shapes() if n.startswith(prefix)])
        out[layer, : min(features, flat.size)] = flat[:features]
    return out


def graph_features(model: TrainedModel, features: int = FEATURES) -> dict[str, np.ndarray]:
    return {"graph": vertex_features(model, features)}


@dataclasses.dataclass(frozen=True)
class Example:
    """One zoo model as a mapping example (``features``: the encoder's arrays; ``target``: token ids)."""

    id: str
    program_id: str
    program: str
    split: str
    size: int
    n_params: int
    features: dict[str, np.ndarray]
    target: tuple[int, ...]


def load(directory: Path, split: str | None = None, featurize: Callable[[TrainedModel], dict] = graph_features,
         limit: int | None = None, progress: bool = False) -> tuple[Vocabulary, list[Example]]:  # fmt: skip
    """The zoo's models of ``split`` (all splits when None) as examples, in zoo order; at most ``limit``."""
    manifest = store.read_manifest(Path(directory))
    if manifest is None:
        raise store.StoreError(
            f"{directory}: no {store.MANIFEST}; not a zoo directory (build one with `metamodels zoo build`)"
        )
    vocab = vocabulary(manifest["config"]["language"])
    ids, out = vocab.ids, []
    total = sum(rec["models"] for rec in manifest["shards"])
    with tqdm(total=limit or total, desc=f"reading {split or 'all'}", unit="model", disable=not progress) as bar:
        for row in build.read_zoo(directory, split=split):
            target = tuple(ids[t] for t in target_strings(row["language"], row["program"]))
            out.append(Example(row["id"], row["program_id"], row["program"], row["split"], row["size"],
                               row["n_params"], featurize(stats.model_from_row(row)), target))  # fmt: skip
            bar.update()
            if limit is not None and len(out) >= limit:
                break
    return vocab, out


def heldout_inputs(row: dict) -> list[tuple]:
    return [tuple(xs) for xs in json.loads(row["heldout_inputs"])]


def decode_strings(vocab: Vocabulary, ids: Sequence[int]) -> list[str]:
    """Token strings of ``ids`` up to (and including) the first EOS, PAD and BOS dropped."""
    out = []
    for i in ids:
        token = vocab.tokens[i]
        if token in ("PAD", "BOS"):
            continue
        out.append(token)
        if i == 2:
            break
    return out
