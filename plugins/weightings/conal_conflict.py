"""CoNAL's conflict-noticing rule for shared modules (Yue, PhD thesis 2023, Ch. 5, Eq. 5.2–5.3;
spec thesis.md §3.3), and CoNAL-Pro's one-module form (§5.2.4; spec §4) as ``notice: last``."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

NOTICE = ("all", "last")


class ConalConflict(Weighting):
    """CoNAL's conflict rule (Yue, PhD thesis 2023): shared blocks from the first conflicting one on get zero
    gradient.

    With g_t^p the gradient of task t w.r.t. shared block p (one block per encoder stage,
    ``parameter_blocks()``), let p* be the shallowest *watched* block where some pair of tasks
    has negative cosine, i.e. a negative off-diagonal entry of block p's Gramian. Blocks p < p*
    get Σ_t g_t^p; blocks p ≥ p* (the conflicting one and every deeper one) get zero
    (thesis Eq. 5.2–5.3, the garbled range read as p … P−1, spec §3.3 [RECON]). Everything
    outside the shared blocks — CoNAL's purely-specific modules, decoders, α — gets the
    unweighted ∇Σ_t L_t. A zero gradient has cosine 0, which is not a conflict.

    ``notice`` says which blocks are watched for conflicts:
    - ``all`` (CoNAL, Eq. 5.2–5.3): every block;
    - ``last`` (CoNAL-Pro, thesis §5.2.4, spec §4: "conflict noticing is computed only for the
      last shared module", its memory saving): the last block alone, so only that block can
      be zeroed and every earlier one always gets Σ_t g_t. In a ``conal_pro`` search round
      the last block is the round's module in question and the earlier ones its trunk. The
      registered ``conal_pro_conflict`` is this rule with ``notice: last``.

    CoNAL uses the rule only in its search stage, as that stage's weighting; it is
    registered like any weighting so it can also be studied on its own. Returns per-block
    weights (blocks × m), computed on the device with no host synchronisation.
    """

    name = "conal_conflict"
    needs = Needs.BLOCK_GRAMIANS
    scales_heads = False
    promises = ("nonnegative",)
    params = (Param("notice", str, "all", "blocks watched for conflicts: all (CoNAL, thesis Eq. 5.2–5.3) "
                    "or the last only (CoNAL-Pro, thesis §5.2.4)", choices=NOTICE),)

    def weights(self, losses, block_grams=None, **computed):
        if block_grams is None:
            raise TypeError(f"{self.name} needs per-block Gramians: call weights(losses, block_grams=G)")
        blocks, m, _ = block_grams.shape
        off = ~torch.eye(m, dtype=torch.bool, device=block_grams.device)
        conflict = ((block_grams < 0) & off).flatten(1).any(1)                  # (blocks,)
        if self.notice == "last":
            conflict = conflict & (torch.arange(blocks, device=conflict.device) == blocks - 1)
        from_first = torch.cummax(conflict.to(torch.int64), dim=0).values.bool()  # p ≥ p*
        keep = (~from_first).to(block_grams.dtype)
        return keep[:, None].expand(blocks, m).clone()


@hookimpl
def mtl_register(registry):
    registry.add_weighting(ConalConflict)
