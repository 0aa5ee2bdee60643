"""A frozen CLIP (Radford et al., ICML 2021) from a local Hugging Face folder: the image and text
encoders that PGA's prompt learner keeps fixed (spec gradients.md §3.1: "the image and text
encoders are frozen, and the code calls ``requires_grad_(False)`` on everything outside the
prompt learner").

``load_frozen_clip(path, where)`` reads a folder written by ``CLIPModel.save_pretrained`` and
``CLIPTokenizer.save_pretrained`` (no download: ``local_files_only``). A missing folder, a folder
without the model, or a missing ``transformers`` is one ``UserError`` line naming the config key,
the path and how to get the weights.

:class:`FrozenCLIP` holds the model and the tokenizer. Its parameters never require gradients,
it stays in eval mode whatever ``train()`` is called with (no dropout, no normalisation
statistics move), and it is left out of ``state_dict``: a checkpoint holds the learned
contexts only, and the frozen weights are read again from ``path`` when the model is rebuilt.
"""
from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_platform.errors import UserError

#: the checkpoint used in the docs' example; any CLIP checkpoint of transformers' ``CLIPModel`` works
EXAMPLE_CHECKPOINT = "openai/clip-vit-base-patch16"


def how_to_get(path: str) -> str:
    """The one-line recipe for writing CLIP weights to ``path`` on a machine with internet."""
    return (f"on a machine with internet run: python -c \"from transformers import CLIPModel, CLIPTokenizer; "
            f"[c.from_pretrained('{EXAMPLE_CHECKPOINT}').save_pretrained('{path}') "
            f"for c in (CLIPModel, CLIPTokenizer)]\" and copy the folder here")


def load_frozen_clip(path: str | None, where: str = "domain.clip_path") -> "FrozenCLIP":
    """The frozen CLIP saved at ``path`` (``where`` names the config key in error messages)."""
    if not path:
        raise UserError(f"{where}: backbone clip needs the folder of CLIP weights (null given); {how_to_get('PATH')}")
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise UserError(f"{where}: no CLIP weights at {folder} (expected a folder written by save_pretrained, "
                        f"with config.json, the weights and the tokenizer files); {how_to_get(str(folder))}")
    try:
        from transformers import CLIPModel, CLIPTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise UserError(f"{where}: backbone clip needs the transformers package; "
                        "install it with: pip install 'mtl-platform[clip]'") from None
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # no progress bars or notices in the run's log
    hf_logging.disable_progress_bar()
    try:
        model = CLIPModel.from_pretrained(str(folder), local_files_only=True)
        tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{where}: cannot read CLIP weights from {folder} ({first}); {how_to_get(str(folder))}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return FrozenCLIP(model, tokenizer, str(folder))


class FrozenCLIP(nn.Module):
    """A CLIP model and its tokenizer, frozen (module docstring)."""

    def __init__(self, model: nn.Module, tokenizer, path: str = ""):
        super().__init__()
        self.model = model.requires_grad_(False)
        self.tokenizer, self.path = tokenizer, path
        self.train(False)

    # ---- frozen: eval mode always, and no state in checkpoints ---------------------------------
    def train(self, mode: bool = True):
        """Always eval mode: a frozen encoder's dropout and normalisation never train."""
        return super().train(False)

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        """Nothing: the frozen weights are not saved with the run (they are read from ``path``)."""
        if destination is None:
            destination = OrderedDict()
            destination._metadata = OrderedDict()
        return destination

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Loading a checkpoint keeps the frozen weights as read from ``path``: their absence from
        the checkpoint is expected, so each is supplied from the model itself (a no-op copy) and
        never reported as missing."""
        for name, value in self.model.state_dict(keep_vars=True).items():
            state_dict.setdefault(f"{prefix}model.{name}", value.detach())

    # ---- sizes ---------------------------------------------------------------------------------
    @property
    def width(self) -> int:
        """The width of a text token embedding (a context vector's size)."""
        return self.model.text_model.embeddings.token_embedding.weight.shape[1]

    @property
    def max_length(self) -> int:
        return self.model.text_model.embeddings.position_embedding.weight.shape[0]

    @property
    def feature_dim(self) -> int:
        return self.model.text_projection.weight.shape[0]

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    # ---- the two encoders ----------------------------------------------------------------------
    def image_features(self, images: Tensor) -> Tensor:
        """Unit-norm image embeddings f_img(x) (vision tower, pooled, projected)."""
        pooled = self.model.vision_model(pixel_values=images).pooler_output
        return F.normalize(self.model.visual_projection(pooled), dim=-1)

    def text_features(self, input_ids: Tensor) -> Tensor:
        """Unit-norm text embeddings of token ids (CLIP's own EOS-position pooling, projected)."""
        pooled = self.model.text_model(input_ids=input_ids).pooler_output
        return F.normalize(self.model.text_projection(pooled), dim=-1)

    def token_embeddings(self, input_ids: Tensor) -> Tensor:
        return self.model.text_model.embeddings.token_embedding(input_ids)

    @contextmanager
    def replaced_token_embeddings(self, replace):
        """Within the block the text transformer's token-embedding output ``e`` (n, L, W) is
        ``replace(e)``: how learned context vectors enter the frozen text encoder, which then
        runs exactly as CLIP does (positions, causal mask, final norm, EOS pooling)."""
        handle = self.model.text_model.embeddings.token_embedding.register_forward_hook(
            lambda module, inputs, output: replace(output))
        try:
            yield
        finally:
            handle.remove()

    def logit_scale(self) -> Tensor:
        """e^s, CLIP's learned temperature (frozen)."""
        return self.model.logit_scale.exp()
