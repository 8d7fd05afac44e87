"""IMDB movie reviews (the ``aclImdb`` folder) as multi-hot, TF-IDF or token-id sequences.

Word ids, as Keras reserves them: 0 is padding, 1 is out-of-vocabulary, and
2..num_words-1 are the ``num_words - 2`` most frequent words of the training
split (validation held out first; ties broken alphabetically), so ``vocab[i]``
is the word with id ``i``. The multi-hot and TF-IDF matrices have exactly
``num_words`` columns and column ``i`` is ``vocab[i]``: column 0 is always 0 and
column 1 counts the document's out-of-vocabulary words. ``data.scale`` does not apply.
Test rows keep the files' order: ``neg`` then ``pos``, each sorted by file name.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import TfidfTransformer

from sweeplab.data.bundle import DataBundle, DataError, fingerprint, split_train_val
from sweeplab.data.download import cache_dir, download

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
# The SHA-256 published alongside the URL by several dataset libraries (e.g. JuliaML's
# MLDatasets); torchtext checks the same file by MD5 7c2ac02c03563afcf9b574c7e56c153a.
SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
CLASS_NAMES = ["negative", "positive"]
VECTORIZERS = ("multi_hot", "tfidf", "sequence")
_WORD = re.compile(r"[a-z0-9']+", re.IGNORECASE)


def search_dirs(root: str | Path | None = None) -> list[Path]:
    """Candidate ``aclImdb`` folders: in ``root`` (or ``root`` itself), ``$SWEEPLAB_DATA_DIR``, the cache."""
    dirs = []
    if root:
        dirs += [Path(root).expanduser() / "aclImdb", Path(root).expanduser()]
    if env := os.environ.get("SWEEPLAB_DATA_DIR"):
        dirs.append(Path(env) / "aclImdb")
    dirs.append(cache_dir("aclImdb"))
    return list(dict.fromkeys(dirs))


def _is_acl(d: Path) -> bool:
    return all((d / split / label).is_dir() for split in ("train", "test") for label in ("pos", "neg"))


def ensure_available(root: str | Path | None = None, download: bool = True) -> Path:
    """The ``aclImdb`` folder; downloads and unpacks it into the user cache if none is found."""
    found = next((d for d in search_dirs(root) if _is_acl(d)), None)
    if found is not None:
        return found
    failure = None
    if download:
        try:
            return _download()
        except DataError as err:
            failure = err
    lines = ["IMDB reviews not found. Looked for aclImdb/{train,test}/{pos,neg}/*.txt in:"]
    lines += [f"  {d}" for d in search_dirs(root)]
    if failure is not None:
        lines.append(f"Downloading failed: {failure}")
    lines += [
        "Get it one of these ways:",
        f"  set data.download=true to download {URL} (84 MB) into {cache_dir()}",
        "  or download and unpack it yourself and set data.root=/path/to/folder holding aclImdb",
    ]
    raise DataError("\n".join(lines))


def _download() -> Path:
    target = cache_dir("aclImdb")
    tarball = download(URL, cache_dir("aclImdb_v1.tar.gz"), SHA256)
    # Unpack next to the target and move it into place, so an interrupted run leaves no half folder.
    tmp = Path(tempfile.mkdtemp(prefix="aclImdb.", dir=cache_dir()))
    try:
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, filter="data")  # refuses absolute paths, links out of tmp, devices
        if not _is_acl(tmp / "aclImdb"):
            raise DataError(f"{tarball} does not contain aclImdb/{{train,test}}/{{pos,neg}}")
        if target.exists():  # an unusable leftover, or it would have been found
            shutil.rmtree(target)
        os.replace(tmp / "aclImdb", target)
    except (tarfile.TarError, OSError) as err:
        raise DataError(f"could not unpack {tarball}: {err}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        tarball.unlink(missing_ok=True)  # unpacked, or unusable: either way 84 MB not worth keeping
    return target


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Words of a review: HTML line breaks dropped, runs of letters, digits and apostrophes."""
    text = text.replace("<br />", " ")
    return _WORD.findall(text.lower() if lowercase else text)


