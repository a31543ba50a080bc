"""xLSTM: the sLSTM (exponential gating, memory mixing) and the mLSTM (a matrix memory).

Readable PyTorch references of every form, side by side with one signature per family; see
``slstm.py`` and ``mlstm.py``.
"""

from course_lib.xlstm.blocks import (
    MLSTMBlock,
    XLSTMStack,
    XLSTMTokenModel,
    xlstm_pattern,
)
from course_lib.xlstm.mlstm import (
    MLSTM_FORMS,
    log_decay_matrix,
    mlstm_chunkwise,
    mlstm_parallel,
    mlstm_parallel_stopgrad,
    mlstm_recurrent,
    mlstm_step,
)
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
    "MLSTMBlock",
    "XLSTMStack",
    "XLSTMTokenModel",
    "xlstm_pattern",
    "MLSTM_FORMS",
    "log_decay_matrix",
    "mlstm_chunkwise",
    "mlstm_parallel",
    "mlstm_parallel_stopgrad",
    "mlstm_recurrent",
    "mlstm_step",
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
