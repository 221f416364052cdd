"""The text encoder inside the network, for ``encoder.trainable: full | lora``.

With ``encoder.trainable: frozen`` item texts are embedded once and cached (``cache.py``); here
the pretrained encoder is part of the model instead, so meta-training, and the ``finetune`` and
``lora`` baselines' per-task steps, tune it too: every weight (``full``) or LoRA adapters on the
attention query and value projections (``lora``, through ``peft``). Item texts are tokenised
once into buffers; a forward pass encodes the rows it is given. The attention mask is passed
as an additive 4-D tensor, which keeps the encoder usable under ``torch.func.vmap`` (the
per-task inner loops), where Hugging Face's own mask building is not. Hugging Face uses such a
mask as given, so for a decoder LLM it also holds the causal triangle.
"""

from __future__ import annotations

import torch
from torch import nn
from torch._C._functorch import is_functorch_wrapped_tensor

from metarec.config.text import EncoderConfig
from metarec.encoders.pooling import pool
from metarec.encoders.text import load_text_model, resolve_model, tokenize

# LoRA's query/value targets for an architecture peft has no default for, by module name:
# BERT-like, decoder LLMs, MPNet, DistilBERT.
LORA_TARGETS = (("query", "value"), ("q_proj", "v_proj"), ("q", "v"), ("q_lin", "v_lin"))


class TextTower(nn.Module):
    """Item rows -> pooled text embeddings, computed by a trainable pretrained encoder."""

    def __init__(self, texts: list[str], cfg: EncoderConfig):
        super().__init__()
        tokenizer, encoder = load_text_model(resolve_model(cfg.model), "float32", "cpu")
        # Plain attention: fused SDPA kernels have no double backward (second-order MAML).
        encoder.set_attn_implementation("eager")
        ids, mask = tokenize(tokenizer, texts, cfg.max_length)
        self.register_buffer("tokens", ids, persistent=False)
        self.register_buffer("token_mask", mask, persistent=False)
        if cfg.trainable == "lora":
            encoder = _with_lora(encoder, cfg)
        self.encoder = encoder
        self.pooling, self.normalize = cfg.pooling, cfg.normalize
        self.out_dim = encoder.config.hidden_size
        self.causal = _is_causal(encoder)

    def train(self, mode: bool = True) -> TextTower:
        """The encoder stays in eval mode: no dropout, which per-task ``vmap`` cannot batch and
        which would make the inner loops random."""
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` of any shape -> embeddings ``rows.shape + (out_dim,)``.

        Each distinct row is encoded once, cut to its batch's longest text (a batch of tasks
        reads the same items many times over: TALLRec's samples share 10 of 11 items with
        their neighbours). Exact: an item's embedding does not depend on its batch, and its
        gradient sums over its uses. Under ``vmap`` (per-task inner loops) shapes may not
        depend on values, so the rows are encoded as given there."""
        flat = rows.reshape(-1)
        if is_functorch_wrapped_tensor(flat):
            out = self._encode(self.tokens[flat], self.token_mask[flat])
        else:
            distinct, inverse = torch.unique(flat, return_inverse=True)
            mask = self.token_mask[distinct]
            length = max(int(mask.sum(-1).max()), 1) if len(distinct) else 1
            out = self._encode(self.tokens[distinct, :length], mask[:, :length])[inverse]
        return out.reshape(*rows.shape, self.out_dim)

    def _encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token ids and their mask (right padded) -> pooled, optionally normalised, embeddings."""
        seen = mask[:, None, None, :].bool()  # (B, 1, query 1, key L): real keys
        if self.causal:  # and only those up to the query's own position
            length = mask.shape[-1]
            seen = seen & torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
        # one finfo.min per hidden key (not a sum of them, which is -inf): no NaN in pad rows
        additive = (~seen).float() * torch.finfo(torch.float32).min
        hidden = self.encoder(input_ids=ids, attention_mask=additive).last_hidden_state
        out = pool(hidden, mask, self.pooling)
        if self.normalize:
            out = nn.functional.normalize(out, dim=-1)
        return out


def _is_causal(encoder: nn.Module) -> bool:
    """Whether the encoder's self-attention is causal (a decoder LLM, or BERT as a decoder)."""
    if getattr(encoder.config, "is_decoder", False):
        return True
    return any(getattr(module, "is_causal", False) is True for module in encoder.modules())


def lora_targets(encoder: nn.Module, model: str = "the encoder") -> list[str] | str:
    """The modules LoRA adapts: peft's default for the architecture (``config.model_type``),
    else the first query/value pair of :data:`LORA_TARGETS` the encoder has; a ``ValueError``
    names ``model`` and its architecture when there is neither."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    model_type = getattr(encoder.config, "model_type", None)
    names = {name.rsplit(".", 1)[-1] for name, _ in encoder.named_modules()}
    default = DEFAULTS.get(model_type)
    if isinstance(default, str):  # a regular expression: peft matches it itself
        return default
    if default and all(target in names for target in default):
        return list(default)
    for pair in LORA_TARGETS:
        if all(target in names for target in pair):
            return list(pair)
    tried = ", ".join("/".join(pair) for pair in LORA_TARGETS)
    raise ValueError(
        f"encoder.trainable=lora: {model} ({model_type!r}) has no attention projections to "
        f"adapt: peft has no default for {model_type!r} and the model has none of {tried}"
    )


def _with_lora(encoder: nn.Module, cfg: EncoderConfig) -> nn.Module:
    """LoRA adapters on the attention query/value projections; the pretrained weights frozen."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = lora_targets(encoder, cfg.model)
    config = LoraConfig(
        r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=targets, lora_dropout=0.0
    )
    encoder = inject_adapter_in_model(config, encoder)
    for name, param in encoder.named_parameters():
        param.requires_grad = "lora_" in name
    return encoder
