"""Local record of which exercises a learner has passed (for ``course progress``); no server."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from course_lib.grading.core import CheckResult


def progress_file() -> Path:
    """``$COURSE_PROGRESS_FILE`` if set, else ``~/.local/share/memory-course/progress.json``."""
    env = os.environ.get("COURSE_PROGRESS_FILE")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "memory-course" / "progress.json"


def load() -> dict[str, dict]:
    try:
        return json.loads(progress_file().read_text())
    except (OSError, ValueError):
        return {}


def recording() -> bool:
    """False when ``$COURSE_PROGRESS`` is ``off`` (set by ``course test``, ``bench`` and ``check --solutions``)."""
    return os.environ.get("COURSE_PROGRESS", "").lower() != "off"


def record(result: CheckResult) -> None:
    """Add one attempt; a read-only home (e.g. an autograding sandbox) is silently skipped."""
    if not recording():
        return
    data = load()
    entry = data.get(result.exercise_id, {"attempts": 0, "passed": False, "score": 0})
    entry["attempts"] += 1
    entry["passed"] = entry["passed"] or result.passed
    entry["score"] = max(entry["score"], result.score)
    entry["last"] = time.strftime("%Y-%m-%d %H:%M:%S")
    entry["last_result"] = "not attempted" if result.not_attempted else ("passed" if result.passed else "failed")
    data[result.exercise_id] = entry
    path = progress_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass
