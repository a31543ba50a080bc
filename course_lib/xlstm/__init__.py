"""xLSTM: the sLSTM (exponential gating, memory mixing) and the mLSTM (a matrix memory).

Readable PyTorch references of every form, side by side with one signature per family; see
``slstm.py`` and ``mlstm.py``.
"""

from course_lib.xlstm.slstm import (
    SLSTMBlock,
    SLSTMLayer,
    SLSTMTokenModel,
    headwise_recurrence,
    initial_state,
    log_forget_gate,
    lstm_headwise,
    lstm_step_headwise,
    slstm,
    slstm_step,
    slstm_unstabilised,
    stabilise,
)

__all__ = [
    "SLSTMBlock",
    "SLSTMLayer",
    "SLSTMTokenModel",
    "headwise_recurrence",
    "initial_state",
    "log_forget_gate",
    "lstm_headwise",
    "lstm_step_headwise",
    "slstm",
    "slstm_step",
    "slstm_unstabilised",
    "stabilise",
]
