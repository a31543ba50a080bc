"""Module 02: the LSTM cell gate by gate, the sequence, the constant error carousel, and the GRU cell.

``reference`` holds the readable PyTorch code and the measurements the lecture makes (gate
activations over a sequence, gradient norms through the cell state); ``widgets`` the lecture's
figures and the interactive gate explorer; ``experiments`` the equal-budget comparison on the adding
problem and the predict-then-run task.
"""

from course_lib.lstm.reference import (
    cec_gradient,
    forget_half_life,
    gru_cell,
    hand_built_adding_lstm,
    init_forget_bias,
    layer_weights,
    lstm,
    lstm_bptt,
    lstm_cell,
    lstm_gate_activations,
    lstm_gates,
    state_gradient_norms,
)

__all__ = [
    "cec_gradient",
    "forget_half_life",
    "gru_cell",
    "hand_built_adding_lstm",
    "init_forget_bias",
    "layer_weights",
    "lstm",
    "lstm_bptt",
    "lstm_cell",
    "lstm_gate_activations",
    "lstm_gates",
    "state_gradient_norms",
]
