"""The query perturbations (issue 22): Gaussian noise stays in [0, 1]; FGSM moves every pixel by
exactly ε in the sign of the input gradient (clipped at the bounds); PGD stays in the ε-ball and
[0, 1]; an attack writes no parameter gradient; bad settings are one clear line."""
from __future__ import annotations

import pytest
import torch

from mtl_platform.errors import UserError
from mtl_platform_plugins.domains.retrieval.perturbations import FGSM, PGD, Gaussian, build_perturbation


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 6 * 6, 4), torch.nn.Tanh(),
                               torch.nn.Linear(4, 1))


def _loss_of(model):
    return lambda x: model(x).pow(2).sum()


def _images():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 6, 6, generator=g)
    x[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 0.999])  # pixels at and next to the clip bounds
    return x


def test_gaussian_noise_stays_in_the_unit_interval_and_has_the_given_sigma(one_thread):
    x = torch.full((2, 3, 64, 64), 0.5)
    torch.manual_seed(0)
    out = Gaussian(sigma=0.1)(x)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert float((out - x).std()) == pytest.approx(0.1, rel=0.05)
    wide = Gaussian(sigma=0.3)(torch.rand(2, 3, 32, 32))
    assert float(wide.min()) == 0.0 and float(wide.max()) == 1.0  # clipped at both ends


def test_fgsm_moves_every_pixel_by_eps_in_the_sign_of_the_gradient(one_thread):
    model, x, eps = _model(), _images(), 0.05
    x0 = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_loss_of(model)(x0), x0)
    out = FGSM(eps=eps)(x, _loss_of(model))
    assert bool((grad != 0).all())  # every pixel has a direction here
    torch.testing.assert_close(out, (x + eps * grad.sign()).clamp(0, 1), rtol=0, atol=0)
    inside = (x + eps * grad.sign() >= 0) & (x + eps * grad.sign() <= 1)
    torch.testing.assert_close((out - x)[inside], (eps * grad.sign())[inside], rtol=0, atol=1e-7)
    clipped = ~inside
    assert bool(clipped.any())
    assert bool(((out[clipped] == 0) | (out[clipped] == 1)).all())  # clipped pixels sit on the bound


def test_pgd_stays_in_the_eps_ball_and_the_unit_interval(one_thread):
    model, x = _model(), _images()
    torch.manual_seed(0)
    for start in (True, False):
        out = PGD(eps=0.03, steps=7, step_size=0.02, random_start=start)(x, _loss_of(model))
        assert float((out - x).abs().max()) <= 0.03 + 1e-7
        assert float(out.min()) >= 0 and float(out.max()) <= 1
    one = PGD(eps=0.05, steps=1, step_size=0.05, random_start=False)(x, _loss_of(model))
    torch.testing.assert_close(one, FGSM(eps=0.05)(x, _loss_of(model)))  # PGD-1 from x with α = ε is FGSM
    assert PGD(eps=0.04, steps=4).alpha == pytest.approx(0.025)


def test_pgd_increases_the_loss_over_fgsm_noise_free_start(one_thread):
    model, x = _model(), _images()
    loss = _loss_of(model)
    with torch.no_grad():
        base = float(loss(x))
        attacked = float(loss(PGD(eps=0.05, steps=10, random_start=False)(x, loss)))
    assert attacked > base


def test_an_attack_writes_no_parameter_gradient_and_works_under_no_grad(one_thread):
    model, x = _model(), _images()
    with torch.no_grad():
        FGSM(eps=0.1)(x, _loss_of(model))
        PGD(eps=0.1, steps=2)(x, _loss_of(model))
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("given, pattern", [
    ({"name": "fgsn"}, r"domain.perturbation.name: unknown attack 'fgsn' \(did you mean 'fgsm'\?\); allowed"),
    ({"name": "fgsm", "eps": 0}, r"domain.perturbation.eps: got 0.*in \(0, 1\]"),
    ({"name": "pgd", "eps": 1.5}, r"domain.perturbation.eps: got 1.5.*in \(0, 1\]"),
    ({"name": "pgd", "steps": 0}, r"domain.perturbation.steps: got 0"),
    ({"name": "gaussian", "eps": 0.1}, r"domain.perturbation.eps: unknown key; allowed: sigma, name"),
])
def test_bad_settings_are_one_clear_error(given, pattern):
    with pytest.raises(UserError, match=pattern):
        build_perturbation(given, "domain.perturbation")
