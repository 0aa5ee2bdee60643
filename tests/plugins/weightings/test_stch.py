"""STCH (Lin et al. ICML 2024): hand-computed weights before and after the warm-up, the nadir
from the last warm-up epoch, the autograd gradient of the scalarisation."""
import torch

from mtl_platform_plugins.weightings.stch import STCH

F64 = torch.float64


def test_stch_hand_cases():
    stch = STCH(["a", "b"], mu=1.0, warmup_epochs=1)
    losses = torch.tensor([1.0, 2.0], dtype=F64)
    # warm-up: Σ log L_t, w = 1/L = (1, ½)
    assert torch.allclose(stch.weights(losses), torch.tensor([1.0, 0.5], dtype=F64), rtol=1e-14)
    stch.epoch_end(torch.tensor([1.0, 1.0]))                    # nadir (1, 1)
    # ℓ = (0, log 2), softmax(ℓ/1) = (⅓, ⅔), w = 2·softmax/L = (⅔, ⅔)
    assert torch.allclose(stch.weights(losses), torch.tensor([2 / 3, 2 / 3], dtype=F64), rtol=1e-14)
    stch.mu = 0.5                                               # exp(ℓ/½) = (1, 4): softmax (⅕, ⅘), w = (⅖, ⅘)
    assert torch.allclose(stch.weights(losses), torch.tensor([0.4, 0.8], dtype=F64), rtol=1e-14)


def test_stch_nadir_is_the_last_warmup_epoch_and_weights_are_the_gradient():
    stch = STCH(list("abc"), mu=0.3, warmup_epochs=2)
    stch.epoch_end(torch.tensor([9.0, 9.0, 9.0]))
    stch.epoch_end(torch.tensor([2.0, 0.5, 4.0]))
    stch.epoch_end(torch.tensor([7.0, 7.0, 7.0]))               # after the warm-up: ignored
    assert torch.equal(stch.nadir, torch.tensor([2.0, 0.5, 4.0]))
    losses = torch.tensor([1.0, 0.7, 3.0], dtype=F64, requires_grad=True)
    nadir = torch.tensor([2.0, 0.5, 4.0], dtype=F64)
    (3 * 0.3 * torch.logsumexp(torch.log(losses / nadir) / 0.3, 0)).backward()
    assert torch.allclose(stch.weights(losses.detach()), losses.grad, rtol=1e-12)
    fresh = STCH(list("abc"), mu=0.3, warmup_epochs=2)
    fresh.load_state_dict(stch.state_dict())
    assert torch.equal(fresh.weights(losses.detach()), stch.weights(losses.detach()))