def fnv1a_32(data: bytes) -> int:
    """32-bit FNV-1a exactly as fastText computes it (bytes >= 0x80 sign-extended), stable across runs."""
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ (b if b < 0x80 else b | 0xFFFFFF00)) * 0x01000193) & 0xFFFFFFFF
    return h


def char_ngram_ids(word: str, min_n: int, max_n: int, num_words: int, buckets: int) -> tuple[int, ...]:
    """fastText subword ids: character n-grams of ``<word>`` hashed into ``buckets`` after the words."""
    marked = f"<{word}>"
    return tuple(
        num_words + fnv1a_32(marked[i : i + n].encode()) % buckets
        for n in range(min_n, max_n + 1)
        for i in range(len(marked) - n + 1)
    )


def load(
    *,
    root: str | None = None,
    val_size: float = 10000,
    split_seed: int = 0,
    scale: str = "none",
    download: bool = True,
    vectorize: str = "multi_hot",
    num_words: int = 10000,
    max_len: int = 256,
    char_ngrams: Sequence[int] = (),
    ngram_buckets: int = 100000,
    lowercase: bool = True,
) -> DataBundle:
    cfg = {
        "root": root,
        "download": download,
        "val_size": val_size,
        "split_seed": split_seed,
        "vectorize": vectorize,
        "num_words": num_words,
        "max_len": max_len,
        "char_ngrams": list(char_ngrams),
        "ngram_buckets": ngram_buckets,
        "lowercase": lowercase,
    }
    if vectorize not in VECTORIZERS:
        raise DataError(f"data.vectorize={vectorize!r} is not one of: {', '.join(VECTORIZERS)}")
    if num_words < 3:
        raise DataError(f"data.num_words={num_words} leaves no room for words after ids 0 (pad) and 1 (OOV)")
    ngram_range = _ngram_range(cfg["char_ngrams"]) if vectorize == "sequence" else None
    if vectorize == "sequence" and max_len < 1:
        raise DataError(f"data.max_len={max_len} must be at least 1")
    if ngram_range and cfg["ngram_buckets"] < 1:
        raise DataError(f"data.ngram_buckets={cfg['ngram_buckets']} must be at least 1 with data.char_ngrams")

    directory = ensure_available(cfg["root"], cfg["download"])
    content = hashlib.sha256()
    train_texts, train_labels = _read_reviews(directory, "train", content)
    test_texts, test_labels = _read_reviews(directory, "test", content)
    # Provisional ids in order of first appearance; a missing word gets the next id without
    # leaving C (the factory is the dict's own __len__), which saves a Python call per token.
    word_ids: defaultdict[str, int] = defaultdict()
    word_ids.default_factory = word_ids.__len__
    train_docs = _encode(train_texts, cfg["lowercase"], word_ids)
    test_docs = _encode(test_texts, cfg["lowercase"], word_ids)
    del train_texts, test_texts

    # Hold out validation before building the vocabulary and idf, so neither sees it.
    train_idx, y_train, val_idx, y_val = split_train_val(
        torch.arange(len(train_docs)), torch.from_numpy(train_labels), cfg["val_size"], cfg["split_seed"]
    )
    val_docs = [train_docs[i] for i in val_idx.tolist()]
    train_docs = [train_docs[i] for i in train_idx.tolist()]
    words = list(word_ids)
    vocab, table = _vocabulary(train_docs, words, num_words)
    splits = (train_docs, val_docs, test_docs)

    num_embeddings = None
    if vectorize == "sequence":
        subwords = None
        if ngram_range:
            min_n, max_n = ngram_range
            buckets = cfg["ngram_buckets"]
            subwords = functools.lru_cache(maxsize=None)(
                lambda pid: char_ngram_ids(words[pid], min_n, max_n, num_words, buckets)
            )
        xs = [torch.from_numpy(_sequences(docs, table, max_len, subwords)) for docs in splits]
        kind, num_embeddings = "tokens", num_words + (cfg["ngram_buckets"] if ngram_range else 0)
    else:
        counts = [_count_matrix(docs, table, num_words) for docs in splits]
        if vectorize == "multi_hot":
            for m in counts:
                m.data[:] = 1
        else:  # smooth idf and l2-normalised rows, scikit-learn's defaults; idf from training only
            tfidf = TfidfTransformer().fit(counts[0])
            counts = [tfidf.transform(m) for m in counts]
        xs = [torch.from_numpy(m.astype(np.float32).toarray()) for m in counts]
        kind = "vector"

    used = ["vectorize", "num_words", "lowercase", "val_size", "split_seed"]
    if vectorize == "sequence":
        used += ["max_len", "char_ngrams", "ngram_buckets"] if ngram_range else ["max_len"]
    settings = {k: cfg[k] for k in used}
    return DataBundle(
        xs[0],
        y_train,
        xs[1],
        y_val,
        xs[2],
        torch.from_numpy(test_labels),
        num_classes=2,
        kind=kind,
        class_names=list(CLASS_NAMES),
        fingerprint=fingerprint("imdb", content.hexdigest(), repr(sorted(settings.items()))),
        vocab=vocab,
        num_embeddings=num_embeddings,
        extra={"dir": str(directory)},
    )


