"""The meta-model: a prefix-LM transformer from weight tokens to program tokens (PyTorch).

One stack of pre-LN blocks reads ``[weight tokens | program tokens]``: weight
tokens attend to each other bidirectionally (padding masked), program tokens
attend to every weight token and causally to earlier program tokens. Training is
next-token cross-entropy on the program tokens. Decoding encodes the weights once
(:meth:`MetaModel.prefill`) and then extends a key/value cache one token at a
time (:meth:`MetaModel.step`).

Checkpoints are a directory: ``model.safetensors`` (weights, fp32 or fp16),
``config.json`` (:class:`MetaModelConfig` incl. the weight encoding),
``vocabulary.json`` (program token list + version) and ``provenance.json``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from metamodels import artifacts
from metamodels.errors import MetamodelsError
from metamodels.meta import weight_encoding
from metamodels.rasp import tokens as tokens_mod


@dataclasses.dataclass(frozen=True)
class MetaModelConfig:
    """Architecture and the weight encoding it reads."""

    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_mlp: int = 512
    dropout: float = 0.0
    max_program_tokens: int = 128
    vocab_size: int = len(tokens_mod.VOCAB)
    encoding: weight_encoding.EncodingConfig = weight_encoding.EncodingConfig()

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise MetamodelsError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> MetaModelConfig:
        data = dict(data)
        data["encoding"] = weight_encoding.EncodingConfig(**{"writer_rank": False, **data["encoding"]})
        return cls(**data)


PRESETS: dict[str, dict] = {
    "tiny": dict(d_model=64, n_layers=2, n_heads=4, d_mlp=256),  # tests
    "small": dict(d_model=128, n_layers=4, n_heads=4, d_mlp=512),  # trains on 2 CPU cores
    "paper": dict(d_model=256, n_layers=6, n_heads=4, d_mlp=1024),  # paper 000, Appendix B
}


class Block(nn.Module):
    def __init__(self, cfg: MetaModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_mlp), nn.GELU(), nn.Linear(cfg.d_mlp, cfg.d_model))
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x [B, L, d]; mask [B, 1, L, L_past + L] bool (True = may attend); returns (x, (k, v) incl. past)."""
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, heads, L, d_head]
        x = x + self.dropout(self.proj(a.transpose(1, 2).reshape(b, n, d)))
        x = x + self.dropout(self.mlp(self.ln2(x)))
        return x, (k, v)


Cache = list[tuple[torch.Tensor, torch.Tensor]]


