"""xLSTM: the sLSTM (exponential gating, memory mixing) and the mLSTM (a matrix memory).

Readable PyTorch references of every form, side by side with one signature per family; see
``slstm.py`` and ``mlstm.py``.
"""
