"""Tests for the MeLU MovieLens-1M loader, on a tiny fake folder and (optionally) the real copy."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from metarec.config.schema import DataConfig
from metarec.data import melu, melu_states
from metarec.data.files import locate
from metarec.data.itemtext import render_item_text
from metarec.data.schema import STATES, RecDataset
from metarec.data.source import Files
from metarec.datasets import melu_ml1m
from metarec.datasets.melu_ml1m import MeluML1M
from metarec.errors import DataError

# Fabricated rows in MeLU's format; CRLF endings like the real movies_extrainfos.dat.
MOVIES = [
    "1::Toy Tale::1995::G::22 Nov 1995::Animation, Comedy::Jane Doe::W One::Actor A, Actor B"
    "::A toy story.::http://x/1.jpg",
    "2::Space Trip::1996::PG::N/A::Sci-Fi::John Roe, Jane Doe::N/A::Actor C::N/A::http://x/2.jpg",
    "3::Quiet Film::1997::N/A::01 Jan 1997::N/A::N/A::W Two::N/A::Nothing happens.::N/A",
    "4::Crime Time::1998::R::02 Feb 1998::Crime, Drama, Thriller::Max Moe::W Three"
    "::Actor A, Actor D, Actor E::Plot four.::http://x/4.jpg",
    "5::Comedy Hour::1999::UNRATED::03 Mar 1999::Comedy::Jane Doe::W One::Actor B"
    "::Plot five.::http://x/5.jpg",
    "6::Last Movie::2000::PG::04 Apr 2000::Drama, Comedy::N/A::W Two::Actor D, Actor B"
    "::Plot six.::http://x/6.jpg",
]
USERS = [
    "1::F::1::10::48067",
    "2::M::56::16::70072",
    "3::M::25::15::55117",
    "4::F::45::7::02460",
    "5::M::25::20::55455",
]
STATE_DATA = {
    "warm_state": ({"1": ["1", "2", "4"], "2": ["3", "5"]}, {"1": [5, 3, 4], "2": [1, 2]}),
    "user_cold_state": ({"3": ["1", "6"], "4": ["2"]}, {"3": [4, 4], "4": [3]}),
    "item_cold_state": ({"1": ["5", "6"], "2": ["6"]}, {"1": [2, 5], "2": [3]}),
    "user_and_item_cold_state": ({"5": ["5", "6", "3"]}, {"5": [1, 5, 3]}),
}


def load_melu(root):
    """MeLU's files in ``root`` loaded as ``data.name: melu-ml1m`` loads them."""
    return MeluML1M.load(DataConfig(name="melu-ml1m"), Path(root))


def fake_files() -> dict[str, str]:
    """Contents of a complete fake MeLU folder, by uncompressed file name."""
    files = {
        "movies_extrainfos.dat": "\r\n".join(MOVIES) + "\r\n",
        "users.dat": "\n".join(USERS) + "\n",
    }
    for state, (x, y) in STATE_DATA.items():
        files[f"{state}.json"] = json.dumps(x)
        files[f"{state}_y.json"] = json.dumps(y)
    return files


