"""The IMDB loader on a tiny generated aclImdb folder: vocabulary, the three vectorizers, n-grams."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sweeplab.data import DataError, imdb, load_data

COMMON = "The movie movie movie, film<br />film"
TRAIN = {
    "pos": [f"{COMMON} GREAT great uniqpos{i}" for i in range(6)],
    "neg": [f"{COMMON} awful uniqneg{i}<br /><br />" for i in range(6)],
}
TEST = {  # read neg first, then pos, each folder in file-name order
    "neg": ["awful", f"{COMMON} awful zzzunseen", "awful awful film", "zzzunseen movie"],
    "pos": ["great", f"{COMMON} great zzzunseen", "great great film", "film zzzunseen"],
}
TEST_TEXTS = TEST["neg"] + TEST["pos"]


def make_acl(root: Path) -> Path:
    acl = root / "aclImdb"
    for split, reviews in (("train", TRAIN), ("test", TEST)):
        for label, texts in reviews.items():
            (acl / split / label).mkdir(parents=True)
            for i, text in enumerate(texts):
                (acl / split / label / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(text)
    (acl / "train" / "unsup").mkdir()  # present in the real archive, unlabeled: must be ignored
    (acl / "train" / "unsup" / "0_0.txt").write_text("unlabeled unsupword")
    return acl


def cfg(root, **overrides) -> dict:
    return {
        "_target_": "sweeplab.data.imdb.load",
        "name": "imdb",
        "root": str(root),
        "download": False,
        "val_size": 4,
        "split_seed": 0,
        "scale": "none",
        "vectorize": "multi_hot",
        "num_words": 50,
        "max_len": 16,
        "char_ngrams": [],
        "ngram_buckets": 1000,
        "lowercase": True,
        **overrides,
    }


@pytest.fixture
def acl(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SWEEPLAB_DATA_DIR", raising=False)
    return make_acl(tmp_path / "data")


def ids_of(text: str, vocab: list[str]) -> list[int]:
    index = {w: i for i, w in enumerate(vocab)}
    return [index.get(w, 1) for w in imdb.tokenize(text)]


def test_tokenize():
    assert imdb.tokenize("It's GREAT<br />film, 10/10!") == ["it's", "great", "film", "10", "10"]
    assert imdb.tokenize("It's GREAT", lowercase=False) == ["It's", "GREAT"]


def test_multi_hot_columns_follow_vocabulary_ranks(acl):
    b = load_data(cfg(acl.parent))
    assert (len(b.x_train), len(b.x_val), len(b.x_test)) == (8, 4, 8)
    assert b.kind == "vector" and b.x_train.shape == (8, 50) and b.x_train.dtype == torch.float32
    assert b.class_names == ["negative", "positive"] and b.num_classes == 2
    assert b.vocab[:4] == ["<pad>", "<unk>", "movie", "film"]  # 3 and 2 times in every review
    uniq = [w for w in b.vocab if w.startswith("uniq")]
    assert uniq == sorted(uniq) and b.vocab[-len(uniq) :] == uniq  # seen once each: ties alphabetical
    assert b.y_test.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    col = {w: i for i, w in enumerate(b.vocab)}
    for x, y in ((b.x_train, b.y_train), (b.x_val, b.y_val)):
        assert set(x.unique().tolist()) == {0.0, 1.0}
        assert x[:, 0].sum() == 0 and torch.all(x[:, col["movie"]] == 1) and torch.all(x[:, col["the"]] == 1)
        assert torch.equal(x[:, col["great"]], y.float()) and torch.equal(x[:, col["awful"]], 1 - y.float())
    # The vocabulary comes from the 8 training reviews only: their unique words are in it and
    # the 4 validation reviews' unique words are out-of-vocabulary (column 1).
    assert sum(w.startswith("uniq") for w in b.vocab) == 8
    assert torch.all(b.x_train[:, 1] == 0) and torch.all(b.x_val[:, 1] == 1)
    assert "zzzunseen" not in b.vocab and "unsupword" not in b.vocab
    assert b.x_test[:, 1].tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    for row, text in zip(b.x_test, TEST_TEXTS, strict=True):
        assert set(row.nonzero().flatten().tolist()) == set(ids_of(text, b.vocab))


def test_num_words_caps_columns_and_vocabulary(acl):
    b = load_data(cfg(acl.parent, num_words=5))
    assert b.x_train.shape == (8, 5) and len(b.vocab) == 5 and b.vocab[2:4] == ["movie", "film"]
    assert torch.all(b.x_train[:, 1] == 1)  # everything past the 3 kept words is out-of-vocabulary


def test_tfidf_rows_are_unit_norm_with_idf_from_training(acl):
    b = load_data(cfg(acl.parent, vectorize="tfidf"))
    assert torch.allclose(b.x_train.norm(dim=1), torch.ones(8)) and torch.allclose(
        b.x_test.norm(dim=1), torch.ones(8)
    )
    # Expected values by hand: scikit-learn's smooth idf, with document frequencies of the
    # training split (the multi-hot rows of the same split), applied to raw test counts.
    df = load_data(cfg(acl.parent)).x_train.sum(dim=0).double()
    idf = torch.log((1 + 8) / (1 + df)) + 1
    for row, text in zip(b.x_test, TEST_TEXTS, strict=True):
        counts = torch.bincount(torch.tensor(ids_of(text, b.vocab)), minlength=50).double()
        expected = counts * idf
        assert torch.allclose(row.double(), expected / expected.norm(), atol=1e-6)


def test_sequence_pads_truncates_and_marks_oov(acl):
    b = load_data(cfg(acl.parent, vectorize="sequence", max_len=6))
    assert b.kind == "tokens" and b.x_train.dtype == torch.int64 and b.x_test.shape == (8, 6)
    assert b.num_embeddings == 50 and b.vocab[0] == "<pad>" and b.vocab[1] == "<unk>"
    for row, text in zip(b.x_test, TEST_TEXTS, strict=True):
        ids = ids_of(text, b.vocab)[:6]
        assert row.tolist() == ids + [0] * (6 - len(ids))
    assert b.x_test[0].tolist() == [b.vocab.index("awful"), 0, 0, 0, 0, 0]
    assert b.x_test[1].tolist()[:2] == [b.vocab.index("the"), b.vocab.index("movie")]  # the first 6 kept
    assert b.x_test[3].tolist() == [1, b.vocab.index("movie"), 0, 0, 0, 0]  # "zzzunseen movie"


def test_char_ngrams_follow_the_words(acl):
    b = load_data(cfg(acl.parent, vectorize="sequence", max_len=40, char_ngrams=[3, 5]))
    assert b.num_embeddings == 50 + 1000
    assert int(b.x_train.max()) < 1050 and int(b.x_test.min()) >= 0
    awful = imdb.char_ngram_ids("awful", 3, 5, 50, 1000)
    assert len(awful) == 5 + 4 + 3  # "<awful>" has 7 characters
    assert all(50 <= i < 1050 for i in awful)
    assert b.x_test[0].tolist() == [b.vocab.index("awful"), *awful] + [0] * (40 - 1 - len(awful))
    # The same out-of-vocabulary word gets the same subword ids in different reviews.
    unseen = imdb.char_ngram_ids("zzzunseen", 3, 5, 50, 1000)
    movie, film = (imdb.char_ngram_ids(w, 3, 5, 50, 1000) for w in ("movie", "film"))
    assert b.x_test[3].tolist() == [1, b.vocab.index("movie"), *unseen, *movie, 0, 0]  # "zzzunseen movie"
    assert b.x_test[7].tolist()[: 2 + len(film) + len(unseen)] == [b.vocab.index("film"), 1, *film, *unseen]


def test_fnv1a_matches_reference_values():
    assert imdb.fnv1a_32(b"") == 0x811C9DC5
    assert imdb.fnv1a_32(b"a") == 0xE40C292C
    assert imdb.fnv1a_32(b"foobar") == 0xBF9CF968


def test_split_is_seeded_and_fingerprint_tracks_settings(acl):
    a, again, other = (load_data(cfg(acl.parent, split_seed=s)) for s in (0, 0, 1))
    assert torch.equal(a.x_val, again.x_val) and a.fingerprint == again.fingerprint
    assert a.fingerprint != other.fingerprint and torch.equal(a.y_test, other.y_test)
    assert load_data(cfg(acl.parent, vectorize="tfidf")).fingerprint != a.fingerprint


def test_lowercase_off_keeps_case(acl):
    b = load_data(cfg(acl.parent, lowercase=False))
    assert "GREAT" in b.vocab and "great" in b.vocab and "The" in b.vocab and "the" not in b.vocab


def test_root_may_be_the_acl_folder_itself(acl):
    assert load_data(cfg(acl)).extra["dir"] == str(acl)
    assert load_data(cfg(acl.parent)).extra["dir"] == str(acl)


def test_missing_lists_paths_and_remedies(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("SWEEPLAB_DATA_DIR", str(tmp_path / "shared"))
    with pytest.raises(DataError) as err:
        load_data(cfg(tmp_path / "nowhere"))
    message = str(err.value)
    for d in imdb.search_dirs(tmp_path / "nowhere"):
        assert str(d) in message
    assert str(tmp_path / "shared" / "aclImdb") in message and str(tmp_path / "cache" / "sweeplab") in message
    assert "data.download=true" in message and "data.root=" in message and imdb.URL in message


def test_bad_settings_are_explained(acl):
    with pytest.raises(DataError, match="char_ngrams"):
        load_data(cfg(acl.parent, vectorize="sequence", char_ngrams=[0, 3]))
    with pytest.raises(DataError, match="num_words"):
        load_data(cfg(acl.parent, num_words=2))
    with pytest.raises(DataError, match="val_size"):
        load_data(cfg(acl.parent, val_size=12))
