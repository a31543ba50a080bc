"""Synthetic tasks, generated on the fly from a seed (nothing is downloaded)."""

from course_lib.tasks.adding import adding_accuracy, adding_problem

__all__ = ["adding_accuracy", "adding_problem"]
