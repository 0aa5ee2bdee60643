"""GLS (Chennupati et al. 2019): the weights of the geometric mean's gradient, by hand and by autograd."""
import torch

from mtl_platform_plugins.weightings.gls import GLS

F64 = torch.float64


def test_gls_hand_cases():
    # L = (1, 4): geometric mean 2, w_t = 2/(2 L_t) = (1, ¼)
    assert torch.allclose(GLS(["a", "b"]).weights(torch.tensor([1.0, 4.0], dtype=F64)),
                          torch.tensor([1.0, 0.25], dtype=F64), rtol=1e-14)
    # L = (1, 2, 4): geometric mean 2, w_t = 2/(3 L_t) = (⅔, ⅓, ⅙)
    assert torch.allclose(GLS(["a", "b", "c"]).weights(torch.tensor([1.0, 2.0, 4.0], dtype=F64)),
                          torch.tensor([2 / 3, 1 / 3, 1 / 6], dtype=F64), rtol=1e-14)
    assert torch.equal(GLS(["a"]).weights(torch.tensor([0.3], dtype=F64)), torch.ones(1, dtype=F64))


def test_gls_weights_are_the_gradient_of_the_geometric_mean():
    losses = (torch.rand(5, dtype=F64, generator=torch.Generator().manual_seed(0)) + 0.1).requires_grad_()
    losses.prod().pow(1 / 5).backward()
    assert torch.allclose(GLS(list("abcde")).weights(losses.detach()), losses.grad, rtol=1e-12)


def test_gls_present_tasks_only_and_zero_losses():
    w = GLS(["a", "b", "c"]).respond(torch.tensor([1.0, 0.0, 4.0], dtype=F64),
                                     present=torch.tensor([True, False, True]))
    assert torch.allclose(w, torch.tensor([1.0, 0.0, 0.25], dtype=F64), rtol=1e-14)
    w = GLS(["a", "b"]).weights(torch.tensor([0.0, 1e-8], dtype=torch.float32))   # floored at eps: equal
    assert torch.isfinite(w).all() and torch.allclose(w, torch.tensor([0.5, 0.5]))
