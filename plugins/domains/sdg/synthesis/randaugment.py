"""RandAugment domains (Cubuk et al., "RandAugment: Practical automated data augmentation with a
reduced search space", CVPR-W 2020), as torchvision's ``v2.RandAugment`` draws and applies it.

Each image of a domain gets ``num_ops`` operations, each chosen uniformly from torchvision's op
table (Identity, ShearX/Y, TranslateX/Y, Rotate, Brightness, Color, Contrast, Sharpness,
Posterize, Solarize, AutoContrast, Equalize) at bin ``magnitude`` of ``num_magnitude_bins``, with
a random sign for the signed ops.

Determinism: torchvision draws from the global RNG. Here the same draws — ``randint(14)`` for
the op, then ``rand() <= 0.5`` for the sign of a signed op with a magnitude, in torchvision's
order — come from a ``torch.Generator`` seeded with the sample's key, which is the generator
``torch.manual_seed(key)`` would reset: sample i's output equals ``v2.RandAugment(...)(image_i)``
run under ``torch.manual_seed(keys[i])`` (tested). The op table, the magnitudes and the op
kernels are torchvision's own (``RandAugment._AUGMENTATION_SPACE`` and
``_apply_image_or_video_transform``, read from the class, not copied), so a change there is
followed (and caught by the test). Batching: in each of the ``num_ops`` rounds the images that
drew the same (op, signed magnitude) are transformed together, one kernel call per group —
every kernel acts on each image on its own (per-image statistics for Contrast, AutoContrast,
Equalize), so grouping changes nothing but the cost, up to the last bit of a convolution
(Sharpness) whose rounding can depend on how many images share the call (≤ 1e-6, tested).
Cost of one domain of a (B, 3, S, S) batch, CPU, one thread, median of 20 calls, against
torchvision's RandAugment run per image under ``fork_rng`` + ``manual_seed(key)``
(``OMP_NUM_THREADS=1 python bench/sdg_randaugment_cost.py --repeats 20``, shared 2-core host):
B = 32, S = 32: 3.3 vs 19.2 ms; B = 64, S = 32: 5.6 vs 37.9 ms; B = 32, S = 224: 88.0 vs
90.1 ms; B = 64, S = 224: 175.7 vs 188.7 ms. Grouping pays at digit sizes (about 6×, where
per-image call overhead dominates); at 224 px the kernels dominate and both cost the same.

Images stay float in [0, 1]: torchvision's v2 kernels take float images (Solarize's threshold
is then ``magnitude * 1.0``, Posterize floors to 2^bits levels); Equalize alone converts to
uint8 and back inside torchvision, so its outputs are multiples of 1/255.
"""
from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor
from torchvision.transforms import v2

from mtl_platform.errors import UserError
from mtl_platform.params import Param

from .augmenting import K_PARAM, AugmentingSynthesis


class RandAugment(AugmentingSynthesis):
    """K domains, each torchvision's RandAugment drawn per image from the image's key."""

    name = "randaugment"
    params = (K_PARAM,
              Param("num_ops", int, 2, "operations applied to each image, in sequence", bounds="[0, inf)"),
              Param("magnitude", int, 9, "magnitude bin of every operation (0 .. num_magnitude_bins - 1)",
                    bounds="[0, inf)"),
              Param("num_magnitude_bins", int, 31, "number of magnitude bins", bounds="[2, inf)"),
              Param("interpolation", str, "nearest", "resampling of the geometric ops (torchvision's default)",
                    choices=("nearest", "bilinear")))

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **params)
        if self.magnitude >= self.num_magnitude_bins:
            raise UserError(f"domain.synthesis.magnitude: got {self.magnitude}, expected < "
                            f"num_magnitude_bins ({self.num_magnitude_bins})")
        self.torchvision = v2.RandAugment(num_ops=self.num_ops, magnitude=self.magnitude,
                                          num_magnitude_bins=self.num_magnitude_bins,
                                          interpolation=v2.InterpolationMode(self.interpolation))
        self.ops = tuple(self.torchvision._AUGMENTATION_SPACE)

    def choices(self, gens: list, height: int, width: int) -> list[list[tuple[str, float]]]:
        """``choices[i]``: sample i's ``num_ops`` (op name, signed magnitude) pairs, drawn from
        ``gens[i]`` exactly as torchvision's ``RandAugment.forward`` draws from the global RNG."""
        table = self.torchvision._AUGMENTATION_SPACE
        magnitudes = {op: fn(self.num_magnitude_bins, height, width) for op, (fn, _) in table.items()}
        out = []
        for g in gens:
            picks = []
            for _ in range(self.num_ops):
                op = self.ops[int(torch.randint(len(self.ops), (), generator=g))]
                values, signed = magnitudes[op], table[op][1]
                magnitude = 0.0
                if values is not None:
                    magnitude = float(values[self.magnitude])
                    if signed and torch.rand((), generator=g) <= 0.5:
                        magnitude *= -1
                picks.append((op, magnitude))
            out.append(picks)
        return out

    def apply(self, images: Tensor, gens: list) -> Tensor:
        picks = self.choices(gens, images.shape[-2], images.shape[-1])
        out = images
        for round_ in range(self.num_ops):
            groups: dict[tuple[str, float], list[int]] = defaultdict(list)
            for i, sample in enumerate(picks):
                groups[sample[round_]].append(i)
            if len(groups) == 1:
                (op, magnitude), = groups
                out = self._op(out, op, magnitude)
                continue
            result = torch.empty_like(out)
            for (op, magnitude), members in groups.items():
                index = torch.tensor(members, device=out.device)
                result[index] = self._op(out[index], op, magnitude)
            out = result
        return out

    def _op(self, images: Tensor, op: str, magnitude: float) -> Tensor:
        tv = self.torchvision
        return tv._apply_image_or_video_transform(images, op, magnitude, interpolation=tv.interpolation,
                                                  fill=tv._fill)
