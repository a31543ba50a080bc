"""Real text for character-level language modelling: the corpus, its vocabulary, a split and batches.

The corpus ships inside the package (``course_lib/data/``; provenance, licence and checksum in the
README there), so nothing is downloaded. A character language model reads ids ``x_1 .. x_S`` and
predicts, at every position ``t``, the next character ``x_{t+1}``; a batch is therefore a window of
``S + 1`` consecutive characters, cut into the input ``x = w[:-1]`` and the target ``y = w[1:]``.

    data = char_lm_data()
    x, y = data.batch("train", batch=32, seq_len=128, generator=torch.Generator().manual_seed(0))
    data.vocab.decode(x[0, :20])  # a string of 20 characters; y[0] is the same window shifted by one
"""

from __future__ import annotations

import gzip
import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import torch

CORPORA = {
    "tinyshakespeare": ("tinyshakespeare.txt.gz", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
}


def corpus_path(name: str = "tinyshakespeare"):
    """The packaged file of corpus ``name`` (a ``Traversable``; ``str()`` of it is a path for a normal install)."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; shipped corpora: {sorted(CORPORA)}")
    return resources.files("course_lib") / "data" / CORPORA[name][0]


@lru_cache(maxsize=4)
def load_corpus(name: str = "tinyshakespeare", verify: bool = True) -> str:
    """Return the text of a packaged corpus; with ``verify`` its sha256 must match the one recorded here."""
    raw = gzip.decompress(corpus_path(name).read_bytes())
    if verify:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != CORPORA[name][1]:
            raise RuntimeError(f"corpus {name!r} is damaged: sha256 {digest}, expected {CORPORA[name][1]}; "
                               "reinstall the course package")
    return raw.decode("utf-8")


@dataclass(frozen=True)
class CharVocab:
    """The characters of a text, sorted; a character's id is its position in ``chars``."""

    chars: str

    def __post_init__(self):
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("a vocabulary lists every character once")
        object.__setattr__(self, "_ids", {c: i for i, c in enumerate(self.chars)})

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """Ids of the characters of ``text`` as a long tensor (len(text),)."""
        try:
            return torch.tensor([self._ids[c] for c in text], dtype=torch.long)
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> str:
        """The string of a sequence of ids (a 1-D tensor or a list of ints)."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if any(not 0 <= i < len(self.chars) for i in ids):
            raise ValueError(f"ids must lie in [0, {len(self.chars)})")
        return "".join(self.chars[i] for i in ids)


def random_windows(ids: torch.Tensor, batch: int, seq_len: int,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` windows of ``seq_len + 1`` characters at random offsets.

    Returns the inputs (B, S) and the next-character targets (B, S): the same windows shifted by one.
    """
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
    if seq_len < 1 or len(ids) < seq_len + 1:
        raise ValueError(f"need 1 <= seq_len < len(ids) = {len(ids)}, got seq_len = {seq_len}")
    starts = torch.randint(0, len(ids) - seq_len, (batch,), generator=generator)
    windows = ids[starts[:, None] + torch.arange(seq_len + 1)]  # (B, S + 1)
    return windows[:, :-1], windows[:, 1:]


def sequential_windows(ids: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every non-overlapping window of ``seq_len + 1`` characters in order (for a deterministic evaluation)."""
    n = (len(ids) - 1) // seq_len
    if n < 1:
        raise ValueError(f"the text ({len(ids)} characters) is shorter than one window of {seq_len + 1}")
    x = ids[:n * seq_len].view(n, seq_len)
    y = ids[1:n * seq_len + 1].view(n, seq_len)
    return x, y


@dataclass(frozen=True)
class CharLMData:
    """A corpus encoded as ids and split into a training part (the start) and a validation part (the end)."""

    vocab: CharVocab
    train: torch.Tensor
    val: torch.Tensor
    name: str = "tinyshakespeare"

    def batch(self, split: str, batch: int, seq_len: int, generator: torch.Generator | None = None):
        """Random windows of one split (``"train"`` or ``"val"``): inputs (B, S), targets (B, S)."""
        return random_windows(self.ids(split), batch, seq_len, generator)

    def ids(self, split: str) -> torch.Tensor:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return self.train if split == "train" else self.val

    def unigram_nats(self) -> float:
        """Validation cross-entropy (nats/char) of the character frequencies of the training part.

        The baseline that knows which characters are common but nothing about order; counts get
        add-one smoothing so a character absent from training costs a finite amount.
        """
        counts = torch.bincount(self.train, minlength=len(self.vocab)).double() + 1.0
        log_p = (counts / counts.sum()).log()
        return float(-log_p[self.val].mean())

    def uniform_nats(self) -> float:
        """Cross-entropy of guessing uniformly among the V characters: log V nats/char."""
        return math.log(len(self.vocab))


@lru_cache(maxsize=4)
def char_lm_data(name: str = "tinyshakespeare", val_fraction: float = 0.1) -> CharLMData:
    """Encode a packaged corpus; the last ``val_fraction`` of the text is the validation part.

    A contiguous split (rather than random windows) keeps validation text the model never saw,
    not even as the overlap of a training window. The vocabulary is that of the whole text. The
    result is cached (the same object for the same arguments): do not modify its tensors in place.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    text = load_corpus(name)
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text)
    n_train = int(round(len(ids) * (1.0 - val_fraction)))
    return CharLMData(vocab, ids[:n_train], ids[n_train:], name)
