"""PGA's prompt learner on a frozen CLIP (spec gradients.md §3.1; Phan et al., "Enhancing domain
adaptation through prompt gradient alignment", NeurIPS 2024; the DAPL/CoOp prompt design).

The prompt of domain d and class c is ``[SOS][P_sh: M1 tokens][P_d: M2 tokens][CLASSNAME][.][EOS]``:
the shared, domain-agnostic context P_sh and the domain-specific context P_d are learned vectors of
the text-token width, initialised from N(0, σ²) with σ = 0.02; everything else is CLIP's own token
embeddings. The frozen text transformer runs on that embedded prompt exactly as CLIP runs on text
(positions, causal mask, final norm, pooling at the EOS position, projection), and the logits are
``ℓ_c = e^s cos(f_img(x), f_txt(prompt_{d,c}))`` with CLIP's logit scale s.

In the platform's terms (DESIGN.md §3.1) the model is ``hps``:
- the shared **encoder** (:class:`PromptEncoder`) is the frozen image encoder plus P_sh; its output
  is a :class:`PromptInput` (the unit image features and P_sh), so its only trainable parameter,
  and ``model.shared_parameters()``'s, is P_sh (PGA's shared block);
- each task's **head** (:class:`DomainPrompt`) is its domain's context P_d: it turns P_sh and P_d
  into the class text features and scores the images against them, so
  ``model.task_parameters(task)`` is P_d (PGA's domain-specific block).
With ``class_specific`` each class has its own P_d (the DAPrompt path's CSC; spec §3.1); P_sh is
always one for all classes.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

from mtl_platform.contracts import StagedEncoder
from mtl_platform.errors import UserError

from .frozen import FrozenCLIP
from .images import IMAGENET_MEAN, IMAGENET_STD, ImageAdapter

class PromptInput(NamedTuple):
    """What the shared encoder hands every head: unit image features (B, D) and P_sh (M1, W)."""

    features: Tensor
    shared_context: Tensor


class PromptTokens(nn.Module):
    """The token ids of every class's prompt, ``[SOS] x…x (M1 + M2 placeholders) name . [EOS] pad…``
    (C, L), L the longest prompt; ``context`` is the slice of the placeholders, which the learned
    contexts replace. A placeholder is the tokenizer's one token for "X" (as in CoOp), never EOS,
    so CLIP's EOS pooling finds the true end."""

    def __init__(self, clip: FrozenCLIP, class_names: Sequence[str], context_length: int,
                 where: str = "domain.class_names"):
        super().__init__()
        tok = clip.tokenizer
        placeholder = tok("X", add_special_tokens=False)["input_ids"]
        if len(placeholder) != 1 or tok.bos_token_id is None or tok.eos_token_id is None:
            raise UserError(f"{where}: the tokenizer at {clip.path} is not CLIP's (needs SOS/EOS tokens and 'X' as one token)")
        names = [tok(f"{name}.", add_special_tokens=False)["input_ids"] for name in class_names]
        length = 1 + context_length + max(len(n) for n in names) + 1
        if length > clip.max_length:
            longest = class_names[max(range(len(names)), key=lambda i: len(names[i]))]
            raise UserError(f"{where}: the prompt for {longest!r} is {length} tokens with {context_length} context "
                            f"tokens; the CLIP text encoder takes at most {clip.max_length}")
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        rows = [[tok.bos_token_id] + placeholder * context_length + n + [tok.eos_token_id] for n in names]
        ids = torch.tensor([r + [pad] * (length - len(r)) for r in rows], dtype=torch.long)
        self.register_buffer("ids", ids, persistent=False)
        self.context = slice(1, 1 + context_length)


def context_vectors(shape: tuple[int, ...], std: float) -> nn.Parameter:
    """Learned context vectors initialised from N(0, std²) (spec §3.1: std 0.02)."""
    return nn.Parameter(torch.randn(shape) * std)


class ImageAndSharedContext(nn.Module):
    """The encoder's one stage: the frozen image encoder (after adapting the domain's images to
    CLIP's input: grey to RGB, the data's normalisation undone and CLIP's applied, resized to
    CLIP's image size) and the shared context P_sh."""

    def __init__(self, clip: FrozenCLIP, shared_tokens: int, init_std: float,
                 input_mean: Sequence[float] = IMAGENET_MEAN, input_std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.clip = clip
        self.shared_context = context_vectors((shared_tokens, clip.width), init_std)
        self.adapt = ImageAdapter(clip.image_size, input_mean, input_std)

    def forward(self, images: Tensor) -> PromptInput:
        with torch.no_grad():  # frozen: nothing upstream of the prompts needs a graph
            features = self.clip.image_features(self.adapt(images))
        return PromptInput(features, self.shared_context)


class PromptEncoder(StagedEncoder):
    """The shared encoder: frozen image encoder + P_sh (one stage; output :class:`PromptInput`)."""

    def __init__(self, clip: FrozenCLIP, shared_tokens: int = 16, init_std: float = 0.02,
                 input_mean: Sequence[float] = IMAGENET_MEAN, input_std: Sequence[float] = IMAGENET_STD):
        super().__init__([ImageAndSharedContext(clip, shared_tokens, init_std, input_mean, input_std)],
                         out_shape=(clip.feature_dim,))

    @property
    def shared_context(self) -> nn.Parameter:
        return self.stages[0].shared_context


class DomainPrompt(nn.Module):
    """One domain's head: its context P_d (M2, W), or (C, M2, W) with ``class_specific``; maps a
    :class:`PromptInput` to the logits e^s cos(f_img, f_txt(prompt_{d,c})) over the C classes."""

    def __init__(self, clip: FrozenCLIP, class_names: Sequence[str], shared_tokens: int = 16,
                 domain_tokens: int = 16, init_std: float = 0.02, class_specific: bool = False):
        super().__init__()
        self._clip = (clip,)  # a reference, not a submodule: the encoder owns the frozen CLIP
        self.shared_tokens = shared_tokens
        shape = (len(class_names), domain_tokens, clip.width) if class_specific else (domain_tokens, clip.width)
        self.context = context_vectors(shape, init_std)
        self.tokens = PromptTokens(clip, class_names, shared_tokens + domain_tokens)

    @property
    def clip(self) -> FrozenCLIP:
        return self._clip[0]

    def prompt_contexts(self, shared_context: Tensor) -> Tensor:
        """[P_sh, P_d] for every class: (C, M1 + M2, W)."""
        classes = self.tokens.ids.shape[0]
        domain = self.context if self.context.dim() == 3 else self.context.expand(classes, -1, -1)
        return torch.cat([shared_context.expand(classes, -1, -1), domain], dim=1)

    def text_features(self, shared_context: Tensor) -> Tensor:
        """Unit text features of the C prompts (C, D): the frozen text encoder on the embedded prompts."""
        contexts = self.prompt_contexts(shared_context)
        span = self.tokens.context

        def insert(embedded: Tensor) -> Tensor:
            return torch.cat([embedded[:, :span.start], contexts.to(embedded.dtype), embedded[:, span.stop:]], dim=1)

        with self.clip.replaced_token_embeddings(insert):
            return self.clip.text_features(self.tokens.ids)

    def forward(self, inputs: PromptInput) -> Tensor:
        text = self.text_features(inputs.shared_context)
        return self.clip.logit_scale() * inputs.features @ text.t()
