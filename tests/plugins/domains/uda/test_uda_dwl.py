"""DWL (Xiao & Zhang, CVPR 2021) as GH's code runs it: the dynamic weight's statistics against
the code's formulas (numpy eigenvalues, paired MMD), its per-epoch renewal, checkpointed state,
and which parameters each of the protocol's steps moves."""
from pathlib import Path

import numpy as np
import pytest
import torch

from mtl_platform import session

from mtl_platform_plugins.domains.uda.methods import dwl as dwl_module
from mtl_platform_plugins.domains.uda.methods.dynamic_weight import DynamicWeight, lda_criterion, linear_mmd

from test_trainer import InterruptAt
from test_uda import CONFIG, TINY, experiment, first_batch, quiet


def clustered(n, d, k, seed, spread=2.0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % k
    centres = torch.randn(k, d, generator=g) * spread
    return centres[labels] + torch.randn(n, d, generator=g), labels


def code_lda(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """The DWL code's J: the top K−1 eigenvalues of inv(S_w + 1e-6 I)·S_b, summed, over K."""
    d = x.shape[1]
    sw, sb, mean = np.zeros((d, d)), np.zeros((d, d)), x.mean(0)
    for c in np.unique(y):
        xc = x[y == c]
        centred = xc - xc.mean(0)
        sw += centred.T @ centred
        sb += len(xc) * np.outer(xc.mean(0) - mean, xc.mean(0) - mean)
    eig = np.linalg.eigvals(np.linalg.inv(sw + 1e-6 * np.eye(d)) @ sb).real
    return float(np.sort(eig)[::-1][: k - 1].sum() / k)


def stats(x, y, k):
    x = x.double()
    counts = torch.bincount(y, minlength=k).double()
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64).index_add_(0, y, x)
    return counts, sums, x.T @ x


def test_lda_criterion_equals_the_codes_eigenvalue_sum():
    for seed, (n, d, k) in enumerate([(200, 6, 4), (300, 12, 10), (90, 5, 3)]):
        x, y = clustered(n, d, k, seed)
        assert lda_criterion(*stats(x, y, k), k).item() == pytest.approx(code_lda(x.double().numpy(), y.numpy(), k),
                                                                          rel=1e-6)


def test_lda_criterion_grows_with_class_separation_and_skips_absent_classes():
    x, y = clustered(200, 6, 4, 0)
    far, _ = clustered(200, 6, 4, 0, spread=4.0)  # the same noise around centres twice as far apart
    k = 5  # class 4 never appears
    assert lda_criterion(*stats(far, y, k), k) > lda_criterion(*stats(x, y, k), k)
    assert torch.isfinite(lda_criterion(*stats(x, y, k), k))


def test_linear_mmd_equals_the_codes_paired_form():
    s, t = torch.randn(64, 7).double(), torch.randn(64, 7).double() + 0.5
    delta = s - t
    code = (delta @ delta.T).mean()
    got = linear_mmd(s.sum(0), torch.tensor(64.0).double(), t.sum(0), torch.tensor(64.0).double())
    assert got.item() == pytest.approx(code.item(), rel=1e-10)


def test_dynamic_weight_accumulates_batches_and_renews_t_each_epoch():
    k, d = 3, 4
    dyn = DynamicWeight(d, k)
    xs, ys = clustered(60, d, k, 1)
    xt, yt = clustered(60, d, k, 2)
    xt = xt + 1.0
    assert dyn.weight.item() == 0.5  # before the first epoch ends
    for part in range(3):  # three batches = one epoch
        sl = slice(20 * part, 20 * part + 20)
        dyn.accumulate(xs[sl], ys[sl], "source")
        dyn.accumulate(xt[sl], yt[sl], "target")
    dyn.update()
    a = (xs.double().mean(0) - xt.double().mean(0)).pow(2).sum().item()
    js, jt = (code_lda(v.double().numpy(), lab.numpy(), k) for v, lab in ((xs, ys), (xt, yt)))
    a_norm = a / (a + 1e-6)  # A's range starts at 0
    j_norm = 0.0  # first epoch: J = min(J_s, J_t) is its range's minimum
    assert dyn.degrees[0].item() == pytest.approx(a, rel=1e-9)
    assert dyn.degrees[1].item() == pytest.approx(min(js, jt), rel=1e-6)
    assert dyn.weight.item() == pytest.approx(a_norm / (a_norm + 1 - j_norm), rel=1e-5)
    assert dyn.source_counts.sum() == 0 and dyn.target_moment.abs().sum() == 0  # accumulators cleared
    # second epoch, target now aligned with the source: A falls to its range's bottom, T to 0
    dyn.accumulate(xs, ys, "source")
    dyn.accumulate(xs, ys, "target")
    dyn.update()
    assert dyn.weight.item() == pytest.approx(0.0, abs=1e-6)
    state = dyn.state_dict()  # everything a resumed run needs travels with the model
    assert {"weight", "ranges", "iteration", "source_moment", "target_sums"} <= set(state)


def test_dwl_steps_move_the_parameters_the_protocol_names(one_thread, monkeypatch):
    """Step 2 moves only D, step 3 only the classifiers, step 4 only G (with the weighting's
    τ from G's gradients), and T is renewed after the epoch's last iteration."""
    exp = experiment(["domain.method.name=dwl", "domain.method.source_steps=1", "domain.method.generator_steps=2",
                      "weighting.name=gh"])
    model, domain = exp.model, exp.domain
    enc = list(model.encoder.parameters())
    heads = list(model.heads["classification"].parameters())
    disc = list(model.heads["alignment"].parameters())
    snapshots = []
    real = dwl_module.partial_step

    def spy(model_, optimizers, loss, keep, engine=None, params=None):
        before = [p.detach().clone() for p in enc + heads + disc]
        real(model_, optimizers, loss, keep, engine, params)
        after = [p.detach() for p in enc + heads + disc]
        moved = [not torch.equal(a, b) for a, b in zip(before, after)]
        snapshots.append((any(moved[:len(enc)]), any(moved[len(enc):len(enc) + len(heads)]),
                          any(moved[len(enc) + len(heads):]), isinstance(loss, dict)))

    monkeypatch.setattr(dwl_module, "partial_step", spy)
    dyn = model.heads["alignment"].dynamic
    batches = list(domain.loaders("train", epoch=0))
    assert len(batches) == 2
    domain.train_step(batches[0], model, exp.engine, exp.optimizers)
    # source (G, C) · D · classifiers · G weighted ×2 · pseudo-label (G, C)
    assert snapshots == [(True, True, False, False), (False, False, True, False), (False, True, False, False),
                         (True, False, False, True), (True, False, False, True), (True, True, False, False)]
    assert exp.engine.last_weights is not None and dyn.weight.item() == 0.5
    assert dyn.source_counts.sum().item() == len(batches[0][0])  # the batch is in the epoch's statistics
    domain.train_step(batches[1], model, exp.engine, exp.optimizers)
    assert dyn.iteration.item() == 2 and torch.isfinite(dyn.degrees).all()  # epoch over: A and J measured
    assert dyn.source_counts.sum().item() == 0


def test_dwl_pair_is_weighted_by_t_and_the_discriminability_loss_never_reaches_d(one_thread):
    exp = experiment(["domain.method.name=dwl"])
    model, domain = exp.model, exp.domain
    model.eval()
    xs, ys, xt, _ = first_batch(exp)
    batch = (xs, ys, xt, torch.tensor(0.0))
    half = domain.losses(batch, model)
    model.heads["alignment"].dynamic.weight.fill_(0.2)
    fifth = domain.losses(batch, model)
    assert fifth["alignment"].item() == pytest.approx(half["alignment"].item() * 0.2 / 0.5, rel=1e-5)
    assert fifth["classification"].item() == pytest.approx(half["classification"].item() * 0.8 / 0.5, rel=1e-5)
    disc = list(model.heads["alignment"].parameters())
    grads = torch.autograd.grad(fifth["classification"], disc, allow_unused=True)
    assert all(g is None for g in grads)
    with torch.no_grad():  # G's adversarial term: D's cross-entropy against the inverted domain labels
        logits = model.heads["alignment"](model.encoder(torch.cat([xs, xt])))
        flipped = torch.cat([torch.zeros(len(xs)), torch.ones(len(xt))])
        by_hand = 0.2 * 0.2 * torch.nn.functional.binary_cross_entropy_with_logits(logits, flipped)
    assert fifth["alignment"].item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_dwl_resumed_in_its_second_epoch_ends_where_the_uninterrupted_run_ends(tmp_path, one_thread):
    """The dynamic weight's statistics, T and iteration count are buffers of the model: a run cut
    after step 3 (inside epoch 2, after the first renewal of T) and resumed is bit-for-bit the
    uninterrupted run, and both renewed T three times (epochs of 2 iterations)."""
    sets = [*TINY, "domain.method.name=dwl", "domain.method.hidden=32", "domain.method.source_steps=1",
            "domain.method.generator_steps=1", "train.epochs=3", "train.checkpoint_every=1",
            f"output.root={tmp_path}"]
    full = session.train(CONFIG, sets=sets, **quiet)
    with pytest.raises(KeyboardInterrupt):
        session.train(CONFIG, sets=sets, extra_plugins=[InterruptAt(3)], **quiet)
    cut = next(d for d in (tmp_path).iterdir() if d.is_dir() and str(d) != full["run_dir"] and d.name != "cache")
    resumed = session.train(resume=cut, **quiet)
    a = torch.load(Path(full["run_dir"]) / "model.pt", weights_only=False)
    b = torch.load(cut / "model.pt", weights_only=False)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert a["heads.alignment.dynamic.iteration"].item() == 6
    assert torch.isfinite(a["heads.alignment.dynamic.degrees"]).all()
    assert resumed["test"] == full["test"]
