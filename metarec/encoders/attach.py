"""Item texts (:mod:`metarec.data.itemtext`) embedded onto the dataset's item table.

Here, not in ``metarec.data``: the encoders read the data's tables, so data never imports them.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial

from metarec.config.text import EncoderConfig, ItemConfig
from metarec.data.itemtext import item_texts
from metarec.data.schema import RecDataset
from metarec.errors import DataError

log = logging.getLogger(__name__)


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

        items = replace(
            dataset.items,
            text_model=partial(TextTower, texts, encoder),
            text_only=item.text == "replace",
        )
        return replace(dataset, items=items)
    from metarec.encoders.cache import embed_texts  # needs the `text` extra

    vectors = embed_texts(texts, encoder, progress=progress)
    items = replace(dataset.items, text=vectors.numpy(), text_only=item.text == "replace")
    return replace(dataset, items=items)


def check_inputs(dataset: RecDataset, item_text: str) -> None:
    """Refuse users or items left with nothing a network reads: no categorical feature and,
    for items, no text (``item.text``); warn when ``item.text=join`` has no feature to join."""
    files = dataset.meta.get("files", {})
    users = files.get("users") or f"{dataset.name}'s user table"
    items = files.get("items") or f"{dataset.name}'s item table"
    if not dataset.users.values:
        raise DataError(
            f"{users}: the users have no feature column (only the id), so a network has no "
            "input for them; add feature columns to it"
        )
    if dataset.items.values:
        return
    if item_text == "none":
        raise DataError(
            f"{items}: the items have no feature column (only the id and text columns) and "
            "item.text=none, so a network has no input for them; add feature columns to it, "
            "or set item.text=join|replace"
        )
    if item_text == "join":
        log.warning(
            f"{items}: item.text=join, but the items have no feature column: they are told "
            "apart by their text alone, as with item.text=replace"
        )