def write_files(root: Path, files: dict[str, str], gz: bool) -> Path:
    """Write ``files`` into ``root``, gzipped (as ``NAME.gz``) or plain."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        if gz:
            with gzip.open(root / f"{name}.gz", "wt", encoding="utf-8", newline="") as fh:
                fh.write(text)
        else:
            (root / name).write_text(text, encoding="utf-8", newline="")
    return root


class FakeMelu:
    """A fake MeLU folder: edit ``files`` then call ``write()``."""

    def __init__(self, root: Path, gz: bool) -> None:
        self.root, self.gz, self.files = root, gz, fake_files()

    def name(self, name: str) -> str:
        """The file name as it lands on disk."""
        return f"{name}.gz" if self.gz else name

    def write(self) -> Path:
        return write_files(self.root, self.files, self.gz)

    def set_json(self, name: str, data: object) -> None:
        self.files[name] = json.dumps(data)

    def json(self, name: str) -> dict:
        return json.loads(self.files[name])


@pytest.fixture(params=[False, True], ids=["plain", "gz"])
def fake(request: pytest.FixtureRequest, tmp_path: Path) -> FakeMelu:
    """Unwritten fake folder, once plain and once gzipped."""
    return FakeMelu(tmp_path / "melu", gz=request.param)


@pytest.fixture
def plain(tmp_path: Path) -> FakeMelu:
    """Unwritten plain fake folder, for tests where compression does not matter."""
    return FakeMelu(tmp_path / "melu", gz=False)


def expect_error(fake: FakeMelu, *parts: str) -> None:
    """Write the folder and check load_melu fails with a message holding ``parts`` in order."""
    root = fake.write()
    pattern = ".*".join(re.escape(part) for part in parts)
    with pytest.raises(DataError, match=pattern):
        load_melu(root)


# --- happy path ------------------------------------------------------------------------------


def test_counts_and_order(fake: FakeMelu) -> None:
    data = load_melu(fake.write())
    assert isinstance(data, RecDataset)
    assert data.name == "melu-ml1m"
    assert data.rating_scale == (1.0, 5.0)
    assert data.items.ids == ["1", "2", "3", "4", "5", "6"]
    assert data.users.ids == ["1", "2", "3", "4", "5"]
    assert list(data.states) == list(STATES)
    for state, (x, y) in STATE_DATA.items():
        entries = data.states[state]
        assert [e.user for e in entries] == list(x)
        for entry in entries:
            assert entry.items == x[entry.user]
            assert entry.ratings.dtype == np.float32
            np.testing.assert_array_equal(entry.ratings, np.array(y[entry.user], np.float32))
    assert data.meta["merged_repeats"] == []
    assert data.meta["files"]["users.dat"] == fake.name("users.dat")


def test_item_features(fake: FakeMelu) -> None:
    items = load_melu(fake.write()).items
    assert items.vocab["rate"] == ["G", "PG", "R", "UNRATED"]
    assert items.vocab["genre"] == ["Animation", "Comedy", "Sci-Fi", "Crime", "Drama", "Thriller"]
    assert items.vocab["director"] == ["Jane Doe", "John Roe", "Max Moe"]
    assert items.vocab["actors"] == ["Actor A", "Actor B", "Actor C", "Actor D", "Actor E"]
    expected = {
        "rate": [[1], [2], [0], [3], [4], [2]],
        "genre": [[1, 2, 0], [3, 0, 0], [0, 0, 0], [4, 5, 6], [2, 0, 0], [5, 2, 0]],
        "director": [[1, 0], [2, 1], [0, 0], [3, 0], [1, 0], [0, 0]],
        "actors": [[1, 2, 0], [3, 0, 0], [0, 0, 0], [1, 4, 5], [2, 0, 0], [4, 2, 0]],
    }
    assert set(items.values) == set(expected)
    for name, rows in expected.items():
        assert items.values[name].dtype == np.int64
        np.testing.assert_array_equal(items.values[name], np.array(rows), err_msg=name)
    assert items.vocab_sizes()["genre"] == 7


def test_user_features(fake: FakeMelu) -> None:
    users = load_melu(fake.write()).users
    assert users.vocab == {
        "gender": ["F", "M"],
        "age": ["1", "56", "25", "45"],
        "occupation": ["10", "16", "15", "7", "20"],
        "zip": ["48067", "70072", "55117", "02460", "55455"],
    }
    for name in ("gender", "age", "occupation", "zip"):
        assert users.values[name].shape == (5, 1)
        assert users.values[name].dtype == np.int64
    np.testing.assert_array_equal(users.values["age"][:, 0], [1, 2, 3, 4, 3])
    assert users.row_of["4"] == 3


def test_item_text_and_fields(fake: FakeMelu) -> None:
    data = load_melu(fake.write())
    assert data.item_text["1"] == (
        "Toy Tale (1995). Genre: Animation, Comedy. Director: Jane Doe. "
        "Starring: Actor A, Actor B. A toy story."
    )
    assert data.item_text["2"] == (
        "Space Trip (1996). Genre: Sci-Fi. Director: John Roe, Jane Doe. Starring: Actor C."
    )
    assert data.item_text["3"] == "Quiet Film (1997). Nothing happens."
    fields = data.meta["item_fields"]
    assert set(fields) == set(data.items.ids)
    assert fields["2"] == {
        "title": "Space Trip",
        "year": "1996",
        "rate": "PG",
        "released": "N/A",
        "genre": "Sci-Fi",
        "director": "John Roe, Jane Doe",
        "writer": "N/A",
        "actors": "Actor C",
        "plot": "N/A",
    }


def test_render_item_text_custom_template() -> None:
    fields = {"title": "T", "year": "2001", "writer": "N/A", "plot": "P."}
    assert render_item_text(fields, "{title}, {year}. Written by {writer}. {plot}") == "T, 2001. P."


def test_plain_file_preferred_over_gz(plain: FakeMelu) -> None:
    root = plain.write()
    stale = fake_files()
    stale["users.dat"] = "garbage line\n"
    write_files(root, {"users.dat": stale["users.dat"]}, gz=True)
    assert len(load_melu(root).users) == 5


def test_blank_trailing_lines_ignored(plain: FakeMelu) -> None:
    plain.files["users.dat"] += "\n\n"
    assert len(load_melu(plain.write()).users) == 5


def test_merged_movie_repeat_is_kept(plain: FakeMelu, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-in for MeLU's 860 -> 811 merge: movie 4 plays the kept id.
    monkeypatch.setattr(melu_states, "MELU_MERGED_MOVIES", {"4": "999"})
    plain.set_json("warm_state.json", {"1": ["1", "4", "2", "4"], "2": ["3", "5"]})
    plain.set_json("warm_state_y.json", {"1": [5, 3, 4, 2], "2": [1, 2]})
    data = load_melu(plain.write())
    assert data.states["warm_state"][0].items == ["1", "4", "2", "4"]
    assert data.meta["merged_repeats"] == [("warm_state", "1", "4")]


# --- bad input -------------------------------------------------------------------------------


def test_missing_file(fake: FakeMelu) -> None:
    del fake.files["users.dat"]
    expect_error(fake, "users.dat", "users.dat.gz", "metarec data download melu-ml1m")


def test_missing_files_listed_together(fake: FakeMelu) -> None:
    del fake.files["item_cold_state_y.json"]
    del fake.files["movies_extrainfos.dat"]
    expect_error(fake, "item_cold_state_y.json, movies_extrainfos.dat", "data.root")


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not found.*metarec data download melu-ml1m"):
        load_melu(tmp_path / "nowhere")


def test_malformed_extrainfos_line(fake: FakeMelu) -> None:
    fake.files["movies_extrainfos.dat"] = fake.files["movies_extrainfos.dat"].replace(
        "::01 Jan 1997", "", 1
    )
    expect_error(fake, fake.name("movies_extrainfos.dat"), "line 3", "found 10", "3::Quiet")


def test_malformed_users_line(fake: FakeMelu) -> None:
    fake.files["users.dat"] = fake.files["users.dat"].replace("2::M::56::16::70072", "2::M::56")
    expect_error(fake, fake.name("users.dat"), "line 2", "found 3", "2::M::56")


def test_duplicate_movie_id(plain: FakeMelu) -> None:
    plain.files["movies_extrainfos.dat"] += MOVIES[1] + "\r\n"
    expect_error(plain, "movies_extrainfos.dat", "line 7", "duplicate movie_id 2", "line 2")


def test_duplicate_user_id(plain: FakeMelu) -> None:
    plain.files["users.dat"] += "3::F::18::1::12345\n"
    expect_error(plain, "users.dat", "line 6", "duplicate user_id 3", "line 3")


def test_bad_utf8(plain: FakeMelu) -> None:
    root = plain.write()
    (root / "movies_extrainfos.dat").write_bytes(b"1::T\xff\xfe::1995\n")
    with pytest.raises(DataError, match=r"movies_extrainfos\.dat.*UTF-8"):
        load_melu(root)


def test_corrupt_gzip(tmp_path: Path) -> None:
    root = FakeMelu(tmp_path / "melu", gz=True).write()
    (root / "warm_state.json.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=re.escape("warm_state.json.gz")):
        load_melu(root)


def test_invalid_json(fake: FakeMelu) -> None:
    fake.files["item_cold_state.json"] = '{"1": ["5", "6"'
    expect_error(fake, fake.name("item_cold_state.json"), "not valid JSON", "line 1")


def test_json_not_a_dict(fake: FakeMelu) -> None:
    fake.set_json("user_cold_state.json", [["1", "6"]])
    expect_error(fake, fake.name("user_cold_state.json"), "expected a JSON object", "list")


def test_json_value_not_a_list(fake: FakeMelu) -> None:
    fake.set_json("user_cold_state_y.json", {"3": [4, 4], "4": 3})
    expect_error(fake, fake.name("user_cold_state_y.json"), "user 4", "expected a list")


def test_unknown_movie(fake: FakeMelu) -> None:
    fake.set_json("warm_state.json", {"1": ["1", "99", "4"], "2": ["3", "5"]})
    expect_error(fake, fake.name("warm_state.json"), "user 1", "unknown movie 99")


def test_movie_id_not_a_string(plain: FakeMelu) -> None:
    plain.set_json("warm_state.json", {"1": ["1", 2, "4"], "2": ["3", "5"]})
    expect_error(plain, "warm_state.json", "user 1", "movie id 2 is not a string")


def test_unknown_user(fake: FakeMelu) -> None:
    fake.set_json("user_cold_state.json", {"3": ["1", "6"], "77": ["2"]})
    fake.set_json("user_cold_state_y.json", {"3": [4, 4], "77": [3]})
    expect_error(fake, fake.name("user_cold_state.json"), "unknown user 77")


def test_y_length_mismatch(fake: FakeMelu) -> None:
    fake.set_json("warm_state_y.json", {"1": [5, 3], "2": [1, 2]})
    expect_error(
        fake,
        fake.name("warm_state.json"),
        fake.name("warm_state_y.json"),
        "user 1",
        "3 movies",
        "2 ratings",
    )


def test_user_missing_from_y(fake: FakeMelu) -> None:
    fake.set_json("item_cold_state_y.json", {"1": [2, 5]})
    x_name, y_name = fake.name("item_cold_state.json"), fake.name("item_cold_state_y.json")
    expect_error(fake, "user 2", x_name, "not in", y_name)


def test_user_missing_from_x(plain: FakeMelu) -> None:
    plain.set_json("item_cold_state_y.json", {"1": [2, 5], "2": [3], "3": [4]})
    expect_error(plain, "user 3", "item_cold_state_y.json", "not in item_cold_state.json")


@pytest.mark.parametrize(
    "bad",
    [6, 0, 0.5, "4", None, True, [4], float("inf"), 10**400],
    ids=["6", "0", "0.5", "str", "null", "bool", "list", "inf", "huge-int"],
)
def test_bad_rating(fake: FakeMelu, bad: object) -> None:
    fake.set_json("user_and_item_cold_state_y.json", {"5": [1, bad, 3]})
    expect_error(
        fake,
        fake.name("user_and_item_cold_state_y.json"),
        "user 5",
        "rating #2",
        f"is {bad!r}",
    )


def test_nan_rating(plain: FakeMelu) -> None:
    plain.files["warm_state_y.json"] = '{"1": [5, NaN, 4], "2": [1, 2]}'
    expect_error(plain, "warm_state_y.json", "user 1", "rating #2 is nan")


def test_float_rating_in_range_accepted(plain: FakeMelu) -> None:
    plain.set_json("warm_state_y.json", {"1": [5, 3.5, 4], "2": [1, 2]})
    ratings = load_melu(plain.write()).states["warm_state"][0].ratings
    np.testing.assert_array_equal(ratings, np.array([5, 3.5, 4], np.float32))


def test_repeated_pair_within_user(fake: FakeMelu) -> None:
    fake.set_json("warm_state.json", {"1": ["1", "2", "1"], "2": ["3", "5"]})
    expect_error(fake, fake.name("warm_state.json"), "user 1", "movie 1 appears 2 times")


def test_duplicate_pair_across_states(fake: FakeMelu) -> None:
    # User 1 rates movie 2 in warm_state already.
    fake.set_json("item_cold_state.json", {"1": ["5", "2"], "2": ["6"]})
    expect_error(
        fake, "user 1", "item 2", fake.name("warm_state.json"), fake.name("item_cold_state.json")
    )


# --- verify / download -----------------------------------------------------------------------


def fake_digests() -> dict[str, str]:
    return {
        name: hashlib.sha256(text.encode("utf-8")).hexdigest()
        for name, text in fake_files().items()
    }


def test_verify_detects_modified_file(fake: FakeMelu, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MeluML1M, "files", Files(fake_digests(), "sha256", melu_ml1m.MELU_BASE_URL))
    root = fake.write()
    report = MeluML1M.verify(root)
    assert report == dict.fromkeys(fake_digests(), "ok")
    fake.files["users.dat"] = fake.files["users.dat"].replace("48067", "48068")
    fake.write()
    report = MeluML1M.verify(root)
    assert report["users.dat"] == "checksum mismatch"
    assert list(report.values()).count("ok") == len(report) - 1


def test_verify_missing_file(plain: FakeMelu, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MeluML1M, "files", Files(fake_digests(), "sha256", melu_ml1m.MELU_BASE_URL))
    root = plain.write()
    (root / "warm_state_y.json").unlink()
    assert MeluML1M.verify(root)["warm_state_y.json"] == "missing"


def test_download_skips_verified_files(fake: FakeMelu, monkeypatch: pytest.MonkeyPatch) -> None:
    pooch = pytest.importorskip("pooch")
    monkeypatch.setattr(MeluML1M, "files", Files(fake_digests(), "sha256", melu_ml1m.MELU_BASE_URL))
    del fake.files["users.dat"]
    fake.files["warm_state.json"] = "{}"  # present but wrong digest: fetched again
    root = fake.write()
    calls = []
    monkeypatch.setattr(pooch, "retrieve", lambda **kwargs: calls.append(kwargs))
    assert MeluML1M.download(root) == root
    assert sorted(call["fname"] for call in calls) == ["users.dat", "warm_state.json"]
    users_call = next(call for call in calls if call["fname"] == "users.dat")
    assert users_call["url"] == melu_ml1m.MELU_BASE_URL + "users.dat"
    assert users_call["known_hash"] == "sha256:" + fake_digests()["users.dat"]
    assert Path(users_call["path"]) == root


# --- real data -------------------------------------------------------------------------------


def real_melu_dir() -> Path:
    """``$METAREC_MELU_DIR``, else the shared copy next to the repository."""
    env = os.environ.get("METAREC_MELU_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "melu-ml1m"


@pytest.mark.integration
def test_real_melu() -> None:
    root = real_melu_dir()
    if locate(root, "warm_state.json") is None:
        pytest.skip(f"real MeLU data not found at {root} (set METAREC_MELU_DIR to its folder)")
    start = time.perf_counter()
    data = load_melu(root)
    elapsed = time.perf_counter() - start
    assert len(data.items) == 3881
    assert len(data.users) == 6040
    expected = {
        "warm_state": (4832, 640448),
        "user_cold_state": (1208, 163702),
        "item_cold_state": (4769, 157456),
        "user_and_item_cold_state": (1197, 38603),
    }
    for state, (n_users, n_ratings) in expected.items():
        entries = data.states[state]
        assert len(entries) == n_users, state
        assert sum(len(entry.items) for entry in entries) == n_ratings, state
    assert data.meta["merged_repeats"] == [
        ("warm_state", "4169", "811"),
        ("warm_state", "2860", "811"),
        ("warm_state", "1267", "811"),
        ("warm_state", "195", "1741"),
    ]
    assert data.item_text["1"].startswith("Toy Story (1995). Genre: Animation, Adventure, Comedy.")
    report = MeluML1M.verify(root)
    assert len(report) == 10
    assert set(report.values()) == {"ok"}, report
    assert elapsed < 30, f"load_melu took {elapsed:.1f}s"


# --- feature values outside MeLU's vocabularies ----------------------------------------------


def fake_vocab_files() -> dict[str, str]:
    """MeLU-style vocabulary files (CRLF, like the real ones) listing every fake value."""
    values = {
        "m_gender.txt": ["M", "F"],
        "m_age.txt": ["1", "18", "25", "35", "45", "50", "56"],
        "m_occupation.txt": [str(code) for code in range(21)],
        "m_zipcode.txt": ["48067", "70072", "55117", "02460", "55455"],
        "m_rate.txt": ["PG-13", "UNRATED", "NC-17", "PG", "G", "R"],
        "m_genre.txt": ["Animation", "Comedy", "nan", "Sci-Fi", "Crime", "Drama", "Thriller"],
        "m_director.txt": ["nan", "Jane Doe", "John Roe", "Max Moe"],
        "m_actor.txt": ["Actor A", "Actor B", "Actor C", "Actor D", "Actor E"],
    }
    return {name: "\r\n".join(lines) for name, lines in values.items()}


@pytest.fixture
def with_vocab(fake: FakeMelu) -> FakeMelu:
    """The fake folder (plain and gzipped) with MeLU's vocabulary files."""
    fake.files.update(fake_vocab_files())
    return fake


