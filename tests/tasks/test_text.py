import gzip
import hashlib

import pytest
import torch

from course_lib.tasks.text import (
    CORPORA,
    CharVocab,
    char_lm_data,
    corpus_path,
    load_corpus,
    random_windows,
    sequential_windows,
)

SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def test_shipped_corpus_has_the_recorded_checksum():
    raw = gzip.decompress(corpus_path().read_bytes())
    assert hashlib.sha256(raw).hexdigest() == SHA256 == CORPORA["tinyshakespeare"][1]
    assert len(raw) == 1_115_394
    text = load_corpus()
    assert text.startswith("First Citizen:\n")


def test_a_damaged_corpus_is_refused(monkeypatch):
    monkeypatch.setitem(CORPORA, "damaged", ("tinyshakespeare.txt.gz", "0" * 64))
    with pytest.raises(RuntimeError, match="damaged"):
        load_corpus("damaged")
    with pytest.raises(ValueError, match="unknown corpus"):
        load_corpus("war_and_peace")


def test_vocabulary_round_trips_and_rejects_unknown_characters():
    vocab = CharVocab.from_text("hello world")
    assert vocab.chars == " dehlorw" and len(vocab) == 8
    ids = vocab.encode("low")
    assert ids.dtype == torch.long and ids.tolist() == [4, 5, 7]
    assert vocab.decode(ids) == "low" and vocab.decode([1, 2]) == "de"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        vocab.encode("Z")
    with pytest.raises(ValueError, match="ids must lie"):
        vocab.decode([8])
    with pytest.raises(ValueError, match="once"):
        CharVocab("aa")


def test_split_is_contiguous_and_covers_the_text():
    data = char_lm_data()
    text = load_corpus()
    assert len(data.vocab) == 65
    assert len(data.train) + len(data.val) == len(text)
    assert len(data.val) == pytest.approx(0.1 * len(text), abs=1)
    assert data.vocab.decode(data.train[:15]) == text[:15]
    assert data.vocab.decode(data.val[-20:]) == text[-20:]
    with pytest.raises(ValueError, match="val_fraction"):
        char_lm_data(val_fraction=1.0)


def test_random_windows_are_shifted_by_one_and_seeded():
    ids = torch.arange(100)
    x, y = random_windows(ids, 5, 7, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 7)
    assert torch.equal(y, x + 1)  # on arange, the next character is the id plus one
    assert torch.equal((x[:, 1:] - x[:, :-1]), torch.ones(5, 6, dtype=torch.long))  # consecutive characters
    x2, _ = random_windows(ids, 5, 7, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)
    assert int(y.max()) <= 99
    with pytest.raises(ValueError, match="seq_len"):
        random_windows(ids, 2, 100)


def test_sequential_windows_tile_the_text_without_overlap():
    x, y = sequential_windows(torch.arange(23), 5)
    assert x.shape == (4, 5)
    assert torch.equal(x.flatten(), torch.arange(20)) and torch.equal(y.flatten(), torch.arange(1, 21))
    with pytest.raises(ValueError, match="shorter"):
        sequential_windows(torch.arange(3), 5)


def test_baselines_uniform_and_unigram():
    data = char_lm_data()
    assert data.uniform_nats() == pytest.approx(torch.log(torch.tensor(65.0)).item())
    # Frequencies know that spaces and vowels are common: far better than uniform, far from a model.
    assert 3.2 < data.unigram_nats() < 3.5 < data.uniform_nats()
    with pytest.raises(ValueError, match="split"):
        data.batch("test", 2, 3)
