"""Trivial rankings on the retrieval test split: is R@K of the procedural CSS-like scenes degenerate?

    python bench/retrieval_trivial.py RUN_DIR [RUN_DIR ...]

For each trained run (its ``config.yaml`` and ``model.pt``), over the whole test split with the
domain's own protocol (gallery = every test image but the query's, a hit when the top K hold an
image of the target's scene; ``metrics.recall_hits``):
- ``TIRG``: the trained model's composed query (clean queries), as the run reports it;
- ``image only``: the trained model's embedding of the query image, the text ignored;
- ``random``: uniformly random scores (mean of 20 seeded draws), and its exact expectation
  1 − C(N−1−c, K)/C(N−1, K) averaged over queries (c correct images in the gallery of N−1).
Prints a markdown table (R@K in %).
"""
from __future__ import annotations

import argparse
from math import comb
from pathlib import Path

import torch

from mtl_platform import registry as registry_mod
from mtl_platform.batches import batch_indices
from mtl_platform.config import read_yaml, resolve
from mtl_platform.experiment import build_domain
from mtl_platform_plugins.domains.retrieval.metrics import KS, recall_hits


@torch.no_grad()
def rankings(run_dir: Path) -> dict[str, list[float]]:
    registry, _ = registry_mod.load()
    raw = read_yaml(run_dir / "config.yaml")
    raw["train"]["device"] = "cpu"
    domain = build_domain(resolve(raw, registry), registry)
    model = domain.build_model()
    model.load_state_dict(torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    data = domain.dataset("test")
    gallery = torch.cat([model.target(data.float_images(i)) for i in batch_indices(len(data.images), 512,
                                                                                 shuffle=False)])
    hits = {"TIRG": torch.zeros(len(KS)), "image only": torch.zeros(len(KS)), "random (20 draws)": torch.zeros(len(KS))}
    g = torch.Generator().manual_seed(0)
    for idx in batch_indices(len(data), 512, shuffle=False):
        images, tokens, lengths, _ = data.get_batch(idx)
        src, tgt = data.source[idx], data.scenes[data.target[idx]]
        hits["TIRG"] += recall_hits(model.query(images, tokens, lengths), gallery, data.scenes, src, tgt)
        hits["image only"] += recall_hits(model.target(images), gallery, data.scenes, src, tgt)
        for _ in range(20):
            scores = torch.rand(len(idx), len(gallery), generator=g)
            hits["random (20 draws)"] += recall_hits(scores, torch.eye(len(gallery)), data.scenes, src, tgt) / 20
    n = len(data)
    out = {k: (v / n * 100).tolist() for k, v in hits.items()}
    others = len(data.images) - 1
    correct = [int((data.scenes == data.scenes[t]).sum()) - int(data.scenes[s] == data.scenes[t])
               for s, t in zip(data.source.tolist(), data.target.tolist())]
    out["random (expected)"] = [100 * sum(1 - comb(others - c, k) / comb(others, k) for c in correct) / n for k in KS]
    out["_size"] = [n, len(data.images)]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| run | ranking | R@1 | R@5 | R@10 |")
    print("|---|---|---|---|---|")
    for run in args.runs:
        found = rankings(run)
        queries, images = found.pop("_size")
        for name, values in found.items():
            print(f"| {run.name} | {name} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    print(f"\ntest split: {queries} queries, gallery of {images - 1} images each")


if __name__ == "__main__":
    main()
