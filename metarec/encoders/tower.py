"""The text encoder inside the network, for ``encoder.trainable: full | lora``.

With ``encoder.trainable: frozen`` item texts are embedded once and cached (``cache.py``); here
the pretrained encoder is part of the model instead, so meta-training, and the ``finetune`` and
``lora`` baselines' per-task steps, tune it too: every weight (``full``) or LoRA adapters on the
attention query and value projections (``lora``, through ``peft``). Item texts are tokenised
once into buffers; a forward pass encodes the rows it is given. The attention mask is passed
as an additive 4-D tensor, which keeps the encoder usable under ``torch.func.vmap`` (the
per-task inner loops), where Hugging Face's own mask building is not.
"""

from __future__ import annotations

import torch
from torch import nn

from metarec.config.schema import EncoderConfig
from metarec.encoders.text import load_text_model, pool, resolve_model, tokenize

# Attention targets of LoRA in BERT-like encoders (``query``/``value``) and in decoder LLMs.
LORA_TARGETS = ("query", "value", "q_proj", "v_proj")


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

    def train(self, mode: bool = True) -> TextTower:
        """The encoder stays in eval mode: no dropout, which per-task ``vmap`` cannot batch and
        which would make the inner loops random."""
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` of any shape -> embeddings ``rows.shape + (out_dim,)``."""
        ids, mask = self.tokens[rows.reshape(-1)], self.token_mask[rows.reshape(-1)]
        additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        hidden = self.encoder(input_ids=ids, attention_mask=additive).last_hidden_state
        out = pool(hidden, mask, self.pooling)
        if self.normalize:
            out = nn.functional.normalize(out, dim=-1)
        return out.reshape(*rows.shape, self.out_dim)


def _with_lora(encoder: nn.Module, cfg: EncoderConfig) -> nn.Module:
    """LoRA adapters on the attention query/value projections; the pretrained weights frozen."""
    from peft import LoraConfig, inject_adapter_in_model

    names = {name.rsplit(".", 1)[-1] for name, _ in encoder.named_modules()}
    targets = [target for target in LORA_TARGETS if target in names]
    if not targets:
        raise ValueError(
            f"encoder.trainable=lora: {cfg.model} has no attention projection named "
            f"{' or '.join(LORA_TARGETS)}"
        )
    config = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=targets,
                        lora_dropout=0.0)  # fmt: skip
    encoder = inject_adapter_in_model(config, encoder)
    for name, param in encoder.named_parameters():
        param.requires_grad = "lora_" in name
    return encoder
