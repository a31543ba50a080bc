import math

import pytest
import torch
from torch import nn

from course_lib.lm import (
    CHAR_LMS,
    CharLSTM,
    LMConfig,
    evaluate_lm,
    learning_rate,
    lm_loss,
    load_char_lm,
    main,
    perplexity,
    sample,
    save_char_lm,
    train_checkpoint,
    train_lm,
)
from course_lib.tasks.text import CharLMData, CharVocab, char_lm_data


class Uniform(nn.Module):
    """Equal logits for every character: cross-entropy log V exactly."""

    def __init__(self, V):
        super().__init__()
        self.V = V
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.zeros(*x.shape, self.V) + 0 * self.dummy


class Windowed(nn.Module):
    """A CharLSTM seen through forward() only, so that sample() takes its rerun-the-context path."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def _small_data():
    data = char_lm_data()
    return CharLMData(data.vocab, data.train[:20000], data.val[:4000])


def test_lm_loss_and_evaluation_of_the_uniform_model_are_log_v():
    data = _small_data()
    V = len(data.vocab)
    x, y = data.batch("train", 4, 16, torch.Generator().manual_seed(0))
    assert lm_loss(Uniform(V)(x), y).item() == pytest.approx(math.log(V))
    assert evaluate_lm(Uniform(V), data.val, 50) == pytest.approx(math.log(V))
    assert perplexity(math.log(V)) == pytest.approx(V)
    with pytest.raises(ValueError, match="logits must be"):
        lm_loss(torch.zeros(4, 16), y)


def test_evaluate_lm_equals_a_float64_loop_over_every_window():
    data = _small_data()
    torch.manual_seed(0)
    model = CharLSTM(len(data.vocab), hidden=16, embed=8)
    seq_len, n = 40, (len(data.val) - 1) // 40
    total = 0.0
    for w in range(n):
        x = data.val[w * seq_len:(w + 1) * seq_len]
        y = data.val[w * seq_len + 1:(w + 1) * seq_len + 1]
        with torch.no_grad():
            log_p = torch.log_softmax(model(x[None])[0].double(), dim=-1)
        total -= float(log_p[torch.arange(seq_len), y].sum())
    assert evaluate_lm(model, data.val, seq_len, batch=7) == pytest.approx(total / (n * seq_len), rel=1e-5)


def test_char_lstm_is_causal():
    torch.manual_seed(0)
    model = CharLSTM(10, hidden=8, embed=4)
    x = torch.randint(0, 10, (2, 12))
    x2 = x.clone()
    x2[:, 7:] = (x2[:, 7:] + 1) % 10  # change the future only
    with torch.no_grad():
        assert torch.equal(model(x)[:, :7], model(x2)[:, :7])
        assert not torch.equal(model(x)[:, 7:], model(x2)[:, 7:])


def test_forget_bias_lands_on_the_forget_rows():
    model = CharLSTM(10, hidden=6, embed=4, layers=2, forget_bias=2.0)
    for layer in range(2):
        b = getattr(model.lstm, f"bias_ih_l{layer}") + getattr(model.lstm, f"bias_hh_l{layer}")
        assert torch.equal(b[6:12], torch.full((6,), 2.0))


def test_training_is_reproducible_and_beats_the_uniform_baseline():
    data = _small_data()
    config = LMConfig(steps=60, batch=16, seq_len=32, lr=1e-2, eval_every=20, eval_windows=8, progress=False)
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(0)
        model = CharLSTM(len(data.vocab), hidden=32, embed=16)
        torch.manual_seed(global_seed)  # training must not depend on the caller's global RNG
        runs.append(train_lm(model, data, config))
    assert runs[0].train_loss == runs[1].train_loss and runs[0].val_loss == runs[1].val_loss
    log = runs[0]
    assert log.steps == list(range(1, 61)) and log.val_steps == [20, 40, 60]
    assert log.chars_seen == 60 * 16 * 32
    assert log.val_loss[-1] < data.uniform_nats() - 0.7  # 4.17 -> below 3.5 in 60 small steps
    assert sum(log.train_loss[-10:]) < sum(log.train_loss[:10])


def test_learning_rate_schedule_warms_up_and_decays_to_the_floor():
    config = LMConfig(steps=100, lr=1e-2, warmup=10, min_lr_ratio=0.1)
    assert learning_rate(1, config) == pytest.approx(1e-3)
    assert learning_rate(10, config) == pytest.approx(1e-2)
    assert learning_rate(100, config) == pytest.approx(1e-3)
    assert all(learning_rate(s, config) >= learning_rate(s + 1, config) for s in range(10, 100))
    constant = LMConfig(steps=5, lr=1e-2, min_lr_ratio=1.0)
    assert {learning_rate(s, constant) for s in range(1, 6)} == {1e-2}
    with pytest.raises(ValueError, match="positive"):
        LMConfig(steps=0)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        LMConfig(min_lr_ratio=2.0)


def test_sampling_is_seeded_and_both_paths_agree():
    vocab = char_lm_data().vocab
    torch.manual_seed(0)
    model = CharLSTM(len(vocab), hidden=16, embed=8)
    a = sample(model, vocab, "ROMEO:", 40, temperature=0.8, generator=torch.Generator().manual_seed(3))
    b = sample(model, vocab, "ROMEO:", 40, temperature=0.8, generator=torch.Generator().manual_seed(3))
    c = sample(Windowed(model), vocab, "ROMEO:", 40, temperature=0.8, generator=torch.Generator().manual_seed(3))
    assert a == b == c and len(a) == 46 and a.startswith("ROMEO:")
    # A very low temperature is greedy decoding: the argmax at every step.
    greedy = sample(model, vocab, "RO", 5, temperature=1e-4, generator=torch.Generator().manual_seed(0))
    ids = vocab.encode("RO")[None]
    for _ in range(5):
        ids = torch.cat([ids, model(ids)[:, -1:].argmax(-1)], dim=1)
    assert greedy == vocab.decode(ids[0])
    with pytest.raises(ValueError, match="temperature"):
        sample(model, vocab, "RO", 5, temperature=0.0)
    with pytest.raises(ValueError, match="prompt"):
        sample(model, vocab, "", 5)


def test_checkpoint_round_trip(tmp_path):
    data = _small_data()
    config = LMConfig(steps=5, batch=4, seq_len=16, progress=False)
    model, log, path = train_checkpoint(tmp_path / "m.pt", config, lambda V: CharLSTM(V, hidden=8, embed=4), data,
                                        spread_seeds=(1,), curve_every=2)
    loaded, info = load_char_lm(path)
    assert info["model"] == "CharLSTM" and info["config"]["steps"] == 5 and info["vocab"] == data.vocab
    results = info["results"]
    assert results["val_nats"] == pytest.approx(evaluate_lm(loaded, data.val, 16), abs=1e-6)
    assert set(results["val_nats_by_seed"]) == {"0", "1"} and results["val_nats_by_seed"]["0"] == results["val_nats"]
    assert results["val_nats_by_seed"]["1"] != results["val_nats"]  # another seed, another run
    assert results["curve"]["steps"] == [2, 4, 5] and len(results["curve"]["train_loss"]) == 3
    assert results["parameters"] == sum(p.numel() for p in model.parameters())
    x = data.val[:50][None]
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-2)  # weights stored in float16
    with pytest.raises(ValueError, match="not registered"):
        save_char_lm(tmp_path / "u.pt", Uniform(3), CharVocab("abc"), config)


def test_the_checkpoint_script_runs_on_a_tiny_budget(tmp_path, capsys):
    out = tmp_path / "tiny.pt"
    main(["--out", str(out), "--steps", "3", "--batch", "2", "--seq-len", "8", "--hidden", "8", "--embed", "4",
          "--eval-every", "0"])
    assert "nats/char" in capsys.readouterr().out
    model, info = load_char_lm(out)
    assert info["hparams"]["hidden"] == 8 and "CharLSTM" in CHAR_LMS



def test_shipped_checkpoint_reproduces_its_recorded_validation_loss():
    model, info = load_char_lm()
    data = char_lm_data()
    assert info["vocab"] == data.vocab and info["results"]["corpus_sha256"].startswith("86c4e6aa")
    nats = evaluate_lm(model, data.val, info["config"]["seq_len"])
    assert nats == pytest.approx(info["results"]["val_nats"], abs=1e-3)
    # Far better than the baselines: frequencies alone give ~3.3 nats/char, uniform guessing 4.17.
    assert nats < data.unigram_nats() - 1.0
