"""A tiny CLIP text encoder built here, with nothing downloaded: a byte-level CLIPTokenizer (one token per
character, no merges) and a randomly initialised CLIPTextModel, saved as a pipeline carries them
(`tokenizer/`, `text_encoder/`). It stands in for `openai/clip-vit-large-patch14` where no download is
possible: the offline text config (`configs/tiny-text.yaml`, after `slimdiff make-tiny-clip`) and the tests.
A random encoder still maps different captions to different contexts, which is all a tiny run needs.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

# The 256 byte-level characters of GPT-2 / CLIP's byte encoder: printable bytes as themselves, the others
# shifted past 255, so every byte of any prompt has a token.
_PRINTABLE = [*range(33, 127), *range(161, 173), *range(174, 256)]
_CHARS = [chr(c) for c in _PRINTABLE + [256 + i for i in range(256 - len(_PRINTABLE))]]


def tiny_clip_vocab() -> dict[str, int]:
    """Every byte character, alone and word-final (`</w>`), then CLIP's start and end tokens."""
    tokens = [*_CHARS, *(c + "</w>" for c in _CHARS), "<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}


def make_tiny_clip(
    folder: str | Path,
    *,
    max_length: int = 77,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
) -> Path:
    """Write a tiny CLIPTokenizer to `folder/tokenizer` and a random CLIPTextModel (`layers` layers of width
    `hidden_size`, `max_length` tokens, weights from `seed`) to `folder/text_encoder`; returns `folder`."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = tiny_clip_vocab()
    with tempfile.TemporaryDirectory() as tmp:  # the tokenizer is built from files; it saves its own copies
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n")
        tokenizer = CLIPTokenizer(
            str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"), model_max_length=max_length
        )
    tokenizer.save_pretrained(str(folder / "tokenizer"))
    end = vocab["<|endoftext|>"]
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=hidden_size + 5,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=max_length,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=end,
        pad_token_id=end,
    )
    torch.manual_seed(seed)
    CLIPTextModel(config).save_pretrained(str(folder / "text_encoder"), safe_serialization=True)
    return folder
