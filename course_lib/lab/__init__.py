"""JupyterLab settings that ``course lab`` starts with (data files, no code).

``config/`` is added to ``JUPYTER_CONFIG_PATH`` for learners: it switches off nbgrader's server
extensions and its JupyterLab menus (instructors get them with ``course lab --nbgrader``).
``settings/overrides.json`` becomes JupyterLab's ``app_settings_dir`` overrides: no "get notified
about Jupyter news" pop-up and no update check.
"""

from pathlib import Path

LAB_CONFIG_DIR = Path(__file__).parent / "config"
LAB_SETTINGS_DIR = Path(__file__).parent / "settings"