def test_values_inside_the_vocabularies_load(with_vocab: FakeMelu) -> None:
    # MeLU looks up a zip code by its first five characters, a director without its note.
    with_vocab.files["users.dat"] = with_vocab.files["users.dat"].replace("48067", "48067-1234")
    extrainfos = with_vocab.files["movies_extrainfos.dat"]
    with_vocab.files["movies_extrainfos.dat"] = extrainfos.replace(
        "Max Moe", "Max Moe(co-director)"
    )
    data = load_melu(with_vocab.write())
    assert data.users.vocab["zip"][0] == "48067-1234"
    assert "Max Moe(co-director)" in data.items.vocab["director"]


@pytest.mark.parametrize(
    "field, line, bad",
    [
        ("gender", "2::X::56::16::70072", "X"),
        ("age", "2::M::abc::16::70072", "abc"),
        ("occupation", "2::M::56::99::70072", "99"),
        ("zip", "2::M::56::16::99999", "99999"),
    ],
)
def test_user_value_outside_its_vocabulary(with_vocab, field, line, bad) -> None:
    users = with_vocab.files["users.dat"]
    with_vocab.files["users.dat"] = users.replace("2::M::56::16::70072", line)
    vocab_file = melu.VOCAB_FILES[field]
    expect_error(with_vocab, f"{with_vocab.name('users.dat')} line 2: {field} '{bad}'",
                 f"not in {vocab_file}")  # fmt: skip


