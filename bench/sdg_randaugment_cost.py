"""Cost of the sdg ``randaugment`` synthesis: the grouped, generator-driven implementation
(plugins/domains/sdg/synthesis/randaugment.py) against torchvision's ``v2.RandAugment`` run per
image under ``torch.random.fork_rng()`` + ``torch.manual_seed(key)`` (the other way to make the
draws a pure function of the keys). Same outputs (tested); this measures the time of one
synthesised domain of a batch (B, 3, S, S), CPU, one thread, median of ``--repeats`` calls.

    OMP_NUM_THREADS=1 python bench/sdg_randaugment_cost.py --repeats 20
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchvision.transforms import v2

from mtl_platform.batches import mix_seed
from mtl_platform_plugins.domains.sdg.synthesis.randaugment import RandAugment


def per_image(images: torch.Tensor, keys: torch.Tensor, reference: v2.RandAugment) -> torch.Tensor:
    out = []
    for image, key in zip(images, keys.tolist()):
        with torch.random.fork_rng():
            torch.manual_seed(key)
            out.append(reference(image))
    return torch.stack(out)


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    synthesis, reference = RandAugment(), v2.RandAugment()
    print("| B | size | grouped (ms) | per image, fork_rng (ms) | ratio |")
    print("|---|---|---|---|---|")
    for size in (32, 224):
        for b in (32, 64):
            images = torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(0))
            keys = torch.tensor([mix_seed(0, 0, i, 0) for i in range(b)], dtype=torch.int64)
            grouped = median_ms(lambda: synthesis.transform(images, 0, keys), args.repeats)
            looped = median_ms(lambda: per_image(images, keys, reference), args.repeats)
            print(f"| {b} | {size} | {grouped:.1f} | {looped:.1f} | {looped / grouped:.2f} |", flush=True)


if __name__ == "__main__":
    main()
