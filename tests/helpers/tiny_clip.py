"""A tiny random CLIP saved like real weights (``save_pretrained``), for the CLIP tests.

The tokenizer is a real ``CLIPTokenizer`` with a character-level vocabulary: every printable
ASCII character, alone and word-final (``c</w>``), plus ``<|startoftext|>`` and
``<|endoftext|>`` last (as in CLIP, EOS has the largest id), and no merges, so each character is
one token and "X" is one placeholder token. The model is ``CLIPModel`` from a random
``CLIPConfig`` (vision: 2 layers, hidden 32, patch 8, image 32; text: 2 layers, hidden 32).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch


def character_vocabulary() -> dict[str, int]:
    chars = [chr(i) for i in range(33, 127)]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def write_tiny_clip(folder: Path, seed: int = 0, attention_dropout: float = 0.0) -> Path:
    """Write a tiny random CLIP (model and tokenizer) to ``folder``; return it."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    vocab_dir = folder.parent / f"{folder.name}-vocab"
    vocab_dir.mkdir(parents=True, exist_ok=True)
    vocab = character_vocabulary()
    (vocab_dir / "vocab.json").write_text(json.dumps(vocab))
    (vocab_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer.from_pretrained(str(vocab_dir))
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 attention_dropout=attention_dropout)
    config = CLIPConfig(
        text_config=dict(small, vocab_size=len(vocab), max_position_embeddings=48, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(small, image_size=32, patch_size=8, num_channels=3),
        projection_dim=16)
    torch.manual_seed(seed)
    model = CLIPModel(config)
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder
