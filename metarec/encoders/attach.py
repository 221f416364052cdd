"""Item texts (:mod:`metarec.data.itemtext`) embedded onto the dataset's item table.

Here, not in ``metarec.data``: the encoders read the data's tables, so data never imports them.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from metarec.config.schema import EncoderConfig, ItemConfig
from metarec.data.itemtext import item_texts
from metarec.data.schema import RecDataset


def attach_item_text(
    dataset: RecDataset, item: ItemConfig, encoder: EncoderConfig, progress: bool = True
) -> RecDataset:
    """The dataset with its item table carrying text embeddings, as ``item.text`` asks.

    Embeddings come from the cache when every text is there (the model is then not loaded);
    with ``encoder.trainable: full | lora`` the item table gets the encoder itself instead.
    """
    if item.text == "none":
        return dataset
    texts = item_texts(dataset, item.template)
    if encoder.trainable != "frozen":  # the network holds the encoder and tunes it
        from metarec.encoders.tower import TextTower

        items = replace(dataset.items, text_model=partial(TextTower, texts, encoder),
                        text_only=item.text == "replace")  # fmt: skip
        return replace(dataset, items=items)
    from metarec.encoders.cache import embed_texts  # needs the `text` extra

    vectors = embed_texts(texts, encoder, progress=progress)
    items = replace(dataset.items, text=vectors.numpy(), text_only=item.text == "replace")
    return replace(dataset, items=items)
