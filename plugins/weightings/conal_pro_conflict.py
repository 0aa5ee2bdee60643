"""CoNAL-Pro's conflict rule on one module (Yue, PhD thesis 2023, Ch. 5, §5.2.4 with Eq. 5.2–5.3;
spec thesis.md §4)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl


class ConalProConflict(Weighting):
    """CoNAL-Pro's conflict rule: CoNAL's rule on the last parameter block only (a search round's module).

    If some pair of tasks has a negative cosine on the last block of ``parameter_blocks()``
    (a negative off-diagonal entry of its Gramian), that block gets zero gradient; every
    earlier block always gets Σ_t g_t; everything outside the shared blocks (purely-specific
    modules, heads, α) the unweighted ∇Σ_t L_t. This is CoNAL's Eq. 5.2–5.3 with conflicts
    noticed on a single module, "only for the last shared module" (thesis §5.2.4). In a
    ``conal_pro`` round the last block is the round's module in question and the earlier
    blocks are its trunk, which CoNAL's own rule (``conal_conflict``) would also zero on a
    conflict. A zero gradient has cosine 0, which is not a conflict. Returns per-block
    weights (blocks × m), computed on the device with no host synchronisation.
    """

    name = "conal_pro_conflict"
    needs = Needs.BLOCK_GRAMIANS
    scales_heads = False
    promises = ("nonnegative",)

    def weights(self, losses, block_grams=None, **computed):
        if block_grams is None:
            raise TypeError("conal_pro_conflict needs per-block Gramians: call weights(losses, block_grams=G)")
        blocks, m, _ = block_grams.shape
        off = ~torch.eye(m, dtype=torch.bool, device=block_grams.device)
        conflict = ((block_grams[-1] < 0) & off).any()
        keep = torch.ones(blocks, dtype=block_grams.dtype, device=block_grams.device)
        keep = torch.cat([keep[:-1], (~conflict).to(keep.dtype).reshape(1)])
        return keep[:, None].expand(blocks, m).clone()


@hookimpl
def mtl_register(registry):
    registry.add_weighting(ConalProConflict)
