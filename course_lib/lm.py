"""One training and evaluation path for character language models (modules 02, 03, 05, 06, 08).

Any ``nn.Module`` that maps token ids (B, S) to next-token logits (B, S, V), causally (position t
sees positions <= t only), can be trained, evaluated, sampled and checkpointed here, so that every
module compares its model with the others on the same text, split, budget and metric:

- ``train_lm(model, data, LMConfig(...))``: AdamW with **teacher forcing** (at every position the
  model reads the true previous characters, never its own guesses), a fixed budget of steps;
- ``evaluate_lm(model, ids, seq_len)``: validation cross-entropy in nats per character over every
  non-overlapping window of the validation text (``perplexity = exp(nats)``);
- ``sample(model, vocab, prompt, n_chars, temperature)``: generation, one character at a time;
- ``save_char_lm`` / ``load_char_lm``: a checkpoint that records the model's class and
  hyper-parameters, the vocabulary, the training configuration and the measured results.

``python -m course_lib.lm --out course_lib/data/char_lstm.pt`` trains the shipped LSTM checkpoint.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.progress_bars import progress_bar
from course_lib.tasks.text import CORPORA, CharLMData, CharVocab, char_lm_data, sequential_windows


@dataclass
class LMConfig:
    """The budget and optimiser of one language-model run (the same for every model compared)."""

    steps: int = 1000
    batch: int = 32
    seq_len: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    clip: float | None = 1.0
    warmup: int = 0  # steps of linear warm-up
    min_lr_ratio: float = 0.1  # cosine decay from lr to min_lr_ratio * lr; 1.0 keeps lr constant
    seed: int = 0
    eval_every: int = 0  # evaluate on part of the validation text every this many steps (0: only at the end)
    eval_windows: int = 64  # windows of seq_len used by those intermediate evaluations
    progress: bool = True  # a progress bar (tqdm; a widget in a notebook); TQDM_DISABLE=1 also turns it off

    def __post_init__(self):
        if self.steps < 1 or self.batch < 1 or self.seq_len < 1:
            raise ValueError("steps, batch and seq_len must be positive")
        if not self.lr > 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError("lr must be positive and min_lr_ratio in [0, 1]")


@dataclass
class LMLog:
    """What a run measured: training loss (nats/char) per step, validation loss at evaluation steps."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    chars_seen: int = 0


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in nats per character; logits (B, S, V), targets (B, S)."""
    if logits.ndim != 3 or logits.shape[:2] != targets.shape:
        raise ValueError(f"logits must be (B, S, V) and targets (B, S); got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def perplexity(nats: float) -> float:
    """exp(cross-entropy): the number of equally likely characters the model is as unsure as."""
    return math.exp(nats)


def learning_rate(step: int, config: LMConfig) -> float:
    """Linear warm-up over ``config.warmup`` steps, then cosine decay to ``min_lr_ratio * lr`` at the last step."""
    if config.warmup and step <= config.warmup:
        return config.lr * step / config.warmup
    span = max(1, config.steps - config.warmup)
    progress = min(1.0, (step - config.warmup) / span)
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate_lm(model: nn.Module, ids: torch.Tensor, seq_len: int, batch: int = 64,
                max_windows: int | None = None) -> float:
    """Cross-entropy (nats/char) of ``model`` on the text ``ids``, cut into non-overlapping windows of ``seq_len``.

    Every window starts from the model's empty state (as in training), so the first characters of a
    window are predicted with little context; the same holds for every model evaluated this way.
    ``max_windows`` evaluates that many windows spread evenly over the text (a cheaper estimate).
    """
    x, y = sequential_windows(ids, seq_len)
    if max_windows is not None and len(x) > max_windows:
        pick = torch.linspace(0, len(x) - 1, max_windows).round().long()  # spread over the whole text
        x, y = x[pick], y[pick]
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, len(x), batch):
        logits = model(x[start:start + batch])
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[start:start + batch].reshape(-1),
                                       reduction="sum"))
    model.train(was_training)
    return total / y.numel()


def train_lm(model: nn.Module, data: CharLMData, config: LMConfig) -> LMLog:
    """Train ``model`` on random windows of ``data.train`` with teacher forcing; return the measured curves.

    Reproducible on one machine: the batches come from a generator seeded with ``config.seed`` and
    torch's global RNG is seeded too (for dropout). The final validation loss (all windows of
    ``data.val``) is the last entry of ``log.val_loss``.
    """
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    log = LMLog()
    start = time.perf_counter()
    model.train()
    bar = progress_bar(range(1, config.steps + 1), desc=f"training {type(model).__name__}", enabled=config.progress)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, config)
        x, y = data.batch("train", config.batch, config.seq_len, gen)
        # Teacher forcing: the input at position t is the true character t, the target character t + 1.
        loss = lm_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip:
            nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        opt.step()
        log.steps.append(step)
        log.train_loss.append(float(loss.detach()))
        if config.eval_every and step % config.eval_every == 0 and step != config.steps:
            log.val_steps.append(step)
            log.val_loss.append(evaluate_lm(model, data.val, config.seq_len, max_windows=config.eval_windows))
            model.train()
        if step % 10 == 0:
            bar.set_postfix(loss=f"{log.train_loss[-1]:.3f}")
    bar.close()
    log.seconds = time.perf_counter() - start
    log.chars_seen = config.steps * config.batch * config.seq_len
    log.val_steps.append(config.steps)
    log.val_loss.append(evaluate_lm(model, data.val, config.seq_len))
    model.eval()
    return log


@torch.no_grad()
def sample(model: nn.Module, vocab: CharVocab, prompt: str, n_chars: int, temperature: float = 1.0,
           generator: torch.Generator | None = None, context: int = 256) -> str:
    """Continue ``prompt`` by ``n_chars`` characters drawn from softmax(logits / temperature).

    Temperature < 1 sharpens the distribution (safer, more repetitive text), > 1 flattens it. A
    model with ``forward_with_state(x, state) -> (logits, state)`` (a recurrent one) is stepped one
    character at a time; any other model is rerun on the last ``context`` characters at every step.
    """
    if not prompt:
        raise ValueError("the prompt needs at least one character")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    was_training = model.training
    model.eval()
    ids = vocab.encode(prompt)[None]  # (1, len(prompt))
    out = []
    recurrent = hasattr(model, "forward_with_state")
    if recurrent:
        logits, state = model.forward_with_state(ids, None)
    for _ in range(n_chars):
        if not recurrent:
            logits = model(ids[:, -context:])
        probs = torch.softmax(logits[0, -1].double() / temperature, dim=-1)
        nxt = torch.multinomial(probs, 1, generator=generator)  # (1,)
        out.append(int(nxt))
        if recurrent:
            logits, state = model.forward_with_state(nxt[None], state)
        else:
            ids = torch.cat([ids, nxt[None]], dim=1)
    model.train(was_training)
    return prompt + vocab.decode(out)


class CharLSTM(nn.Module):
    """Embedding -> ``nn.LSTM`` -> linear read-out: the character language model of module 02.

    ``hparams`` holds the constructor's arguments, so a checkpoint can rebuild the model.
    """

    def __init__(self, vocab_size: int, hidden: int = 128, embed: int = 32, layers: int = 1,
                 forget_bias: float | None = 1.0):
        super().__init__()
        self.hparams = dict(vocab_size=vocab_size, hidden=hidden, embed=embed, layers=layers, forget_bias=forget_bias)
        self.embed = nn.Embedding(vocab_size, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
        if forget_bias is not None:
            with torch.no_grad():
                for layer in range(layers):
                    # rows H:2H of the stacked (i, f, g, o) are the forget gate; the two biases add up
                    getattr(self.lstm, f"bias_ih_l{layer}")[hidden:2 * hidden].fill_(forget_bias)
                    getattr(self.lstm, f"bias_hh_l{layer}")[hidden:2 * hidden].zero_()
        self.head = nn.Linear(hidden, vocab_size)

    def forward_with_state(self, x: torch.Tensor, state=None):
        """Logits (B, S, V) for ids (B, S), starting from ``state`` (None: zeros), and the final state."""
        out, state = self.lstm(self.embed(x), state)  # (B, S, H)
        return self.head(out), state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_state(x)[0]


CHAR_LMS: dict[str, type[nn.Module]] = {"CharLSTM": CharLSTM}


def register_char_lm(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: let ``load_char_lm`` rebuild checkpoints of ``cls`` (which must set ``self.hparams``)."""
    CHAR_LMS[cls.__name__] = cls
    return cls


