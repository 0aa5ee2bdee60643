"""State a weighting allocates on its first call, once the size of the gradient space is known
(MoCo's tracked gradients, ExcessMTL's squared-gradient sums): a checkpoint holds them at that
size, so a fresh weighting resizes its placeholder buffers before loading them."""
from __future__ import annotations

import torch


class LazyBuffers:
    """Mixin for an ``nn.Module``: the buffers named in ``lazy_buffers`` take the saved shape and
    dtype when a state dict is loaded (their placeholders are allocated before the first call)."""

    lazy_buffers: tuple[str, ...] = ()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self.lazy_buffers:
            saved, current = state_dict.get(prefix + name), getattr(self, name)
            if saved is not None and saved.shape != current.shape:
                setattr(self, name, torch.zeros(saved.shape, dtype=saved.dtype, device=current.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
