"""SDMGrad (Xiao et al. NeurIPS 2023): two hand-computed inner steps, the limits λ = 0 and large λ."""
import torch

from mtl_platform_plugins.weightings.sdmgrad import SDMGrad

F64 = torch.float64


def test_sdmgrad_hand_steps():
    # G = diag(1, 4): mean norm s = 1.5, A = G/s² = diag(4/9, 16/9); λ = 0.3: pull λA1/2 = (1/15, 4/15)
    # step 1: v = Aw + pull = (13/45, 52/45), w − 0.1v = (0.4711, 0.3844) → simplex (163/300, 137/300)
    # step 2: v = ½v + Aw + pull, w − 0.1v → simplex (3259/5400, 2141/5400)
    # weights (w + λ/2)/(1 + λ) = (313/540, 227/540)
    sdm = SDMGrad(["a", "b"], lamda=0.3, n_iter=2, lr=0.1, momentum=0.5)
    gram = torch.tensor([[1.0, 0.0], [0.0, 4.0]], dtype=F64)
    w = sdm.respond(torch.ones(2, dtype=F64), gram=gram)
    assert torch.allclose(w, torch.tensor([313 / 540, 227 / 540], dtype=F64), rtol=1e-13)
    assert torch.allclose(sdm.w, torch.tensor([3259 / 5400, 2141 / 5400], dtype=F64), rtol=1e-13)


def test_sdmgrad_is_scale_free_and_tends_to_the_mean_for_large_lamda():
    gen = torch.Generator().manual_seed(0)
    j = torch.randn(4, 12, generator=gen, dtype=F64)
    a, b = SDMGrad(list("abcd")), SDMGrad(list("abcd"))
    for _ in range(3):
        assert torch.allclose(a.respond(torch.ones(4, dtype=F64), gram=j @ j.T),
                              b.respond(torch.ones(4, dtype=F64), gram=1e-8 * (j @ j.T)), rtol=1e-10)
    big = SDMGrad(list("abcd"), lamda=1e6).respond(torch.ones(4, dtype=F64), gram=j @ j.T)
    assert torch.allclose(big, torch.full((4,), 0.25, dtype=F64), atol=1e-6)