@pytest.mark.parametrize(
    "field, old, new, bad",
    [
        ("rate", "::PG::N/A::Sci-Fi", "::PG-14::N/A::Sci-Fi", "PG-14"),
        ("genre", "::Sci-Fi::", "::Sci-Fi, Sci-Fy::", "Sci-Fy"),
        ("director", "::John Roe, Jane Doe::", "::John Roe, Jane Do::", "Jane Do"),
        ("actors", "::Actor C::", "::Actor C, Actor Z::", "Actor Z"),
    ],
)
def test_item_value_outside_its_vocabulary(with_vocab, field, old, new, bad) -> None:
    extrainfos = with_vocab.files["movies_extrainfos.dat"]
    assert extrainfos.count(old) == 1
    with_vocab.files["movies_extrainfos.dat"] = extrainfos.replace(old, new)
    name = with_vocab.name("movies_extrainfos.dat")
    expect_error(with_vocab, f"{name} line 2: {field} '{bad}'", f"not in {melu.VOCAB_FILES[field]}")


def test_director_note_is_named_as_read(plain: FakeMelu) -> None:
    plain.files.update(fake_vocab_files())
    extrainfos = plain.files["movies_extrainfos.dat"]
    plain.files["movies_extrainfos.dat"] = extrainfos.replace("Max Moe", "Max Mo (co-director)")
    expect_error(plain, "movies_extrainfos.dat line 4: director 'Max Mo (co-director)'",
                 "(read as 'Max Mo')", "not in m_director.txt")  # fmt: skip


