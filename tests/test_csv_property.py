"""Property: any ratings file either loads to exactly the ratings pandas reads from it, or
stops with a DataError naming the file (and the line, where one line is at fault).

Files are good rows with at most one fault (a field replaced by a number outside the scale,
text, a blank, a quote; a field too many; a repeated pair); what pandas makes of each file
decides, independently of metarec's loader, whether it is valid."""

from __future__ import annotations

import csv
import io
import math
import re
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from metarec.config.load import load_config
from metarec.datasets.csv import load_csv
from metarec.errors import DataError

GOOD_ROW = st.tuples(
    st.sampled_from(["u1", "u2", "u3", "u4"]),
    st.sampled_from(["i1", "i2", "i3", "i4", "i5"]),
    st.integers(min_value=1, max_value=5).map(str),
    st.integers(min_value=0, max_value=50).map(str),
)
BAD_FIELD = st.sampled_from(["", " ", "nan", "inf", "abc", "0", "6", "-1", "4.5", "1e0", 'a"b'])


@st.composite
def ratings_files(draw) -> tuple[list[tuple], list]:
    """Rows of distinct (user, item) pairs, then maybe one fault: a field replaced by another
    value (which may be valid or not), a field too many, or a row repeated."""
    rows = draw(st.lists(GOOD_ROW, max_size=12, unique_by=lambda row: row[:2]))
    extras = [None] * len(rows)
    fault = draw(st.sampled_from(["none", "field", "extra", "repeat"]))
    if rows and fault != "none":
        at = draw(st.integers(min_value=0, max_value=len(rows) - 1))
        if fault == "field":
            row = list(rows[at])
            row[draw(st.integers(min_value=0, max_value=3))] = draw(BAD_FIELD)
            rows[at] = tuple(row)
        elif fault == "extra":
            extras[at] = draw(st.sampled_from(["", "x"]))
        else:
            rows.insert(at, rows[at])
            extras.insert(at, None)
    return rows, extras


def render(rows: list[tuple], extras: list) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["user", "item", "rating", "timestamp"])
    for row, extra in zip(rows, extras, strict=True):
        writer.writerow([*row] if extra is None else [*row, extra])
    return out.getvalue()


def pandas_ratings(path: Path) -> dict[tuple[str, str], float] | None:
    """The ratings of a valid file as pandas reads it, or None where the file is not valid: a
    row of another width, an empty id, a rating or time that is not a finite number, a rating
    outside 1..5, a (user, item) rated twice, or no rating at all."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, engine="python")
    except pd.errors.ParserError:
        return None
    if list(table.columns) != ["user", "item", "rating", "timestamp"] or table.empty:
        return None
    ratings = {}
    for user, item, rating, when in table.itertuples(index=False):
        user, item = user.strip(), item.strip()
        try:
            value, time = float(rating), float(when)
        except ValueError:
            return None
        bad = not (user and item) or not math.isfinite(value) or not math.isfinite(time)
        if bad or not 1 <= value <= 5 or (user, item) in ratings:
            return None
        ratings[user, item] = value
    return ratings


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ratings_files())
def test_a_file_loads_as_pandas_reads_it_or_names_its_line(file):
    rows, extras = file
    settings_ = load_config(None, ["data.name=csv", "data.csv.new_items=id"]).data.csv
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ratings.csv"
        path.write_text(render(rows, extras))
        expected = pandas_ratings(path)
        try:
            dataset = load_csv(folder, settings_)
        except DataError as err:
            assert expected is None, f"a valid file was refused: {err}"
            event("refused")
            assert re.match(r"ratings\.csv( line \d+)?:", str(err)), str(err)
            return
    assert expected is not None, "an invalid file was loaded"
    loaded = {
        (user.user, item): rating
        for users in dataset.states.values()
        for user in users
        for item, rating in zip(user.items, user.ratings.tolist(), strict=True)
    }
    assert loaded == expected
    event("loaded")
