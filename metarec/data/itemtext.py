"""Item descriptions, rendered from a template over the dataset's fields
(:func:`metarec.encoders.attach.attach_item_text` embeds them)."""

from __future__ import annotations

import string

from metarec.data.melu import render_item_text
from metarec.data.schema import RecDataset
from metarec.errors import DataError


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
