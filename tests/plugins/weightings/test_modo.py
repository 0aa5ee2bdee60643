"""MoDo (Chen et al. NeurIPS 2023): two hand-computed projected steps of λ, state round trip."""
import torch

from mtl_platform_plugins.weightings.modo import MoDo

F64 = torch.float64
G = torch.tensor([[1.0, 0.0], [0.0, 4.0]], dtype=F64)


def test_modo_hand_steps():
    modo = MoDo(["a", "b"], gamma=0.1, rho=0.0)
    # λ₀ = (½, ½), Gλ₀ = (½, 2), λ₀ − 0.1 Gλ₀ = (0.45, 0.3), sum 0.75: + 0.125 each → (0.575, 0.425)
    assert torch.allclose(modo.respond(torch.ones(2, dtype=F64), gram=G), torch.tensor([0.575, 0.425], dtype=F64))
    # Gλ₁ = (0.575, 1.7), λ₁ − 0.1 Gλ₁ = (0.5175, 0.255), sum 0.7725: + 0.11375 each → (0.63125, 0.36875)
    assert torch.allclose(modo.respond(torch.ones(2, dtype=F64), gram=G), torch.tensor([0.63125, 0.36875], dtype=F64))
    # with ρ = 1: λ₀ − 0.1(Gλ₀ + λ₀) = (0.4, 0.25), + 0.175 each → (0.575, 0.425)... shifted alike: the same step
    ridge = MoDo(["a", "b"], gamma=0.1, rho=1.0)
    assert torch.allclose(ridge.respond(torch.ones(2, dtype=F64), gram=G), torch.tensor([0.575, 0.425], dtype=F64))
    fresh = MoDo(["a", "b"], gamma=0.1, rho=0.0)
    fresh.load_state_dict(modo.state_dict())
    assert torch.equal(fresh.respond(torch.ones(2, dtype=F64), gram=G), modo.respond(torch.ones(2, dtype=F64), gram=G))
