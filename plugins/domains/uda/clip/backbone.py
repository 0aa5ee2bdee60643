"""``backbone: clip`` for the ``uda`` domain: its parameters and the factories the domain's
``encoder_factory`` / ``head_factory`` return (DESIGN.md §3.1).

The shared encoder is the frozen CLIP image encoder + the shared context P_sh; each task's head
is one domain's context P_d (``prompt.py``). With the ``pseudo_label`` method's tasks
``[target, source]`` (or ``[target, source_<name>, …]``) each domain thus gets its own prompt, and
``model.shared_parameters()`` / ``model.task_parameters(task)`` are exactly PGA's blocks (spec
gradients.md §3.1–3.3). The target's pseudo-labels come from :meth:`CLIPBackbone.zero_shot`.
The frozen CLIP is read once per backbone and shared by the encoder, every head and the
zero-shot classifier.
"""
from __future__ import annotations

from typing import Sequence

from mtl_platform.errors import UserError
from mtl_platform.params import Param

from .frozen import FrozenCLIP, load_frozen_clip
from .images import IMAGENET_MEAN, IMAGENET_STD
from .prompt import DomainPrompt, PromptEncoder
from .zero_shot import TEMPLATE, ZeroShotCLIP

#: the data's normalisation, which the encoder undoes before applying CLIP's
INPUT_NORMALISATIONS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "half": ((0.5,), (0.5,))}

#: the parameters ``backbone: clip`` adds to the domain (every one has a default but the path)
CLIP_PARAMS = (
    Param("clip_path", str, None, "backbone clip: a local folder with CLIP's weights and tokenizer, written by "
          "transformers' CLIPModel/CLIPTokenizer save_pretrained", optional=True),
    Param("clip_shared_tokens", int, 16, "backbone clip: M1, the shared context's tokens", bounds="[1, inf)"),
    Param("clip_domain_tokens", int, 16, "backbone clip: M2, each domain's context's tokens", bounds="[1, inf)"),
    Param("clip_init_std", float, 0.02, "backbone clip: the contexts' initial N(0, std²)", bounds="(0, inf)"),
    Param("clip_class_specific", bool, False, "backbone clip: one domain context per class (CSC)"),
    Param("clip_template", str, TEMPLATE, "backbone clip: the zero-shot prompt, {} for the class name"),
    Param("clip_input_normalisation", str, "imagenet", "backbone clip: the data's normalisation, undone before "
          "CLIP's: imagenet (Office/VisDA/DomainNet lists) or half (mean 0.5, std 0.5: digits)",
          choices=tuple(INPUT_NORMALISATIONS)),
    Param("class_names", list, None, "the class names, in label order (backbone clip; default: the data "
          "family's class_names)", item=str, optional=True),
)


class CLIPBackbone:
    """Builds the prompt learner's encoder and heads for a domain config holding ``CLIP_PARAMS``
    (``where`` is the config section, for error messages). ``class_names`` defaults to
    ``default_names`` (a data family's ``class_names``, when it has them)."""

    def __init__(self, config: dict, num_classes: int, default_names: Sequence[str] | None = None,
                 where: str = "domain"):
        self.config, self.where = config, where
        names = config.get("class_names") or default_names
        if not names:
            raise UserError(f"{where}.class_names: backbone clip needs the {num_classes} class names in label order "
                            "(the data family gives none)")
        if len(names) != num_classes:
            raise UserError(f"{where}.class_names: {len(names)} names given; the data has {num_classes} classes")
        if "{}" not in config.get("clip_template", TEMPLATE):
            raise UserError(f"{where}.clip_template: {config['clip_template']!r} has no {{}} for the class name")
        self.class_names = [str(n) for n in names]
        self.mean, self.std = INPUT_NORMALISATIONS[config.get("clip_input_normalisation", "imagenet")]
        self._clip: FrozenCLIP | None = None

    @property
    def clip(self) -> FrozenCLIP:
        """The frozen CLIP, read from ``clip_path`` on first use."""
        if self._clip is None:
            self._clip = load_frozen_clip(self.config.get("clip_path"), f"{self.where}.clip_path")
        return self._clip

    def encoder(self) -> PromptEncoder:
        c = self.config
        return PromptEncoder(self.clip, c.get("clip_shared_tokens", 16), c.get("clip_init_std", 0.02),
                             self.mean, self.std)

    def head(self, task: str) -> DomainPrompt:
        """Task ``task``'s head: its domain's context (every task is one domain's objective)."""
        c = self.config
        return DomainPrompt(self.clip, self.class_names, c.get("clip_shared_tokens", 16), c.get("clip_domain_tokens", 16),
                            c.get("clip_init_std", 0.02), c.get("clip_class_specific", False))

    def zero_shot(self) -> ZeroShotCLIP:
        """The zero-shot classifier whose confident labels train the target prompt."""
        return ZeroShotCLIP(self.clip, self.class_names, self.config.get("clip_template", TEMPLATE),
                            self.mean, self.std)
