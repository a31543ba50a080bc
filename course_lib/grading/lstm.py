"""Module 02 graders (LSTM gates)."""
