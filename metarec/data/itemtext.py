"""Item descriptions, rendered from a template over the dataset's fields
(:func:`metarec.encoders.attach.attach_item_text` embeds them)."""

from __future__ import annotations

import re
import string

from metarec.data.schema import RecDataset
from metarec.errors import DataError

# MeLU's marker of a missing field; a field holding it (or nothing) counts as missing anywhere.
MISSING = "N/A"


def is_missing(value: str) -> bool:
    """Whether a raw field is missing: empty or :data:`MISSING`."""
    return not value or value == MISSING


def _template_sentences(template: str) -> list[tuple[str, set[str]]]:
    """Template split into sentences, each with the field names it uses."""
    sentences = re.split(r"(?<=\.)\s+", template.strip())
    return [
        (sentence, {name for _, name, _, _ in string.Formatter().parse(sentence) if name})
        for sentence in sentences
    ]


def render_item_text(fields: dict[str, str], template: str) -> str:
    """Fill ``template`` from an item's raw fields, dropping sentences with missing fields.

    A sentence is a piece of the template ending in ``.`` followed by whitespace (or the end);
    it is left out when any field it names is absent, empty or ``N/A``.
    """
    kept = []
    for sentence, names in _template_sentences(template):
        if any(is_missing(fields.get(name, "")) for name in names):
            continue
        kept.append(sentence.format(**{name: fields[name] for name in names}))
    return " ".join(kept)


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
