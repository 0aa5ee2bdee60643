"""Per-sample predictions of a trained model, written by ``mtl eval --export DIR`` (docs/report.md).

Format, in ``DIR``:

- ``<task>.npz`` per evaluated task (NumPy, ``numpy.load``): ``prediction`` — the model's raw
  output for each sample, stacked in the split's order (logits or scores for a classifier,
  ``(N, C, H, W)`` maps for a dense task, float32); ``target`` — the split's labels in the same
  order; ``index`` — each sample's position in the split's dataset (0 … N−1); ``labelled`` —
  (partial labels only) True where the sample carries the task's label.
- ``<task>/<index>.png`` for a dense labelling task — one whose prediction is ``(N, C, H, W)``
  class scores for an integer ``(N, H, W)`` target (semantic segmentation): the argmax class of
  every pixel as a grey-level PNG, 8-bit (16-bit when C > 256), pixel value = class index.
- ``eval.json``: what ``mtl eval`` printed (evaluated and recorded metrics), and ``export``: the
  files written per task.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .contracts.domain import Domain
from .errors import UserError


def check_exportable(domain: Domain) -> None:
    """Refuse, in one line, a domain that evaluates with its own protocol and gives no predictions."""
    own_evaluation = type(domain).evaluate is not Domain.evaluate
    if own_evaluation and type(domain).predictions is Domain.predictions:
        raise UserError(f"mtl eval --export: domain {domain.name!r} evaluates with its own protocol and "
                        f"does not provide per-sample predictions (Domain.predictions)")


def is_dense_labelling(prediction: torch.Tensor, target: torch.Tensor) -> bool:
    """``(N, C, H, W)`` class scores for an integer ``(N, H, W)`` label map."""
    return (prediction.dim() == 4 and target.dim() == 3 and prediction.shape[2:] == target.shape[1:]
            and not torch.is_floating_point(target))


def write_mask(path: Path, classes: np.ndarray) -> None:
    from PIL import Image

    dtype = np.uint8 if classes.max(initial=0) < 256 else np.uint16
    Image.fromarray(classes.astype(dtype)).save(path)


def write_predictions(domain: Domain, model, split: str, out: Path) -> dict:
    """Write ``<task>.npz`` (and PNG masks of dense labelling tasks) into ``out``; return the
    files written per task."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--export {out}: cannot create folder ({exc.strerror})") from None
    parts: dict[str, dict[str, list]] = {}
    for batch in domain.predictions(model, split):
        for task, (prediction, target, labelled) in batch.items():
            got = parts.setdefault(task, {"prediction": [], "target": [], "labelled": []})
            got["prediction"].append(prediction)
            got["target"].append(target)
            if labelled is not None:
                got["labelled"].append(labelled)
    written = {}
    for task, got in parts.items():
        prediction, target = torch.cat(got["prediction"]), torch.cat(got["target"])
        arrays = {"prediction": prediction.float().numpy(), "target": target.numpy(),
                  "index": np.arange(len(prediction))}
        if got["labelled"]:
            arrays["labelled"] = torch.cat(got["labelled"]).numpy()
        np.savez_compressed(out / f"{task}.npz", **arrays)
        files = [f"{task}.npz"]
        if is_dense_labelling(prediction, target):
            (out / task).mkdir(exist_ok=True)
            classes = prediction.argmax(1).numpy()
            width = len(str(len(classes) - 1))
            for i, mask in enumerate(classes):
                write_mask(out / task / f"{i:0{width}d}.png", mask)
            files.append(f"{task}/*.png ({len(classes)} masks)")
        written[task] = files
    return written
