"""A small, seeded training loop shared by the notebooks (tiny models on a CPU, in seconds)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from course_lib.progress_bars import progress_bar


@dataclass
class TrainConfig:
    steps: int = 500
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    clip: float | None = 1.0
    seed: int = 0
    log_every: int = 50
    progress: bool = True  # a progress bar (tqdm; a widget in a notebook); TQDM_DISABLE=1 also turns it off


@dataclass
class TrainLog:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train(model: nn.Module, sample: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]],
          loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], config: TrainConfig) -> TrainLog:
    """Train ``model`` with AdamW on batches ``sample(batch, generator)``; return the loss curve.

    Seeds both the model's data generator and torch's global RNG (for any dropout), so a run is
    reproducible on one machine. Gradients are clipped by global norm when ``config.clip`` is set.
    The progress bar disappears when training ends (``config.progress=False`` never shows it).
    """
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    log = TrainLog()
    start = time.perf_counter()
    model.train()
    bar = progress_bar(range(1, config.steps + 1), desc=f"training {type(model).__name__}", enabled=config.progress)
    for step in bar:
        x, y = sample(config.batch, gen)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), config.clip if config.clip else float("inf"))
        opt.step()
        if step % config.log_every == 0 or step == config.steps:
            log.steps.append(step)
            log.loss.append(float(loss.detach()))
            log.grad_norm.append(float(norm))
            bar.set_postfix(loss=f"{log.loss[-1]:.3g}")
    bar.close()
    log.seconds = time.perf_counter() - start
    model.eval()
    return log


class SequenceRegressor(nn.Module):
    """A recurrent layer (``nn.RNN`` or ``nn.LSTM``) followed by a linear read-out of the last state."""

    def __init__(self, cell: str, input_size: int, hidden: int, out: int = 1, forget_bias: float | None = None):
        super().__init__()
        layers = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
        if cell not in layers:
            raise ValueError(f"cell must be one of {sorted(layers)}, got {cell!r}")
        self.cell = cell
        self.rnn = layers[cell](input_size, hidden, batch_first=True)
        if cell == "lstm" and forget_bias is not None:
            with torch.no_grad():
                H = hidden
                # Rows are stacked i, f, g, o; both bias vectors add up, so put the value on one.
                self.rnn.bias_ih_l0[H:2 * H].fill_(forget_bias)
                self.rnn.bias_hh_l0[H:2 * H].zero_()
        self.head = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, S, H)
        y = self.head(out[:, -1])  # (B, out)
        return y.squeeze(-1) if y.shape[-1] == 1 else y
