"""Module 03's character transformer: causal, rebuilt from a checkpoint, trained on the LSTM's budget."""

from __future__ import annotations

from dataclasses import asdict
from importlib import resources

import pytest
import torch

from course_lib.attention.char_lm import lstm_budget, main
from course_lib.attention.layers import CharTransformer
from course_lib.lm import load_char_lm


def test_char_transformer_is_causal_and_crops_long_inputs():
    torch.manual_seed(0)
    model = CharTransformer(11, d_model=16, num_heads=2, num_layers=2, max_len=12).eval()
    x = torch.randint(0, 11, (2, 10))
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1) % 11  # change the future only
    with torch.no_grad():
        a, b = model(x), model(y)
        assert a.shape == (2, 10, 11)
        assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6) and not torch.allclose(a[:, 6:], b[:, 6:])
        long = torch.randint(0, 11, (1, 30))
        assert torch.allclose(model(long), model(long[:, -12:]))  # positions beyond max_len: the last 12 kept


def test_the_script_trains_on_the_lstm_budget_and_the_checkpoint_rebuilds(tmp_path, monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    out = tmp_path / "ct.pt"
    main(["--out", str(out), "--steps", "3", "--d-model", "16", "--heads", "2"])
    model, info = load_char_lm(out)
    assert type(model).__name__ == "CharTransformer" and model.hparams["d_model"] == 16
    budget = asdict(lstm_budget())
    for key in ("batch", "seq_len", "lr", "clip", "warmup", "min_lr_ratio", "weight_decay"):
        assert info["config"][key] == budget[key], key
    assert info["config"]["steps"] == 3
    assert info["results"]["val_nats"] < info["results"]["uniform_nats"] + 0.5


def test_default_size_matches_the_lstm_within_five_percent():
    lstm, info = load_char_lm()
    V = info["vocab"].chars.__len__()
    n_lstm = sum(p.numel() for p in lstm.parameters())
    n_transformer = sum(p.numel() for p in CharTransformer(V).parameters())
    assert abs(n_transformer / n_lstm - 1) < 0.05


@pytest.mark.skipif(not (resources.files("course_lib") / "data" / "char_transformer.pt").is_file(),
                    reason="the transformer checkpoint is not shipped")
def test_shipped_checkpoint_used_the_lstm_budget():
    path = resources.files("course_lib") / "data" / "char_transformer.pt"
    _, info = load_char_lm(str(path))
    budget = asdict(lstm_budget())
    for key in ("steps", "batch", "seq_len", "lr", "clip", "warmup", "min_lr_ratio", "weight_decay", "seed"):
        assert info["config"][key] == budget[key], key
    assert set(info["results"]["val_nats_by_seed"]) == set(load_char_lm()[1]["results"]["val_nats_by_seed"])
