"""Decoder LLMs as text encoders: tiny random Llama and Qwen2 models built offline from configs,
with byte-level BPE tokenizers trained here that have BOS/EOS but no pad token (as real ones),
run through metarec's own loading with ``pooling: last``, the embedding cache, and
``trainable: lora | full``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from metarec.build import build_learner, prepare_tasks
from metarec.config.load import load_config
from metarec.config.text import EncoderConfig
from metarec.encoders import text
from metarec.encoders.cache import cache_key, cache_path, embed_texts
from metarec.encoders.text import TextEncoder, load_text_model

from .conftest import SMALL

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

TEXTS = [
    "Toy Story (1995). A G-rated Animation, Comedy film directed by Director 3.",
    "space war.",
    "Movie 12 (1973). A PG-rated Documentary film directed by Director 14, starring Actor 36, "
    "Actor 60, Actor 50, Actor 63.",
    "love",
    "A young boy and a young girl in a new world, a ship of the night, the death of a man.",
]
EOS, BOS = "<|endoftext|>", "<|begin_of_text|>"


def make_tiny_decoder(folder: Path, arch: str, seed: int = 0) -> Path:
    """A random 2-layer decoder (``llama`` or ``qwen2``) and a byte-level BPE tokenizer trained
    on ``TEXTS``, saved in ``folder`` like a hub model: BOS/EOS, no pad token, and a saved
    ``padding_side`` of left (for generation, as many LLM tokenizers have it). The Llama-style
    tokenizer puts BOS before each text, the Qwen-style one adds nothing."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=[EOS, BOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tokenizer.train_from_iterator(TEXTS, trainer)
    eos_id, bos_id = tokenizer.token_to_id(EOS), tokenizer.token_to_id(BOS)
    if arch == "llama":
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", special_tokens=[(BOS, bos_id)]
        )
    wrapped = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, padding_side="left"
    )
    assert wrapped.pad_token is None
    wrapped.save_pretrained(folder)
    config_class = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}[arch]
    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2,
             "max_position_embeddings": 256}  # fmt: skip
    config = config_class(vocab_size=tokenizer.get_vocab_size(), bos_token_id=bos_id,
                          eos_token_id=eos_id, tie_word_embeddings=False, **sizes)  # fmt: skip
    torch.manual_seed(seed)
    transformers.AutoModel.from_config(config).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def decoder(request, tmp_path_factory) -> Path:
    return make_tiny_decoder(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    return make_tiny_decoder(tmp_path_factory.mktemp("llama"), "llama")


def encoder_config(folder: Path, **overrides) -> EncoderConfig:
    settings = {"pooling": "last", "device": "cpu", "max_length": 64, **overrides}
    return EncoderConfig(model=str(folder), **settings)


def last_state_alone(model: nn.Module, tokenizer, sentence: str) -> torch.Tensor:
    """The last token's state of one text run by itself: no padding, no mask."""
    input_ids = torch.tensor([tokenizer(sentence, truncation=True, max_length=64)["input_ids"]])
    with torch.no_grad():
        return model(input_ids=input_ids).last_hidden_state[0, -1]


# --- loading and pooling: last ---------------------------------------------------------------


def test_the_tokenizer_without_pad_token_pads_with_eos(llama):
    # (transformers 5 loads a qwen2 folder with its Qwen2Tokenizer, whose pad is EOS already)
    saved = transformers.AutoTokenizer.from_pretrained(llama)
    assert saved.pad_token is None and saved.eos_token == EOS
    tokenizer, model = load_text_model(str(llama), "float32", "cpu")
    assert tokenizer.pad_token == EOS and model.config.model_type == "llama"
    assert tokenizer(TEXTS[1])["input_ids"][0] == tokenizer.bos_token_id


def test_last_pooling_in_a_batch_is_each_text_alone(decoder):
    # one batch of texts of different lengths: padding must change nothing
    encoder = TextEncoder(encoder_config(decoder, normalize=False))
    rows = text.token_ids(encoder.tokenizer, TEXTS, 64)
    assert len({len(row) for row in rows}) == len(TEXTS)
    assert len(list(text.length_batches([len(row) for row in rows], encoder.token_budget))) == 1
    together = encoder.encode(TEXTS, progress=False)
    alone = torch.stack([last_state_alone(encoder.model, encoder.tokenizer, t) for t in TEXTS])
    assert torch.allclose(together, alone, atol=1e-5)
    normalized = TextEncoder(encoder_config(decoder)).encode(TEXTS, progress=False)
    assert torch.allclose(normalized, nn.functional.normalize(alone, dim=-1), atol=1e-5)


def test_bfloat16_on_the_cpu_is_close_to_float32(llama):
    full = TextEncoder(encoder_config(llama)).encode(TEXTS, progress=False)
    half = TextEncoder(encoder_config(llama, dtype="bfloat16")).encode(TEXTS, progress=False)
    assert half.dtype == torch.float32 and half.shape == full.shape
    assert (half * full).sum(dim=1).min() > 0.99


# --- the embedding cache -----------------------------------------------------------------------


def test_the_cache_serves_a_decoder_without_loading_it(llama, tmp_path, monkeypatch):
    cfg = encoder_config(llama)
    first = embed_texts(TEXTS, cfg, cache_dir=tmp_path, progress=False)
    assert torch.allclose(first, TextEncoder(cfg).encode(TEXTS, progress=False), atol=1e-6)

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(text, "load_text_model", refuse)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", refuse)
    again = embed_texts(TEXTS[::-1], cfg, cache_dir=tmp_path, progress=False)
    assert torch.equal(again, first.flip(0))


def test_the_cache_key_follows_pooling_and_model(llama, tmp_path):
    other = make_tiny_decoder(tmp_path / "other", "llama", seed=1)
    keys = {cache_key(encoder_config(llama)), cache_key(encoder_config(llama, pooling="mean")),
            cache_key(encoder_config(other))}  # fmt: skip
    assert len({cache_path(key, tmp_path) for key in keys}) == 3


# --- the encoder in the network: trainable lora | full -----------------------------------------


def tower(folder: Path, trainable: str, **overrides):
    from metarec.encoders.tower import TextTower

    torch.manual_seed(0)
    return TextTower(TEXTS, encoder_config(folder, trainable=trainable, **overrides))


def test_the_tower_pools_each_text_as_the_frozen_encoder_does(decoder):
    # its own 4-D mask must stay causal: a padding-only mask lets tokens see later ones
    net = tower(decoder, "full")
    assert net.token_mask[:, 0].all()  # padded on the right, whatever the tokenizer says
    with torch.no_grad():
        pooled = net(torch.arange(len(TEXTS)))
    frozen = TextEncoder(encoder_config(decoder)).encode(TEXTS, progress=False)
    assert torch.allclose(pooled, frozen, atol=1e-5)


def test_lora_adapts_the_decoder_attention_projections_only(decoder):
    net = tower(decoder, "lora", lora_rank=4)
    trainable = {name: p for name, p in net.named_parameters() if p.requires_grad}
    adapted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trainable}
    assert trainable and adapted == {"q_proj", "v_proj"}
    assert all("lora_" in name for name in trainable)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    rows = torch.arange(len(TEXTS))
    with torch.no_grad():
        pooled_before = net(rows)
    optimiser = torch.optim.SGD(trainable.values(), lr=0.5)
    net.train()
    net(rows).pow(3).sum().backward()
    optimiser.step()
    moved = {name for name, p in net.named_parameters() if not torch.equal(p, before[name])}
    assert moved and moved <= set(trainable)  # B first: A's gradient is 0 while B is 0
    with torch.no_grad():
        assert not torch.allclose(net(rows), pooled_before, atol=1e-6)


