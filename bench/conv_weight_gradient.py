"""One convolution's weight gradient from its input and output gradient, two ways (issue 21's
profile of the accumulated Gramian path, bench/RESULTS.md "Detection"):

- im2col: the input unfolded into rows (``F.unfold``) times the output-gradient rows — what
  ``gradients/accumulate.py`` did for a convolution before commit 966af42;
- the convolution's own weight-gradient kernel, ``torch.nn.grad.conv2d_weight`` — what it does now.

    OMP_NUM_THREADS=1 python bench/conv_weight_gradient.py

Prints ms per call (mean of 5 after a warm-up) and the largest difference of the two results.
"""
from __future__ import annotations

import time

import torch
from torch.nn.grad import conv2d_weight

SHAPES = [  # batch, in channels, side, out channels, kernel, stride: ResNet-18 layers at 128 px, batch 16
    (16, 3, 128, 64, 7, 2), (16, 64, 32, 64, 3, 1), (16, 128, 16, 128, 3, 1), (16, 256, 8, 256, 3, 1),
    (16, 64, 32, 128, 1, 2)]


def mean_ms(fn, n: int = 5) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3


def main() -> None:
    torch.set_num_threads(1)
    print("| layer | im2col ms | conv2d_weight ms | ratio | max abs diff |\n|---|---|---|---|---|")
    for n, c, side, o, k, s in SHAPES:
        conv = torch.nn.Conv2d(c, o, k, s, padding=k // 2)
        x = torch.randn(n, c, side, side)
        with torch.no_grad():
            u = torch.randn_like(conv(x))

        def im2col():
            cols = torch.nn.functional.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)
            rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
            return (u.reshape(n, o, -1).transpose(1, 2).reshape(-1, o).T @ rows).reshape(conv.weight.shape)

        def kernel():
            return conv2d_weight(x, conv.weight.shape, u, conv.stride, conv.padding, conv.dilation, 1)

        a, b = mean_ms(im2col), mean_ms(kernel)
        diff = (im2col() - kernel()).abs().max().item()
        print(f"| {c}->{o} {k}x{k}/{s} at {side}px | {a:.1f} | {b:.1f} | {a / b:.1f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