def _ngram_range(char_ngrams: Sequence[int]) -> tuple[int, int] | None:
    if not char_ngrams:
        return None
    lo, hi = min(char_ngrams), max(char_ngrams)
    if len(char_ngrams) > 2 or lo < 1:
        raise DataError(f"data.char_ngrams={list(char_ngrams)} should be [min, max] n-gram lengths: [3, 5]")
    return lo, hi


def _read_reviews(directory: Path, split: str, content: Any) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    for label, folder in enumerate(("neg", "pos")):
        folder_path = directory / split / folder
        # Sorted for a stable order across file systems; plain names, as sorting 50k Paths takes a second.
        for name in sorted(n for n in os.listdir(folder_path) if n.endswith(".txt")):
            raw = (folder_path / name).read_bytes()
            content.update(raw)
            texts.append(raw.decode("utf-8", errors="replace"))
            labels.append(label)
    if not texts:
        raise DataError(f"{directory / split} has no reviews in pos/*.txt or neg/*.txt")
    return texts, np.array(labels, dtype=np.int64)


def _encode(texts: list[str], lowercase: bool, word_ids: defaultdict) -> list[np.ndarray]:
    """Each text as an int32 array of provisional word ids: 4 bytes a token instead of a str object."""
    return [np.fromiter(map(word_ids.__getitem__, tokenize(text, lowercase)), np.int32) for text in texts]


def _vocabulary(
    train_docs: list[np.ndarray], words: list[str], num_words: int
) -> tuple[list[str], np.ndarray]:
    """The vocabulary and a table mapping provisional ids to final ids (1 for out-of-vocabulary)."""
    counts = np.bincount(np.concatenate(train_docs), minlength=len(words))
    ranked = sorted(np.flatnonzero(counts).tolist(), key=lambda i: (-counts[i], words[i]))[: num_words - 2]
    table = np.ones(len(words), dtype=np.int64)
    table[ranked] = np.arange(2, 2 + len(ranked))
    return ["<pad>", "<unk>", *(words[i] for i in ranked)], table


def _count_matrix(docs: list[np.ndarray], table: np.ndarray, num_words: int) -> csr_matrix:
    indptr = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
    indices = table[np.concatenate(docs)]
    m = csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(docs), num_words))
    m.sum_duplicates()
    return m


def _sequences(docs: list[np.ndarray], table: np.ndarray, max_len: int, subwords: Any) -> np.ndarray:
    """Word ids, then (with ``subwords``) each word's n-gram ids in turn; cut to ``max_len``, 0-padded."""
    out = np.zeros((len(docs), max_len), dtype=np.int64)
    for row, doc in enumerate(docs):
        words = table[doc[:max_len]]
        out[row, : len(words)] = words
        if subwords is None or len(words) == max_len:
            continue
        ids: list[int] = []
        for pid in doc.tolist():
            ids += subwords(pid)
            if len(words) + len(ids) >= max_len:
                break
        ids = ids[: max_len - len(words)]
        out[row, len(words) : len(words) + len(ids)] = ids
    return out