def test_full_tunes_every_decoder_weight(llama):
    net = tower(llama, "full")
    params = dict(net.named_parameters())
    assert params and all(p.requires_grad for p in params.values())
    net(torch.arange(len(TEXTS))).pow(3).sum().backward()
    assert all(p.grad is not None for name, p in params.items() if "layers.1" in name)


def test_lora_targets_per_architecture_and_a_clear_error(llama):
    from metarec.encoders.tower import lora_targets

    _, model = load_text_model(str(llama), "float32", "cpu")
    assert lora_targets(model) == ["q_proj", "v_proj"]
    bert_config = transformers.BertConfig(hidden_size=8, num_hidden_layers=1,
                                          num_attention_heads=2, intermediate_size=8)  # fmt: skip
    bert = transformers.BertModel(bert_config)
    assert lora_targets(bert) == ["query", "value"]
    odd = nn.Module()
    odd.config = SimpleNamespace(model_type="made-up")
    odd.mixer = nn.Linear(4, 4)
    with pytest.raises(ValueError, match=r"lora: some/model \('made-up'\).*q_proj/v_proj"):
        lora_targets(odd, "some/model")


def test_meta_training_reaches_the_decoder_lora_weights(llama):
    # MAML's vmapped, second-order inner loop through the decoder's own 4-D mask
    cfg = load_config(None, [*SMALL, "learner.name=maml", "item.text=join", "encoder.pooling=last",
                             f"encoder.model={llama}", "encoder.trainable=lora",
                             "encoder.max_length=32"])  # fmt: skip
    tasks = prepare_tasks(cfg)
    torch.manual_seed(0)
    learner = build_learner(cfg, tasks)
    learner.train()
    loss = learner.training_loss(tasks.train[torch.arange(4)])
    loss.backward()
    params = learner.net.named_parameters()
    lora = {name: p for name, p in params if "text_model" in name and p.requires_grad}
    assert lora and all("lora_" in name for name in lora) and torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lora.values())
    assert all(p.grad.abs().sum() > 0 for name, p in lora.items() if "lora_B" in name)


@pytest.mark.parametrize("trainable", ["full", "lora"])
def test_each_distinct_row_is_encoded_once_with_the_same_values_and_gradients(decoder, trainable):
    # rows repeat across a batch of tasks; the tower encodes each once, cut to the batch's
    # longest text: values and gradients must equal encoding every row as given, full length
    net = tower(decoder, trainable)
    rows = torch.tensor([[4, 0, 4], [1, 4, 0]])  # text 2, the longest, left out
    weights = torch.randn(*rows.shape, net.out_dim)
    params = [p for p in net.parameters() if p.requires_grad]

    def value_and_grads(embed):
        out = embed()
        grads = torch.autograd.grad((out * weights).sum(), params)
        return out.detach(), grads

    flat = rows.reshape(-1)
    reference = value_and_grads(lambda: net._encode(net.tokens[flat], net.token_mask[flat])
                                .reshape(*rows.shape, -1))  # fmt: skip
    distinct = value_and_grads(lambda: net(rows))
    assert net.token_mask[flat].sum(-1).max() < net.token_mask.shape[1]  # the cut is exercised
    assert torch.allclose(distinct[0], reference[0], atol=1e-5)
    for got, want in zip(distinct[1], reference[1], strict=True):
        assert torch.allclose(got, want, atol=1e-5)