def test_without_vocabulary_files_closed_sets_are_still_checked(fake: FakeMelu) -> None:
    # The case: an age of "abc" used to train silently.
    fake.files["users.dat"] = fake.files["users.dat"].replace("3::M::25::", "3::M::abc::")
    expect_error(fake, f"{fake.name('users.dat')} line 3: age 'abc' is not one of 1, 18, 25")


def test_without_vocabulary_files_rate_is_checked(plain: FakeMelu) -> None:
    extrainfos = plain.files["movies_extrainfos.dat"]
    plain.files["movies_extrainfos.dat"] = extrainfos.replace("::UNRATED::", "::Unrated::")
    expect_error(plain, "movies_extrainfos.dat line 5: rate 'Unrated' is not one of G, PG")


def test_without_vocabulary_files_open_sets_are_not_checked(plain: FakeMelu) -> None:
    plain.files["users.dat"] = plain.files["users.dat"].replace("48067", "00000")
    extrainfos = plain.files["movies_extrainfos.dat"]
    plain.files["movies_extrainfos.dat"] = extrainfos.replace("Actor E", "Actor Z")
    data = load_melu(plain.write())
    assert "00000" in data.users.vocab["zip"] and "Actor Z" in data.items.vocab["actors"]


# --- verify: missing, unreadable, mismatching; download: offline ----------------------------