class MetaModel(nn.Module):
    def __init__(self, cfg: MetaModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, lim = cfg.d_model, weight_encoding.LIMITS
        self.value_in = nn.Linear(cfg.encoding.width, d)
        self.role = nn.Embedding(len(weight_encoding.ROLES) + 1, d)
        self.layer = nn.Embedding(lim["layers"] + 1, d)
        self.direction = nn.Embedding(lim["residual"] + 1, d)
        self.chunk = nn.Embedding(lim["chunks"], d)
        self.rank = nn.Embedding(lim["rank"] + 1, d) if cfg.encoding.writer_rank else None
        self.token = nn.Embedding(cfg.vocab_size, d)
        self.position = nn.Embedding(cfg.max_program_tokens, d)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.vocab_size, bias=False)
        # -inf for tokens this model was never trained on (see extend_vocabulary); not saved.
        self.token_bias: torch.Tensor
        self.register_buffer("token_bias", torch.zeros(cfg.vocab_size), persistent=False)
        self.apply(self._init)

    def extend_vocabulary(self, size: int) -> None:
        """Grow to ``size`` program tokens (a newer vocabulary that extends this one).

        The new tokens get zero embeddings and output rows, and a -inf logit bias:
        the model never predicts what it was not trained on. Zero ``token_bias``
        to train them (``train --init``).
        """
        old, d = self.cfg.vocab_size, self.cfg.d_model
        if size <= old:
            return
        token, head = nn.Embedding(size, d), nn.Linear(d, size, bias=False)
        with torch.no_grad():
            token.weight.zero_()
            token.weight[:old] = self.token.weight
            head.weight.zero_()
            head.weight[:old] = self.head.weight
        self.token, self.head = token, head
        self.token_bias = torch.cat([self.token_bias, torch.full((size - old,), float("-inf"), device=self.token_bias.device)])
        self.cfg = dataclasses.replace(self.cfg, vocab_size=size)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def embed_weights(self, values: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """values [B, P, width], tags [B, P, 5] -> [B, P, d] (tags: see :class:`weight_encoding.WeightTokens`)."""
        x = (
            self.value_in(values)
            + self.role(tags[..., 0])
            + self.layer(tags[..., 1])
            + self.direction(tags[..., 2])
            + self.chunk(tags[..., 3])
        )
        return x if self.rank is None else x + self.rank(tags[..., 4])

    def forward(
        self, values: torch.Tensor, tags: torch.Tensor, weight_mask: torch.Tensor, program: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced logits.

        values [B, P, width] float; tags [B, P, 5] long; weight_mask [B, P] bool
        (True = real token); program [B, T] long -> logits [B, T, vocab] where
        logits[:, t] predicts program[:, t + 1].
        """
        values, tags, weight_mask, program = self._here(values, tags, weight_mask, program)
        p, t = values.shape[1], program.shape[1]
        x = torch.cat([self.embed_weights(values, tags), self._embed_program(program, 0)], dim=1)
        i = torch.arange(p + t, device=x.device)
        causal = (i[None, :] <= i[:, None]) | (i[None, :] < p)  # [L, L]: prefix visible to all
        causal &= (i[:, None] >= p) | (i[None, :] < p)  # weight tokens do not see the program
        keys = torch.cat([weight_mask, torch.ones_like(program, dtype=torch.bool)], dim=1)  # [B, L]
        mask = (causal[None] & keys[:, None, :])[:, None]  # [B, 1, L, L]
        for block in self.blocks:
            x, _ = block(x, mask)
        return self.head(self.ln_f(x[:, p:])) + self.token_bias

    def _embed_program(self, program: torch.Tensor, start: int) -> torch.Tensor:
        t = program.shape[1]
        if start + t > self.cfg.max_program_tokens:
            raise MetamodelsError(f"program longer than the meta-model's {self.cfg.max_program_tokens} tokens")
        return self.token(program) + self.position(torch.arange(start, start + t, device=program.device))

    @property
    def device(self) -> torch.device:
        return self.token_bias.device

    def _here(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The inputs on the model's device (callers build batches on the CPU; outputs stay on the device)."""
        return tuple(t.to(self.device, non_blocking=True) for t in tensors)

    @torch.no_grad()
    def prefill(self, values: torch.Tensor, tags: torch.Tensor, weight_mask: torch.Tensor) -> Cache:
        """Encode the weight tokens once: returns each block's (k, v) [B, heads, P, d_head]."""
        values, tags, weight_mask = self._here(values, tags, weight_mask)
        x = self.embed_weights(values, tags)
        mask = weight_mask[:, None, None, :]  # [B, 1, 1, P]
        cache = []
        for block in self.blocks:
            x, kv = block(x, mask)
            cache.append(kv)
        return cache

    @torch.no_grad()
    def extend(self, cache: Cache, weight_mask: torch.Tensor, program: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits of many programs after one model's cached weight tokens.

        cache: :meth:`prefill` of one example (batch 1); weight_mask [1, P]; program [N, T] long
        -> logits [N, T, vocab], equal to ``forward`` with the weights repeated N times, without
        recomputing the P weight tokens N times (what scoring repair candidates needs).
        """
        weight_mask, program = self._here(weight_mask, program)
        n, t = program.shape
        x = self._embed_program(program, 0)
        earlier = torch.tril(torch.ones(t, t, dtype=torch.bool, device=x.device))
        mask = torch.cat([weight_mask.expand(t, -1), earlier], dim=1)[None, None].expand(n, 1, t, -1)
        for block, (k, v) in zip(self.blocks, cache):
            x, _ = block(x, mask, (k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)))
        return self.head(self.ln_f(x)) + self.token_bias

    @torch.no_grad()
    def step(
        self, token: torch.Tensor, position: int, cache: Cache, key_mask: torch.Tensor
    ) -> tuple[torch.Tensor, Cache]:
        """One decoding step: token [B] at ``position`` -> (logits [B, vocab], extended cache).

        key_mask [B, P + position + 1] bool: which cached keys (and the new one) are real.
        """
        token, key_mask = self._here(token, key_mask)
        x = self._embed_program(token[:, None], position)
        mask = key_mask[:, None, None, :]
        new_cache = []
        for block, past in zip(self.blocks, cache):
            x, kv = block(x, mask, past)
            new_cache.append(kv)
        return self.head(self.ln_f(x[:, -1])) + self.token_bias, new_cache

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ----------------------------------------------------------------------------- checkpoints


class CheckpointError(MetamodelsError):
    """A checkpoint directory that is missing files or does not match this code; names the file."""


def save_checkpoint(model: MetaModel, directory: str | Path, provenance: dict, *, half: bool = False) -> None:
    """Write model.safetensors + config.json + vocabulary.json + provenance.json (atomically per file)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half else v.float()).cpu().contiguous() for k, v in model.state_dict().items()}
    artifacts.atomic_write(d / "model.safetensors", lambda p: save_file(state, str(p)))
    vocab = {"version": tokens_mod.VOCAB.version, "tokens": list(tokens_mod.VOCAB.tokens)}
    for name, data in [
        ("config.json", model.cfg.to_json()),
        ("vocabulary.json", vocab),
        ("provenance.json", provenance),
    ]:
        artifacts.write_text(d / name, json.dumps(data, indent=1))


def load_checkpoint(directory: str | Path) -> tuple[MetaModel, dict]:
    """(model in eval mode, provenance); CheckpointError naming the file on any problem."""
    d = Path(directory)
    try:
        cfg = MetaModelConfig.from_json(json.loads((d / "config.json").read_text()))
        vocab = json.loads((d / "vocabulary.json").read_text())
        provenance = json.loads((d / "provenance.json").read_text())
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{d}: not a readable meta-model checkpoint ({e})") from None
    saved, current = tuple(vocab.get("tokens", ())), tokens_mod.VOCAB.tokens
    if vocab.get("version") != tokens_mod.VOCAB.version and not (saved and current[: len(saved)] == saved):
        raise CheckpointError(
            f"{d / 'vocabulary.json'}: program vocabulary {vocab.get('version')} is neither this version's "
            f"{tokens_mod.VOCAB.version} nor a prefix of it"
        )
    model = MetaModel(cfg)
    try:
        state = load_file(str(d / "model.safetensors"))
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except (OSError, RuntimeError, ValueError, SafetensorError) as e:
        raise CheckpointError(f"{d / 'model.safetensors'}: {e}") from None
    model.extend_vocabulary(len(current))  # an older vocabulary: its tokens keep their ids
    return model.eval(), provenance
