"""Item descriptions: rendered from a template over the dataset's fields, then embedded."""

from __future__ import annotations

import string
from dataclasses import replace
from functools import partial

from metarec.config.schema import EncoderConfig, ItemConfig
from metarec.data.melu import render_item_text
from metarec.data.schema import DataError, RecDataset


def item_texts(dataset: RecDataset, template: str | None = None) -> list[str]:
    """Each item's text, in item-row order: the dataset's own, or ``template`` rendered from the
    raw fields (``dataset.meta["item_fields"]``), sentences with a missing field left out."""
    if template is None:
        return [dataset.item_text.get(item, "") for item in dataset.items.ids]
    fields = dataset.meta.get("item_fields")
    if not fields:
        raise DataError(f"item.template: dataset '{dataset.name}' has no raw item fields")
    try:
        named = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as err:
        raise DataError(f"item.template '{template}' is not a valid template: {err}") from err
    known = set().union(*(row.keys() for row in fields.values()))
    if named - known:
        raise DataError(
            f"item.template names unknown field(s) {sorted(named - known)}; "
            f"{dataset.name} has {sorted(known)}"
        )
    return [render_item_text(fields.get(item, {}), template) for item in dataset.items.ids]


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
    if encoder.trainable != "none":  # the network holds the encoder and tunes it
        from metarec.encoders.tower import TextTower

        items = replace(dataset.items, text_model=partial(TextTower, texts, encoder),
                        text_only=item.text == "replace")  # fmt: skip
        return replace(dataset, items=items)
    from metarec.encoders.cache import embed_texts  # needs the `text` extra

    vectors = embed_texts(texts, encoder, progress=progress)
    items = replace(dataset.items, text=vectors.numpy(), text_only=item.text == "replace")
    return replace(dataset, items=items)
