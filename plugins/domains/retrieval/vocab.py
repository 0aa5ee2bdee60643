"""The word vocabulary of the text encoder, built from the training texts (TIRG's simple
vocabulary: lower-cased, punctuation removed, split on white space).

Index 0 pads, 1 is an unknown word (a word of a validation or test text never seen in training),
the training words follow in sorted order (a pure function of the training texts)."""
from __future__ import annotations

import re

import torch
from torch import Tensor

PAD, UNKNOWN = 0, 1
_PUNCTUATION = re.compile(r"[^\w\s-]")


def words(text: str) -> list[str]:
    return _PUNCTUATION.sub(" ", text.lower()).split()


class Vocabulary:
    def __init__(self, texts):
        found = sorted({w for t in texts for w in words(t)})
        self.index = {w: i + 2 for i, w in enumerate(found)}

    def __len__(self) -> int:
        return len(self.index) + 2

    def encode(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """(tokens int64 (n, L) padded with 0, lengths int64 (n,) ≥ 1); an empty text is one unknown word."""
        rows = [[self.index.get(w, UNKNOWN) for w in words(t)] or [UNKNOWN] for t in texts]
        width = max((len(r) for r in rows), default=1)
        tokens = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            tokens[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        return tokens, torch.tensor([len(r) for r in rows], dtype=torch.long)
