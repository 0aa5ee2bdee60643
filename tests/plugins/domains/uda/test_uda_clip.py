"""CLIP prompt learning, PGA's model (spec gradients.md §3.1), on a tiny random CLIP built here
(``tests/helpers/tiny_clip.py``): only the contexts train, the logits equal a hand computation from CLIP's
own encoders, zero-shot pseudo-labels are thresholded as by hand, missing weights are one line,
and a checkpoint holds the contexts only and restores the model."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

from tiny_clip import write_tiny_clip  # noqa: E402

from mtl_platform.errors import UserError  # noqa: E402
from mtl_platform_plugins.architectures.hps import HPS  # noqa: E402
from mtl_platform_plugins.domains.uda.clip.backbone import CLIPBackbone  # noqa: E402
from mtl_platform_plugins.domains.uda.clip.frozen import load_frozen_clip  # noqa: E402
from mtl_platform_plugins.domains.uda.clip.zero_shot import PseudoLabelled, confident_labels  # noqa: E402

CLASSES = ["dog", "cat", "ox"]
TASKS = ["target", "source"]


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    return str(write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny", attention_dropout=0.5))


def backbone(path, **extra):
    config = dict(clip_path=path, clip_shared_tokens=3, clip_domain_tokens=2, clip_input_normalisation="half",
                  class_names=CLASSES, **extra)
    return CLIPBackbone(config, num_classes=len(CLASSES))


def model_of(path, seed=0, **extra):
    torch.manual_seed(seed)
    b = backbone(path, **extra)
    return HPS(TASKS, b.encoder, b.head), b


def images(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g) * 2 - 1  # digits-like: one channel, [-1, 1]


def test_parameter_sets_are_pga_blocks(clip_path):
    model, _ = model_of(clip_path)
    trainable = [p for p in model.parameters() if p.requires_grad]
    shared = [p for p in model.shared_parameters() if p.requires_grad]
    assert [p is model.encoder.shared_context for p in shared] == [True]
    assert tuple(model.encoder.shared_context.shape) == (3, 32)
    for task in TASKS:
        (context,) = model.task_parameters(task)
        assert context is model.heads[task].context and tuple(context.shape) == (2, 32)
    assert len(trainable) == 3  # P_sh, P_target, P_source: nothing else trains
    # each domain's context gets nothing from the other domain's loss; the shared one from both
    x, y = images(), torch.tensor([0, 1, 2, 0, 1, 2])
    out = model(x)
    for task, other in (("target", "source"), ("source", "target")):
        grads = torch.autograd.grad(F.cross_entropy(out[task], y), [model.heads[other].context,
                                                                    model.heads[task].context,
                                                                    model.encoder.shared_context],
                                    allow_unused=True, retain_graph=True)
        assert grads[0] is None and grads[1].abs().sum() > 0 and grads[2].abs().sum() > 0


def test_only_the_contexts_train(clip_path):
    """AdamW steps move P_sh and both P_d; every CLIP weight is bit for bit unchanged, has no
    gradient, and the frozen model stays in eval mode under model.train() (its attention dropout,
    0.5 here, would otherwise make two forward passes differ)."""
    model, b = model_of(clip_path)
    frozen = {k: v.clone() for k, v in b.clip.model.state_dict().items()}
    contexts = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    x, y = images(), torch.tensor([0, 1, 2, 0, 1, 2])
    assert not b.clip.model.training
    first, second = model(x), model(x)
    assert torch.equal(first["target"], second["target"])
    for _ in range(3):
        optimizer.zero_grad()
        out = model(x)
        (F.cross_entropy(out["target"], y) + F.cross_entropy(out["source"], y)).backward()
        optimizer.step()
    for key, value in b.clip.model.state_dict().items():
        assert torch.equal(value, frozen[key]), key
    assert all(p.grad is None for p in b.clip.model.parameters())
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert not torch.equal(p.detach(), contexts[name]), name


def hand_text_features(clip, texts):
    ids = clip.tokenizer(texts, padding=True, return_tensors="pt")["input_ids"]
    m = clip.model
    return F.normalize(m.text_projection(m.text_model(input_ids=ids).pooler_output), dim=-1)


def hand_image_features(clip, x):
    m = clip.model
    rgb = (x * 0.5 + 0.5).expand(-1, 3, -1, -1)  # undo the 'half' normalisation, grey → RGB
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    pixels = F.interpolate((rgb - mean) / std, size=(32, 32), mode="bicubic", align_corners=False)
    return F.normalize(m.visual_projection(m.vision_model(pixel_values=pixels).pooler_output), dim=-1)


@pytest.mark.parametrize("class_specific", [False, True])
def test_logits_equal_a_hand_computation(clip_path, class_specific):
    """With the contexts set to the token embeddings of real words, the prompt of (domain, class)
    is the sentence 'w1 … w5 <class>.': the model's logits must equal e^s cos(image, text) with
    CLIP's own encoders run on that sentence (so the contexts sit at the right positions, the
    class name follows them, and pooling is at the EOS)."""
    model, b = model_of(clip_path, clip_class_specific=class_specific)
    clip = b.clip
    tok = clip.tokenizer
    shared_words, domain_words = ["q", "r", "s"], {"target": ["t", "u"], "source": ["v", "w"]}

    def embed(words):
        ids = torch.tensor([tok(w, add_special_tokens=False)["input_ids"][0] for w in words])
        return clip.token_embeddings(ids)

    class_words = {("target", c): [f"{c[0]}", "k"] for c in CLASSES} | {("source", c): ["m", f"{c[-1]}"] for c in CLASSES}
    with torch.no_grad():
        model.encoder.shared_context.copy_(embed(shared_words))
        for d in TASKS:
            if class_specific:
                model.heads[d].context.copy_(torch.stack([embed(class_words[d, c]) for c in CLASSES]))
            else:
                model.heads[d].context.copy_(embed(domain_words[d]))
    x = images(4)
    with torch.no_grad():
        out = model(x)
        image = hand_image_features(clip, x)
        for d in TASKS:
            words = [class_words[d, c] if class_specific else domain_words[d] for c in CLASSES]
            text = hand_text_features(clip, [" ".join(shared_words + w + [c]) + "." for w, c in zip(words, CLASSES)])
            expected = clip.model.logit_scale.exp() * image @ text.t()
            torch.testing.assert_close(out[d], expected, rtol=1e-5, atol=1e-5)


def test_zero_shot_thresholding_by_hand():
    p = torch.tensor([[0.5, 0.3, 0.2], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8], [0.34, 0.33, 0.33]])
    assert confident_labels(p, 0.4).tolist() == [0, -1, 2, -1]  # kept only if max p > τ (0.4 is dropped)
    assert confident_labels(p, 0.3).tolist() == [0, 0, 2, 0]


def test_zero_shot_probabilities_offline_cache_and_pseudo_labelled(clip_path, tmp_path):
    b = backbone(clip_path, clip_template="a photo of a {}.")
    zero_shot = b.zero_shot()
    x = images(5)
    expected = (b.clip.model.logit_scale.exp() * hand_image_features(b.clip, x)
                @ hand_text_features(b.clip, [f"a photo of a {c}." for c in CLASSES]).t()).softmax(-1)
    torch.testing.assert_close(zero_shot(None, x), expected, rtol=1e-5, atol=1e-6)
    data = [(x[i], torch.tensor(-7)) for i in range(5)]
    cache = tmp_path / "zero_shot.pt"
    labels, confidence = zero_shot.offline(data, batch_size=2, cache=cache)
    assert labels.tolist() == expected.argmax(-1).tolist()
    torch.testing.assert_close(confidence, expected.max(-1).values, rtol=1e-5, atol=1e-6)
    assert cache.is_file()
    fresh = backbone(clip_path, clip_template="a photo of a {}.").zero_shot()
    fresh.probabilities = None  # a cache hit computes nothing
    again = fresh.offline(data, batch_size=2, cache=cache)
    assert torch.equal(again[0], labels) and torch.equal(again[1], confidence)
    tau = float(confidence.median())
    labelled = PseudoLabelled(data, labels, confidence, tau)
    assert [int(labelled[i][1]) for i in range(5)] == [int(l) if c > tau else -1 for l, c in zip(labels, confidence)]


def test_missing_weights_are_one_line(tmp_path):
    with pytest.raises(UserError) as error:
        load_frozen_clip(str(tmp_path / "nowhere"), "domain.clip_path")
    text = str(error.value)
    assert "\n" not in text and text.startswith("domain.clip_path: no CLIP weights at ")
    assert str(tmp_path / "nowhere") in text and "save_pretrained" in text
    with pytest.raises(UserError, match=r"^domain\.clip_path: backbone clip needs the folder"):
        load_frozen_clip(None)
    with pytest.raises(UserError, match="class_names: 2 names given; the data has 3 classes"):
        CLIPBackbone({"class_names": ["a", "b"]}, num_classes=3)


def test_missing_transformers_is_one_line(clip_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "transformers", None)
    with pytest.raises(UserError, match=r"^domain\.clip_path: backbone clip needs the transformers package; "
                                        r"install it with: pip install 'mtl-platform\[clip\]'$"):
        load_frozen_clip(clip_path)


def test_checkpoint_holds_the_contexts_and_restores_the_model(clip_path, tmp_path):
    model, _ = model_of(clip_path, seed=0)
    state = model.state_dict()
    assert sorted(state) == ["encoder.stages.0.shared_context", "heads.source.context", "heads.target.context"]
    torch.save(state, tmp_path / "model.pt")
    other, _ = model_of(clip_path, seed=5)
    x = images(3)
    assert not torch.equal(other(x)["target"], model(x)["target"])
    other.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))  # strict
    for task in TASKS:
        assert torch.equal(other(x)[task], model(x)[task])


# ---- backbone: clip in the uda domain -----------------------------------------------------------

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def clip_config(tmp_path, clip_path, method="source_only"):
    import yaml

    config = {"domain": {"name": "uda", "data": {"name": "digits", "source": "mnist", "target": "uci",
                                                 "train_per_domain": 32},
                         "method": {"name": method}, "backbone": "clip", "clip_path": clip_path,
                         "clip_shared_tokens": 2, "clip_domain_tokens": 2, "clip_input_normalisation": "half",
                         "class_names": DIGITS, "iterations": 2, "batch_size": 4, "eval_batch_size": 64},
              "architecture": "hps", "weighting": "ew", "optimizer": {"name": "adamw", "lr": 3.0e-3},
              "train": {"epochs": 1, "seed": 0, "device": "cpu"}, "baselines": {"stl": False}}
    path = tmp_path / "clip.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_missing_weights_exit_2_one_line(tmp_path):
    import os
    import subprocess
    import sys

    cfg = clip_config(tmp_path, str(tmp_path / "no_clip_here"))
    code = f"from mtl_platform.cli import main\nmain(['train', {str(cfg)!r}, '--no-progress'])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "MTL_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"mtl: error: domain.clip_path: no CLIP weights at {tmp_path / 'no_clip_here'}")
    assert "save_pretrained" in line


def test_uda_domain_trains_the_prompts_with_backbone_clip(tmp_path, clip_path, one_thread):
    """A tiny source-only run (CoOp on the source) through the domain: the model is hps with the
    prompt encoder and one prompt head, and only the contexts move."""
    from mtl_platform import registry as registry_mod
    from mtl_platform.config import resolve
    from mtl_platform.experiment import build_experiment

    import yaml

    reg, _ = registry_mod.load()
    exp = build_experiment(resolve(yaml.safe_load(clip_config(tmp_path, clip_path).read_text()), reg), reg)
    model, domain = exp.model, exp.domain
    assert [p.shape for p in model.shared_parameters() if p.requires_grad] == [torch.Size([2, 32])]
    assert [p.shape for p in model.task_parameters("classification")] == [torch.Size([2, 32])]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    batch = next(iter(domain.loaders("train", epoch=0)))
    loss = domain.losses(batch, model)["classification"]
    loss.backward()
    optimizer.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert moved == {"encoder.stages.0.shared_context", "heads.classification.context"}
    metrics = domain.evaluate(model, "test")["classification"]
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_backbone_clip_refuses_an_alignment_head(tmp_path, clip_path):
    from mtl_platform import registry as registry_mod
    from mtl_platform.config import resolve
    from mtl_platform.experiment import build_experiment

    import yaml

    reg, _ = registry_mod.load()
    raw = yaml.safe_load(clip_config(tmp_path, clip_path, method="dann").read_text())
    with pytest.raises(UserError, match="^domain.backbone: clip gives each task its domain's prompt .* method dann"):
        build_experiment(resolve(raw, reg), reg)