def test_verify_tells_missing_from_corrupt(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(MeluML1M, "files", Files(fake_digests(), "sha256", melu_ml1m.MELU_BASE_URL))
    fake = FakeMelu(tmp_path / "melu", gz=True)
    fake.files["users.dat"] = fake.files["users.dat"].replace("48067", "48068")
    root = fake.write()
    (root / "warm_state_y.json.gz").unlink()
    (root / "item_cold_state.json.gz").write_bytes(b"not gzip at all")
    report = MeluML1M.verify(root)
    assert list(report) == list(fake_digests())
    assert report["warm_state_y.json"] == "missing"
    assert report["item_cold_state.json"] == "unreadable"
    assert report["users.dat"] == "checksum mismatch"
    assert list(report.values()).count("ok") == len(report) - 3


def test_verify_wrong_root_reports_every_file_missing(tmp_path: Path) -> None:
    assert MeluML1M.verify(tmp_path / "wrong") == dict.fromkeys(melu_ml1m.MELU_SHA256, "missing")


@pytest.mark.parametrize("error", ["requests", "urllib", "oserror", "hash"])
def test_download_offline_is_one_line_data_error(tmp_path, monkeypatch, error) -> None:
    pooch = pytest.importorskip("pooch")
    import urllib.error

    requests = pytest.importorskip("requests")
    raised = {
        "requests": requests.exceptions.ConnectionError("Max retries exceeded with url"),
        "urllib": urllib.error.URLError("[Errno -2] Name or service not known"),
        "oserror": OSError("Failed to establish a new connection:\n[Errno -3] no network"),
        "hash": ValueError("SHA256 hash of downloaded file (x) does not match\nthe known hash"),
    }[error]

    def retrieve(**kwargs):
        raise raised

    monkeypatch.setattr(pooch, "retrieve", retrieve)
    with pytest.raises(DataError) as caught:
        MeluML1M.download(tmp_path / "melu")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"download of {melu_ml1m.MELU_BASE_URL}")
    assert "failed" in message and "--root" in message and "data.root" in message
    assert caught.value.__cause__ is raised


def test_download_lets_ctrl_c_through(tmp_path: Path, monkeypatch) -> None:
    pooch = pytest.importorskip("pooch")

    def retrieve(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pooch, "retrieve", retrieve)
    with pytest.raises(KeyboardInterrupt):
        MeluML1M.download(tmp_path / "melu")
