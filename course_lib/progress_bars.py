"""Progress bars for training loops: a widget in a notebook that leaves nothing behind when it is done,
a text bar in a terminal.

``tqdm(..., leave=False)`` in a notebook closes its widget at the end but keeps the output that displayed
it, so a saved notebook holds a view of a model that no longer exists, and JupyterLab logs "widget model
not found" for it when the notebook is reopened. Here a finished bar's output is replaced by an empty one.
A bar that stopped early (an error, an interrupt) stays, as tqdm leaves it, to show where.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from tqdm.auto import tqdm


@functools.cache
def _notebook_bar_class() -> type:
    """tqdm.auto's widget bar, shown through a display handle (defined only once a kernel needs it)."""

    class NotebookBar(tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, display=False, **kwargs)
            self._handle = None
            if not self.disable:
                from IPython.display import display

                self._handle = display(self.container, display_id=True)

        def close(self):
            stopped_early = bool(self.total) and self.n < self.total
            super().close()
            if self._handle is not None and not stopped_early and not self.leave:
                self._handle.update({"text/plain": ""}, raw=True)
                self._handle = None

    return NotebookBar


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 enabled: bool = True) -> tqdm:
    """A tqdm bar over ``iterable`` (or ``total`` manual updates) that disappears when it finishes.

    ``enabled=False``, like ``TQDM_DISABLE=1``, shows nothing."""
    if not enabled:
        return tqdm(iterable, total=total, desc=desc, disable=True)
    from tqdm.notebook import tqdm_notebook

    if issubclass(tqdm, tqdm_notebook):  # tqdm.auto chose the widget bar: running in a Jupyter kernel
        return _notebook_bar_class()(iterable, total=total, desc=desc, leave=False)
    return tqdm(iterable, total=total, desc=desc, leave=False)
