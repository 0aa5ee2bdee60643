"""DSMTL-IL (Yue, PhD thesis 2023, Ch. 6): its two stages as a run (cached STL models reused, only
the public encoder and the gates trained), the frozen parts kept in eval mode."""
import json

import torch

from mtl_platform import session
from mtl_platform.checkpoint import load
from mtl_platform_plugins.architectures.hps import HPS

from conftest import Recorder, run_dirs
from synthetic_runs import write


def test_dsmtl_il_reuses_cached_stl_models_and_trains_only_public_encoder_and_gates(tmp_path, one_thread):
    cfg = write(tmp_path, "dsmtl_il", baselines={"stl": True})
    first = session.train(cfg, progress=False, echo=lambda *a: None)
    recorder = Recorder()
    messages = []
    second = session.train(cfg, progress=False, echo=messages.append, extra_plugins=[recorder])
    assert second["mtl"] == first["mtl"]
    # both the Δp baselines and the STL stage reused the cache: the only training is the gated stage
    assert recorder.starts == ["gated"]
    assert sum("reusing cached" in str(m) for m in messages) == 3  # once per task, not again by the STL stage
    assert any("the single-task models are the run's STL baselines" in str(m) for m in messages)
    run_dir = run_dirs(tmp_path / "runs")[-1]
    stl = json.loads((run_dir / "stages" / "stl" / "results.json").read_text())["models"]
    gated = load(run_dir / "stages" / "gated" / "model.pt")
    for task, entry in stl.items():
        encoder, head = HPS.split_task_state(load(entry["weights"]), task)  # the STL model's architecture
        assert encoder and head
        # the private parts are the STL models, untouched by the gated stage
        assert all(torch.equal(gated[f"private.{task}.{k}"], v) for k, v in encoder.items())
        assert all(torch.equal(gated[f"heads.{task}.{k}"], v) for k, v in head.items())
        assert gated[f"gates.{task}"] != 0  # the gate did train
    counts = second["parameters"]
    assert counts["frozen"] == sum(v.numel() for k, v in gated.items() if k.startswith(("private.", "heads.")))
    assert counts["tasks"] == {t: 1 for t in stl}
    assert "gates α_t task0 " in "\n".join(str(m) for m in messages)


def test_dsmtl_il_frozen_parts_stay_in_eval_mode():
    from mtl_platform_plugins.architectures.dsmtl_il import DSMTLIL
    from mtl_platform_plugins.domains.synthetic_regression.domain import SyntheticRegression

    from conftest import make_domain

    d = make_domain(SyntheticRegression, train_samples=16)
    model = DSMTLIL(d.task_names, d.encoder_factory, d.head_factory).train()
    assert model.public.training and not model.private.training and not model.heads.training
    assert all(not p.requires_grad for p in model.frozen_parameters())
