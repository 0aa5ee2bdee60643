"""TIRG's composition, text encoder and losses (issue 22): shapes, the gate in (0, 1), each
branch alone when the other's weight is 0, and the losses against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from mtl_platform_plugins.domains.retrieval.losses import batch_classification, soft_triplet
from mtl_platform_plugins.domains.retrieval.model import Composer, TextEncoder, TIRGModel
from mtl_platform_plugins.domains.retrieval.vocab import Vocabulary


@pytest.fixture
def features():
    g = torch.Generator().manual_seed(0)
    return torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)


def test_composition_shape_and_gate_in_the_open_unit_interval(features, one_thread):
    img, txt = features
    comp = Composer(8).train()
    out = comp(img, txt)
    assert out.shape == (5, 8)
    gate = comp.gating(img, txt)
    assert gate.shape == (5, 8) and bool((gate > 0).all() and (gate < 1).all())


def test_each_branch_alone_when_the_other_weight_is_zero(features, one_thread):
    img, txt = features
    comp = Composer(8).eval()
    with torch.no_grad():
        comp.w_gate.zero_()
        torch.testing.assert_close(comp(img, txt), comp.w_res * comp.residual(img, txt))
        comp.w_gate.fill_(2.0)
        comp.w_res.zero_()
        torch.testing.assert_close(comp(img, txt), 2.0 * comp.gating(img, txt) * img)
    # the released initial weights: w_g = 1, w_r = 10
    fresh = Composer(8).requires_grad_(False)
    assert fresh.w_gate.item() == 1.0 and fresh.w_res.item() == 10.0


def test_the_gate_scales_the_image_feature_elementwise(features, one_thread):
    """With the residual off, a zero image feature composes to zero whatever the text."""
    img, txt = features
    comp = Composer(8).eval()
    with torch.no_grad():
        comp.w_res.zero_()
        img = img.clone()
        img[:, 3] = 0
        assert bool((comp(img, txt)[:, 3] == 0).all())


def test_the_text_feature_is_read_at_each_texts_last_word(one_thread):
    torch.manual_seed(0)
    vocab = Vocabulary(["add red cube", "remove small blue sphere now"])
    tokens, lengths = vocab.encode(["add red cube", "remove small blue sphere now"])
    assert tokens.shape == (2, 5) and lengths.tolist() == [3, 5] and int(tokens[0, 3:].abs().sum()) == 0
    enc = TextEncoder(len(vocab), 4, 6).eval()
    both = enc(tokens, lengths)
    alone = enc(tokens[:1, :3], lengths[:1])
    torch.testing.assert_close(both[:1], alone)  # padding after the last word changes nothing
    assert vocab.encode(["add purple cube"])[0].tolist() == [[vocab.index["add"], 1, vocab.index["cube"]]]


def test_the_model_embeds_queries_and_targets_at_the_learned_scale(one_thread):
    torch.manual_seed(0)
    model = TIRGModel("convnet", 16, 10, dim=8, word_dim=4).eval()
    x = torch.rand(3, 3, 16, 16)
    tokens, lengths = torch.tensor([[2, 3], [4, 0], [5, 6]]), torch.tensor([2, 1, 2])
    q, t = model.query(x, tokens, lengths), model.target(x)
    assert q.shape == t.shape == (3, 8)
    torch.testing.assert_close(q.norm(dim=1), torch.full((3,), 4.0))
    ids = {id(p) for p in model.shared_parameters()}
    assert ids == {id(p) for p in model.parameters()} and model.task_parameters("clean") == []
    assert sum(len(b) for b in model.parameter_blocks()) == len(ids)


def test_batch_classification_is_softmax_cross_entropy_over_the_batch():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    # logits q tᵀ = [[1, 0], [2, 2]]; labels 0, 1
    expected = (-(1 - math.log(math.exp(1) + 1)) - (2 - math.log(2 * math.exp(2)))) / 2
    assert float(batch_classification(q, t)) == pytest.approx(expected)


def test_soft_triplet_is_the_mean_softplus_of_positive_minus_negative_distances():
    q = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0], [3.0, 0.0]])
    # d = ‖q_i − t_j‖²: [[1, 9], [2, 4]]; pairs (0, 1): 1 − 9, (1, 0): 4 − 2
    expected = (math.log1p(math.exp(-8)) + math.log1p(math.exp(2))) / 2
    assert float(soft_triplet(q, t)) == pytest.approx(expected, rel=1e-5)
