"""CoNAL's conflict-noticing rule for shared modules (Yue, PhD thesis 2023, Ch. 5, Eq. 5.2–5.3;
spec thesis.md §3.3)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl


class ConalConflict(Weighting):
    """CoNAL's conflict rule: shared blocks from the first conflicting one on get zero gradient.

    With g_t^p the gradient of task t w.r.t. shared block p (one block per encoder stage,
    ``parameter_blocks()``), let p* be the shallowest block where some pair of tasks has
    negative cosine, i.e. a negative off-diagonal entry of block p's Gramian. Blocks p < p*
    get Σ_t g_t^p; blocks p ≥ p* (the conflicting one and every deeper one) get zero
    (thesis Eq. 5.2–5.3, the garbled range read as p … P−1, spec §3.3 [RECON]). Everything
    outside the shared blocks — CoNAL's purely-specific modules, decoders, α — gets the
    unweighted ∇Σ_t L_t. A zero gradient has cosine 0, which is not a conflict.

    CoNAL uses the rule only in its search stage, as that stage's weighting; it is
    registered like any weighting so it can also be studied on its own. Returns per-block
    weights (blocks × m), computed on the device with no host synchronisation.
    """

    name = "conal_conflict"
    needs = Needs.BLOCK_GRAMIANS
    scales_heads = False
    promises = ("nonnegative",)

    def weights(self, losses, block_grams=None, **computed):
        if block_grams is None:
            raise TypeError("conal_conflict needs per-block Gramians: call weights(losses, block_grams=G)")
        blocks, m, _ = block_grams.shape
        off = ~torch.eye(m, dtype=torch.bool, device=block_grams.device)
        conflict = ((block_grams < 0) & off).flatten(1).any(1)                  # (blocks,)
        from_first = torch.cummax(conflict.to(torch.int64), dim=0).values.bool()  # p ≥ p*
        keep = (~from_first).to(block_grams.dtype)
        return keep[:, None].expand(blocks, m).clone()


@hookimpl
def mtl_register(registry):
    registry.add_weighting(ConalConflict)
