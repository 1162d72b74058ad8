"""Tiny randomly initialised models of the embedded architectures, saved as local directories."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, pre_tokenizers
from tokenizers.models import BPE
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

SPECIALS = ["<bos>", "<eos>", "<pad>"]


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer with no merges: every byte is a token (259 ids)."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {char: i for i, char in enumerate(sorted(alphabet))}
    vocab.update({token: len(vocab) + i for i, token in enumerate(SPECIALS)})
    core = Tokenizer(BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


CHAT_TEMPLATE = (
    "{% for m in messages %}<bos>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def save_tiny(
    kind: str,
    directory: Path,
    n_layers: int = 4,
    seed: int = 0,
    chat: bool = False,
    hidden: int = 64,
) -> Path:
    """Write a tiny `llama` or `gemma3` model plus tokenizer (optionally with a chat template)."""
    tokenizer = byte_tokenizer()
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": n_layers,
        "num_attention_heads": 4,
        "max_position_embeddings": 256,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    torch.manual_seed(seed)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(num_key_value_heads=2, **common))
    elif kind == "gemma3":
        config = Gemma3TextConfig(num_key_value_heads=1, head_dim=16, sliding_window=16, **common)
        model = Gemma3ForCausalLM(config)
    else:
        raise ValueError(kind)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_sae(
    folder: Path,
    hook: str,
    d_in: int,
    d_sae: int = 32,
    k: int | None = 4,
    weights: dict[str, torch.Tensor] | None = None,
) -> Path:
    """An SAE saved by SAELens itself: TopK when `k` is given, else standard ReLU."""
    from sae_lens.saes import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

    if k is None:
        sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae))
    else:
        sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k))
    with torch.no_grad():
        for name, value in (weights or {}).items():
            getattr(sae, name).copy_(value)
    sae.cfg.metadata.hook_name = hook
    sae.save_model(str(folder))
    return folder


CLEAN, CORRUPTED = "Great news.", "Awful news."
GOOD = {
    "id": "s1-good",
    "situation": "s1",
    "condition": "good",
    "clean": CLEAN,
    "corrupted": "Fresh news.",
}
BAD = {
    "id": "s1-bad",
    "situation": "s1",
    "condition": "bad",
    "clean": CORRUPTED,
    "corrupted": "Fresh news.",
}


def write_pairs(path: Path, lines: list[dict | str]) -> Path:
    """A pairs JSONL file; strings are written as they are (for malformed lines)."""
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    )
    return path


def model_row(name: str, n_layers: int) -> dict:
    """A `models` row for hand-made store rows: the views read a model's depth from it."""
    return {
        "model": name,
        "source": "hand-made",
        "reference": name,
        "architecture": "llama",
        "n_layers": n_layers,
        "d_model": 8,
        "n_heads": 2,
        "n_kv_heads": 2,
        "d_vocab": 259,
        "is_chat": False,
        "dtype": "float32",
    }