def save_char_lm(path: str | Path, model: nn.Module, vocab: CharVocab, config: LMConfig,
                 results: dict | None = None, dtype: torch.dtype = torch.float16) -> Path:
    """Write a checkpoint: class name, ``model.hparams``, weights (stored in ``dtype``), vocabulary, config, results."""
    if type(model).__name__ not in CHAR_LMS or not hasattr(model, "hparams"):
        raise ValueError(f"{type(model).__name__} is not registered (register_char_lm) or has no hparams")
    path = Path(path)
    state = {k: v.detach().to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(dict(model=type(model).__name__, hparams=model.hparams, state_dict=state, vocab=vocab.chars,
                    config=asdict(config), results=results or {}), path)
    return path


def load_char_lm(path: str | Path | None = None) -> tuple[nn.Module, dict]:
    """Rebuild a checkpoint's model in float32 (eval mode); return it and the checkpoint's other entries.

    Without ``path``, the LSTM shipped with the course (``course_lib/data/char_lstm.pt``).
    """
    if path is None:
        from importlib import resources
        path = resources.files("course_lib") / "data" / "char_lstm.pt"
    with open(path, "rb") as fh:
        ckpt = torch.load(fh, map_location="cpu", weights_only=True)
    if ckpt["model"] not in CHAR_LMS:
        raise ValueError(f"checkpoint of unknown model {ckpt['model']!r}; known: {sorted(CHAR_LMS)}")
    model = CHAR_LMS[ckpt["model"]](**ckpt["hparams"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    model.eval()
    info = {k: v for k, v in ckpt.items() if k != "state_dict"}
    info["vocab"] = CharVocab(ckpt["vocab"])
    return model, info


def _as_stored(model: nn.Module, dtype: torch.dtype = torch.float16) -> nn.Module:
    """The model with its weights rounded to ``dtype`` and back, as a checkpoint stores and loads them."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(p.dtype))
    return model


def train_checkpoint(out: str | Path, config: LMConfig, make_model: Callable[[int], nn.Module] | None = None,
                     data: CharLMData | None = None, spread_seeds: Sequence[int] = (),
                     curve_every: int = 50) -> tuple[nn.Module, LMLog, Path]:
    """Train a model (default: ``CharLSTM(V)``) with ``config`` and save it with its measured results.

    The results record the validation loss of the weights as stored (rounded to float16), the
    baselines, the learning curve (training loss averaged over blocks of ``curve_every`` steps and
    the intermediate validation losses) and, for each seed in ``spread_seeds``, the final validation
    loss of the same model and budget trained from that seed (only the first model is stored).
    """
    data = data or char_lm_data()
    make_model = make_model or CharLSTM
    torch.manual_seed(config.seed)
    model = make_model(len(data.vocab))
    log = train_lm(model, data, config)
    path = save_char_lm(out, model, data.vocab, config)
    stored, _ = load_char_lm(path)
    val_nats = evaluate_lm(stored, data.val, config.seq_len)
    by_seed = {config.seed: val_nats}
    for seed in spread_seeds:
        other_config = replace(config, seed=seed)
        torch.manual_seed(seed)
        other = make_model(len(data.vocab))
        train_lm(other, data, other_config)
        by_seed[seed] = evaluate_lm(_as_stored(other), data.val, config.seq_len)
    blocks = [log.train_loss[i:i + curve_every] for i in range(0, len(log.train_loss), curve_every)]
    curve = dict(steps=[min(i + curve_every, config.steps) for i in range(0, config.steps, curve_every)],
                 train_loss=[sum(b) / len(b) for b in blocks], val_steps=log.val_steps[:-1], val_loss=log.val_loss[:-1],
                 val_windows=config.eval_windows)
    results = dict(val_nats=val_nats, val_perplexity=perplexity(val_nats), train_seconds=log.seconds,
                   steps=config.steps, parameters=sum(p.numel() for p in model.parameters()),
                   uniform_nats=data.uniform_nats(), unigram_nats=data.unigram_nats(),
                   val_nats_by_seed={str(k): v for k, v in by_seed.items()}, curve=curve,
                   corpus=data.name, corpus_sha256=CORPORA[data.name][1])
    save_char_lm(path, model, data.vocab, config, results)
    return model, log, path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the character LSTM checkpoint shipped with the course.")
    parser.add_argument("--out", default="course_lib/data/char_lstm.pt")
    parser.add_argument("--steps", type=int, default=LMConfig.steps)
    parser.add_argument("--batch", type=int, default=LMConfig.batch)
    parser.add_argument("--seq-len", type=int, default=LMConfig.seq_len)
    parser.add_argument("--lr", type=float, default=LMConfig.lr)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--embed", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--spread-seeds", type=int, nargs="*", default=[],
                        help="also train from these seeds and record their validation loss (the spread over seeds)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = LMConfig(steps=args.steps, batch=args.batch, seq_len=args.seq_len, lr=args.lr, seed=args.seed,
                      eval_every=args.eval_every)
    _, log, path = train_checkpoint(args.out, config, lambda V: CharLSTM(V, hidden=args.hidden, embed=args.embed),
                                    spread_seeds=args.spread_seeds)
    for step, nats in zip(log.val_steps, log.val_loss, strict=True):
        print(f"step {step:>6}: validation {nats:.4f} nats/char")
    results = load_char_lm(path)[1]["results"]
    print(f"{path}: validation {results['val_nats']:.4f} nats/char (perplexity {results['val_perplexity']:.2f}) "
          f"after {config.steps} steps in {log.seconds:.0f} s; by seed: {results['val_nats_by_seed']}")


if __name__ == "__main__":
    main()
