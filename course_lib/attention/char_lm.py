"""Train the character transformer checkpoint of module 03 on the shared real-text path.

The budget is the one of module 02's character LSTM (``course_lib/data/char_lstm.pt``): the same
text, split, steps, batch, window length, learning-rate schedule and seeds, read from that
checkpoint's recorded configuration, and a model of about the same number of parameters::

    python -m course_lib.attention.char_lm --out course_lib/data/char_transformer.pt --spread-seeds 1 2
"""

from __future__ import annotations

import argparse

import torch

from course_lib.attention.layers import CharTransformer
from course_lib.lm import CHAR_LMS, LMConfig, load_char_lm, register_char_lm, train_checkpoint

if "CharTransformer" not in CHAR_LMS:
    register_char_lm(CharTransformer)


def lstm_budget() -> LMConfig:
    """The training configuration recorded in the shipped character LSTM checkpoint."""
    config = dict(load_char_lm()[1]["config"])
    config["progress"] = False
    return LMConfig(**config)


def load_char_transformer(path=None):
    """The shipped ``course_lib/data/char_transformer.pt``: ``(model, info)`` as ``load_char_lm`` returns them."""
    if path is None:
        from importlib import resources

        path = resources.files("course_lib") / "data" / "char_transformer.pt"
    return load_char_lm(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="course_lib/data/char_transformer.pt")
    parser.add_argument("--steps", type=int, default=None, help="default: the LSTM's number of steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spread-seeds", type=int, nargs="*", default=[])
    parser.add_argument("--d-model", type=int, default=56)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = lstm_budget()
    overrides = dict(seed=args.seed)
    if args.steps is not None:
        overrides["steps"] = args.steps
        overrides["eval_every"] = 0
    config = LMConfig(**{**config.__dict__, **overrides})

    def make(vocab_size: int) -> CharTransformer:
        return CharTransformer(vocab_size, d_model=args.d_model, num_heads=args.heads, num_layers=args.layers,
                               max_len=config.seq_len)

    _, log, path = train_checkpoint(args.out, config, make, spread_seeds=args.spread_seeds)
    results = load_char_lm(path)[1]["results"]
    print(f"{path}: {results['parameters']:,} parameters, validation {results['val_nats']:.4f} nats/char "
          f"(perplexity {results['val_perplexity']:.2f}) after {config.steps} steps in {log.seconds:.0f} s; "
          f"by seed: {results['val_nats_by_seed']}")


if __name__ == "__main__":
    main()
