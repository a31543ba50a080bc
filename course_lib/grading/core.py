"""The grading engine: ordered sub-checks, safe calls of learner code, and the result object.

A grader is a function ``grader(g: Grader, fn)`` registered with :func:`exercise`. It calls the
learner's ``fn`` only through :meth:`Grader.call` and records sub-checks through the ``Grader``'s
methods. The first failing sub-check stops the grader (by raising ``_Stop`` internally); every
sub-check that ran is reported, in order, with what was checked, on which input and, for values,
the max abs/rel error and where -- never the expected values.

Stages, in the order a grader should use them::

    signature -> runs -> types -> shapes -> dtype -> finite -> values -> gradients -> properties -> rules

Diagnosis: beside each grader, its module keeps a catalogue of common mistakes, registered with
:func:`mistake`: functions with the reference's signature that compute what a typical wrong
implementation returns. When a value check made with :meth:`Grader.check_outputs` fails, the grader
runs the catalogue on the same inputs and, if the learner's output matches one entry (and not the
reference), names the mistake in plain words. Rules a statement sets ("without autograd", "do not
call the built-in") are checked with :meth:`Grader.call_recording` and :meth:`Grader.forbid`.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import html
import inspect
import math
import os
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode, resolve_name
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

STAGES = ("signature", "runs", "types", "shapes", "dtype", "finite", "values", "gradients", "properties",
          "rules")

DEFAULT_TIMEOUT_S = 30.0

# Tolerances by the dtype the learner's function computed in (against a float64 reference).
TOLERANCES = {
    torch.float64: dict(atol=1e-8, rtol=1e-6),
    torch.float32: dict(atol=1e-4, rtol=1e-3),
}


class _Stop(Exception):
    """Raised inside a grader when a sub-check fails: grading ends there."""


class GraderTimeout(Exception):
    """Injected into the learner's thread when their function runs past the time limit."""


@dataclass
class SubCheck:
    """One line of feedback: a stage, a short name, whether it passed and why."""

    stage: str
    name: str
    passed: bool
    message: str = ""


@dataclass
class Exercise:
    """An entry of the registry: what is graded and how much it is worth."""

    id: str
    module: str
    title: str
    points: int
    difficulty: str
    minutes: int
    signature: str
    grader: Callable[[Grader, Callable], None] = field(repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class Mistake:
    """A common wrong implementation of an exercise, used to name the learner's mistake.

    ``fn`` has the signature of the exercise's reference and returns what the mistaken code would
    return (computed in float64); ``description`` completes the sentence "your output matches what
    you get when ...". With ``native_dtype`` the mistake runs on the learner's inputs as they are
    (not cast to float64): for mistakes that only show in float32, such as an overflow.
    """

    exercise_id: str
    description: str
    fn: Callable[..., Any] = field(repr=False)
    native_dtype: bool = False


MISTAKES: dict[str, list[Mistake]] = {}
"""Exercise id -> its catalogue of :class:`Mistake`. Filled by the ``@mistake`` decorators."""


def mistake(exercise_id: str, description: str, *,
            native_dtype: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn`` as a catalogued mistake of ``exercise_id`` (see :class:`Mistake`)."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        MISTAKES.setdefault(exercise_id, []).append(Mistake(exercise_id, description, fn, native_dtype))
        return fn

    return register


@dataclass
class CheckResult:
    """What :func:`course_lib.grading.check` returns.

    ``passed`` is True when every sub-check passed; ``score`` is the points earned (all or nothing);
    ``checks`` lists the sub-checks in the order they ran.
    """

    exercise_id: str
    title: str
    points: int
    checks: list[SubCheck]
    not_attempted: bool = False
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def score(self) -> int:
        return self.points if self.passed else 0

    @property
    def failure(self) -> SubCheck | None:
        return next((c for c in self.checks if not c.passed), None)

    def summary(self) -> str:
        if self.not_attempted:
            return f"{self.exercise_id}: not attempted yet"
        if self.passed:
            return f"{self.exercise_id}: passed all {len(self.checks)} checks ({self.score}/{self.points} points)"
        fail = self.failure
        return f"{self.exercise_id}: failed at {fail.stage} - {fail.name} (0/{self.points} points)"

    def __str__(self) -> str:
        lines = [f"[{self.exercise_id}] {self.title}", self.summary()]
        for c in self.checks:
            mark = "PASS" if c.passed else "FAIL"
            lines.append(f"  {mark} {c.stage:<10} {c.name}")
            if c.message and not c.passed:
                lines.extend("       " + line for line in c.message.splitlines())
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.passed else ("#9a6700" if self.not_attempted else "#cf222e")

        def row(c: SubCheck) -> str:
            mark = "&#10004;" if c.passed else "&#10008;"
            msg = html.escape(c.message).replace("\n", "<br>") if (c.message and not c.passed) else ""
            return (f"<tr><td style='color:{'#1a7f37' if c.passed else '#cf222e'}'>{mark}</td>"
                    f"<td>{html.escape(c.stage)}</td><td style='text-align:left'>{html.escape(c.name)}</td>"
                    f"<td style='font-family:monospace;text-align:left'>{msg}</td></tr>")

        passed = [c for c in self.checks if c.passed]
        failed = [c for c in self.checks if not c.passed]
        fail_html = f"<table style='margin-top:4px'>{''.join(row(c) for c in failed)}</table>" if failed else ""
        pass_html = (f"<details><summary>{len(passed)} sub-check(s) passed</summary>"
                     f"<table>{''.join(row(c) for c in passed)}</table></details>") if passed else ""
        return (
            f"<div style='border-left:4px solid {colour};padding:4px 10px'>"
            f"<b>{html.escape(self.title)}</b> <code>{html.escape(self.exercise_id)}</code><br>"
            f"<span style='color:{colour}'><b>{html.escape(self.summary())}</b></span>"
            f"{fail_html}{pass_html}</div>"
        )

    def raise_for_status(self) -> CheckResult:
        """Raise ``AssertionError`` with the feedback unless every sub-check passed."""
        if not self.passed:
            raise AssertionError(str(self))
        return self


# --------------------------------------------------------------------------------------------
# Running learner code safely
# --------------------------------------------------------------------------------------------


def _clone_tree(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone_tree(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _clone_tree(v) for k, v in obj.items()}
    return obj


def _tensors_with_paths(obj: Any, path: str) -> list[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        return [(path, obj)]
    if isinstance(obj, (list, tuple)):
        return [t for i, o in enumerate(obj) for t in _tensors_with_paths(o, f"{path}[{i}]")]
    if isinstance(obj, dict):
        return [t for k, o in obj.items() for t in _tensors_with_paths(o, f"{path}[{k!r}]")]
    return []


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(torch.equal(torch.nan_to_num(a.detach(), nan=1.2345), torch.nan_to_num(b, nan=1.2345)))


def _learner_frame(exc: BaseException) -> str:
    """The innermost traceback line that belongs to the learner, not to torch or this package."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "course_lib/grading" not in f.filename and "/torch/" not in f.filename
            and "/threading.py" not in f.filename]
    if not ours:
        return ""
    f = ours[-1]
    where = "your notebook cell" if "ipykernel" in f.filename or f.filename.startswith("<") else f.filename
    return f"line {f.lineno} of {where}, in {f.name}: {f.line or ''}".rstrip()


class _GlobalState:
    """Snapshot of the global state a learner's code could change; restored after grading."""

    def __init__(self) -> None:
        self.dtype = torch.get_default_dtype()
        self.grad = torch.is_grad_enabled()
        self.torch_rng = torch.get_rng_state()
        self.py_rng = random.getstate()
        try:
            import numpy as np

            self.np_rng = np.random.get_state()
        except ImportError:  # pragma: no cover - numpy is a dependency
            self.np_rng = None

    def restore(self) -> None:
        torch.set_default_dtype(self.dtype)
        torch.set_grad_enabled(self.grad)
        torch.set_rng_state(self.torch_rng)
        random.setstate(self.py_rng)
        if self.np_rng is not None:
            import numpy as np

            np.random.set_state(self.np_rng)


def _run_with_timeout(fn: Callable, args: tuple, kwargs: dict, timeout_s: float, inference: bool):
    """Run ``fn(*args, **kwargs)`` in a worker thread; stop it with an exception past ``timeout_s``.

    A thread (not a subprocess) keeps the learner's notebook objects usable and avoids forking a
    process that holds OpenMP threads. A Python-level loop is interrupted by an asynchronously
    raised ``GraderTimeout``; a single long C call finishes before the exception lands.
    """
    box: dict[str, Any] = {}
    grad = torch.is_grad_enabled()

    def target() -> None:
        try:
            with torch.inference_mode(inference), torch.set_grad_enabled(grad and not inference):
                box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - every learner error becomes feedback
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True, name="course-grader")
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident), ctypes.py_object(GraderTimeout))
        worker.join(2.0)
        raise GraderTimeout
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _to_float64(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.double() if v.is_floating_point() else v
    if isinstance(v, (tuple, list)):
        return type(v)(_to_float64(o) for o in v)
    return v


def as_float64(args: dict[str, Any]) -> dict[str, Any]:
    """The same arguments with every floating-point tensor in float64 (for the reference computation).

    Tensors inside tuples and lists (an LSTM ``state``, a list of gradients) are converted too.
    """
    return {k: _to_float64(v) for k, v in args.items()}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``, for case descriptions in feedback."""
    return str(dtype).replace("torch.", "")


def _fmt_index(idx: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def _describe(args: dict[str, Any]) -> str:
    parts = []
    for k, v in args.items():
        if isinstance(v, torch.Tensor):
            parts.append(f"{k}: {tuple(v.shape)} {str(v.dtype).replace('torch.', '')}")
        elif isinstance(v, (int, float, str, bool)) or v is None:
            parts.append(f"{k}={v!r}")
    return ", ".join(parts)


GRADER_TIMEOUT_ENV = "COURSE_GRADER_TIMEOUT_S"  # set by `course autograde --grader-timeout`


def grader_timeout_from_env() -> float | None:
    """The time limit for a learner's function set for a whole class (``COURSE_GRADER_TIMEOUT_S``), if any."""
    try:
        value = float(os.environ.get(GRADER_TIMEOUT_ENV, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


class Grader:
    """Context handed to a grader function: safe calls, seeded inputs, and sub-check recording."""

    def __init__(self, exercise: Exercise, seed: int = 0, timeout_s: float | None = None) -> None:
        self.exercise = exercise
        self.checks: list[SubCheck] = []
        self.timeout_s = (grader_timeout_from_env() or exercise.timeout_s) if timeout_s is None else timeout_s
        self.gen = torch.Generator().manual_seed(seed)
        self.not_attempted = False

    # ---- recording ------------------------------------------------------------------------
    def ok(self, stage: str, name: str, message: str = "") -> None:
        assert stage in STAGES, stage
        self.checks.append(SubCheck(stage, name, True, message))

    def fail(self, stage: str, name: str, message: str) -> None:
        assert stage in STAGES, stage
        self.checks.append(SubCheck(stage, name, False, message))
        raise _Stop

    def expect(self, cond: bool, stage: str, name: str, message: str) -> None:
        """Record a sub-check that passes when ``cond`` holds and otherwise stops grading."""
        if cond:
            self.ok(stage, name)
        else:
            self.fail(stage, name, message)

    def expect_pair(self, result: Any, names: str, case: str) -> None:
        """The learner returned a pair, e.g. ``names="(out, h_n)"``; anything else stops grading at "types"."""
        is_seq = isinstance(result, (tuple, list))
        self.expect(is_seq and len(result) == 2, "types", f"returns {names} ({case})",
                    f"expected a pair {names}, got {type(result).__name__}"
                    + (f" of length {len(result)}" if is_seq else ""))

    # ---- inputs ---------------------------------------------------------------------------
    def randn(self, *shape: int, dtype: torch.dtype = torch.float64, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=self.gen, dtype=dtype) * scale

    def rand(self, *shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return torch.rand(*shape, generator=self.gen, dtype=dtype)

    def randint(self, low: int, high: int, shape: Sequence[int]) -> torch.Tensor:
        return torch.randint(low, high, tuple(shape), generator=self.gen)

    # ---- structure ------------------------------------------------------------------------
    def check_signature(self, fn: Any, params: Sequence[str]) -> None:
        """The object is callable and accepts the contract's parameter names (extra defaults allowed).

        Names matter: graders may pass arguments by name. When the learner's function has as many
        parameters as the contract but some are named differently, the message says which to rename
        and that renaming is the whole fix.
        """
        if not callable(fn):
            self.fail("signature", "is a function", f"expected a function, got {type(fn).__name__}")
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            self.ok("signature", "is callable")
            return
        names = [p.name for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        has_var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
        missing = [p for p in params if p not in names and not has_var_kw]
        unknown = [n for n in names if n not in params]
        if missing and len(names) == len(params) and len(unknown) == len(missing):
            renames = ", ".join(f"{old} to {new}" for old, new in zip(unknown, missing, strict=True))
            self.fail(
                "signature",
                "parameter names",
                f"your function takes ({', '.join(names)}); the contract names them ({', '.join(params)}). "
                f"Rename {renames}: that is the whole fix (graders may pass arguments by name)",
            )
        if missing:
            self.fail(
                "signature",
                "parameter names",
                f"expected parameters ({', '.join(params)}); missing: {', '.join(missing)}; "
                f"your function takes ({', '.join(names)})",
            )
        required = [
            p.name for p in sig.parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        extra = [r for r in required if r not in params]
        if extra:
            self.fail("signature", "parameter names", f"unexpected required parameters: {', '.join(extra)}")
        self.ok("signature", "callable with the expected parameters")

    def call(self, fn: Callable, case: str, /, *args: Any, inference: bool = False, **kwargs: Any) -> Any:
        """Call the learner's function safely; a failure to run, or a mutation, stops grading.

        ``case`` names the input in messages (e.g. ``"B=2, S=5, float64"``).
        """
        originals = _clone_tree((args, kwargs))
        start = time.perf_counter()
        try:
            out = _run_with_timeout(fn, args, kwargs, self.timeout_s, inference)
        except NotImplementedError:
            self.not_attempted = True
            self.fail("runs", "not attempted yet", "the function raises NotImplementedError: replace the "
                      "`raise NotImplementedError()` line with your solution")
        except GraderTimeout:
            self.fail("runs", f"finishes in time ({case})",
                      f"your function took longer than {self.timeout_s:g} s on {case} and was stopped "
                      "(an infinite loop, or a loop over far more steps than needed?)")
        except Exception as exc:  # noqa: BLE001
            where = _learner_frame(exc)
            why = ""
            if inference and isinstance(exc, RuntimeError) and ("grad" in str(exc) or "inference" in str(exc).lower()):
                why = ("\nautograd is off here: the grader calls this function inside torch.inference_mode(), "
                       "so the gradients must be computed by hand")
            self.fail("runs", f"runs without error ({case})",
                      f"{type(exc).__name__}: {exc}" + (f"\n  at {where}" if where else "") + why)
        elapsed = time.perf_counter() - start
        self.last_call_seconds = elapsed
        new_args = (args, kwargs)
        for (path, before), (_, after) in zip(_tensors_with_paths(originals, "arg"),
                                              _tensors_with_paths(new_args, "arg"), strict=True):
            if not _same(after, before):
                self.fail("runs", f"leaves its inputs unchanged ({case})",
                          f"your function modified an input tensor in place ({self._arg_name(fn, path)}); "
                          "work on copies (e.g. x = x.clone()) or use out-of-place operations")
        return out

    @staticmethod
    def _arg_name(fn: Callable, path: str) -> str:
        # path looks like "arg[0][2]" (positional) or "arg[1]['name']" (keyword)
        try:
            parts = path[len("arg"):].strip("[]").split("][")
            if parts[0] == "0":
                names = list(inspect.signature(fn).parameters)
                return names[int(parts[1])]
            return parts[1].strip("'")
        except (ValueError, IndexError, TypeError):
            return path

    # ---- tensors --------------------------------------------------------------------------
    def check_tensor(
        self,
        out: Any,
        ref: torch.Tensor,
        name: str,
        case: str,
        dtype: torch.dtype | None = None,
        tol: dict | None = None,
        stage: str = "values",
        args: dict[str, Any] | None = None,
        select: Callable[[Any], Any] | None = None,
        notes: Callable[[], list[str]] | None = None,
    ) -> None:
        """Type, shape, dtype, finiteness and values of one returned tensor against a float64 reference.

        With ``args`` (the reference's keyword arguments for this case), a value failure is diagnosed
        against the exercise's catalogue of mistakes (see :meth:`check_outputs`).
        """
        self.check_outputs(out, ref, name, case, dtype=dtype, tol=tol, stage=stage, args=args, select=select,
                           notes=notes)

    def check_outputs(
        self,
        result: Any,
        ref: Any,
        names: Any,
        case: str,
        *,
        dtype: torch.dtype | None = None,
        tol: dict | None = None,
        stage: str = "values",
        args: dict[str, Any] | None = None,
        select: Callable[[Any], Any] | None = None,
        notes: Callable[[], list[str]] | None = None,
    ) -> None:
        """Check every output of one call against the float64 reference ``ref``.

        ``ref`` is a tensor or a (nested) tuple/list/dict of tensors; ``names`` mirrors it with a name
        per tensor (e.g. ``("out", ("h_n", "c_n"))``; for a dict, ``None`` names each entry by its key).
        ``dtype`` is the dtype expected of floating-point outputs (default: the reference's). Order of
        sub-checks: structure, then type/shape/dtype/finiteness of each output, then all values at
        once. When a value is wrong, the message gives the status of every output (``h ✓, c ✗``) and,
        if ``args`` is given, names the catalogued mistake (:func:`mistake`) that the learner's outputs
        match: ``MISTAKES[exercise](**args)``, passed through ``select`` if given, must reproduce them.
        A NaN/inf where the reference is finite stops at "finite"; it is diagnosed the same way (a
        mistake matches when it has its NaN/inf at the same places). ``notes``, if given, is called
        on a failure and returns extra lines for the message: cheap properties of the learner's
        outputs that point at the mistake (rows of weights that do not sum to 1, a mask that lets a
        query see later keys, ...).
        """
        pairs = self._pair_outputs(result, ref, names, case)
        for name, out, r in pairs:
            want = (dtype if dtype is not None else r.dtype) if r.is_floating_point() else r.dtype
            self._check_structure(out, r, name, case, want, finite=False)
        for name, out, r in pairs:
            problem = self._non_finite(out, r, name)
            if problem:
                lines = [problem]
                diagnosis = self._diagnose(pairs, args, tol, select) if args is not None else None
                if diagnosis:
                    lines.append(f"diagnosis: your output matches what you get when {diagnosis}")
                lines += self._notes(notes)
                self.fail("finite", f"{name} has no NaN/inf ({case})", "\n".join(lines))
        label = ", ".join(n for n, _, _ in pairs)
        wants = [((dtype if dtype is not None else r.dtype) if r.is_floating_point() else r.dtype) for _, _, r in pairs]
        shapes = "; ".join(f"{n}: {tuple(o.shape)} {dtype_name(w)}" for (n, o, _), w in zip(pairs, wants, strict=True))
        self.ok("types", f"{shapes}, finite ({case})" if len(pairs) > 1
                else f"{label}: tensor of shape {tuple(pairs[0][1].shape)}, {dtype_name(wants[0])}, finite ({case})")
        errors = [(n, _value_error(o, r, tol)) for n, o, r in pairs]
        wrong = [(n, e) for n, e in errors if e is not None]
        if not wrong:
            self.ok(stage, f"{label} values ({case})")
            return
        lines = []
        if len(pairs) > 1:
            lines.append("status: " + ", ".join(f"{n} {'✗' if e else '✓'}" for n, e in errors))
        lines += [f"{n} differs from the correct result: {e}" for n, e in wrong]
        diagnosis = self._diagnose(pairs, args, tol, select) if args is not None else None
        if diagnosis:
            lines.append(f"diagnosis: your output matches what you get when {diagnosis}")
        else:
            if len(pairs) > 1:
                right = [n for n, e in errors if e is None]
                lines.append(f"right: {', '.join(right) if right else 'none'}; "
                             f"wrong: {', '.join(n for n, _ in wrong)}")
            known = len(MISTAKES.get(self.exercise.id, [])) if args is not None else 0
            if known:
                lines.append(f"(none of the {known} common mistakes the grader knows for this exercise "
                             "gives this output)")
        lines += self._notes(notes)
        self.fail(stage, f"{label} values ({case})", "\n".join(lines))

    @staticmethod
    def _notes(notes: Callable[[], list[str]] | None) -> list[str]:
        if notes is None:
            return []
        try:
            return list(notes())
        except Exception:  # noqa: BLE001 - a property that cannot be computed on this output says nothing
            return []

    def check_close(self, out: torch.Tensor, ref: torch.Tensor, name: str, case: str,
                    tol: dict | None = None, stage: str = "values") -> None:
        err = _value_error(out, ref, tol)
        if err is not None:
            self.fail(stage, f"{name} values ({case})", f"{name} differs from the correct result: {err}")
        self.ok(stage, f"{name} values ({case})")

    def _pair_outputs(self, result: Any, ref: Any, names: Any, case: str) -> list[tuple[str, Any, torch.Tensor]]:
        """Walk ``result`` along the structure of ``ref``; a different structure stops at "types"."""
        if isinstance(ref, torch.Tensor):
            return [(names, result, ref)]
        if isinstance(ref, dict):
            names = names if names is not None else {k: k for k in ref}
            if not isinstance(result, dict):
                self.fail("types", f"returns a dict ({case})",
                          f"expected a dict with keys {sorted(ref)}, got {type(result).__name__}")
            missing = [k for k in ref if k not in result]
            if missing:
                self.fail("types", f"returns every key ({case})", f"keys missing from your dict: {missing}")
            return [p for k in ref for p in self._pair_outputs(result[k], ref[k], names[k], case)]
        if isinstance(ref, (tuple, list)):
            spelled = _spell(names)
            is_seq = isinstance(result, (tuple, list))
            if not (is_seq and len(result) == len(ref)):
                self.fail("types", f"returns {spelled} ({case})",
                          f"expected {_count_word(len(ref))} {spelled}, got {type(result).__name__}"
                          + (f" of length {len(result)}" if is_seq else ""))
            return [p for o, r, n in zip(result, ref, names, strict=True) for p in self._pair_outputs(o, r, n, case)]
        raise TypeError(f"reference output of type {type(ref).__name__}")

    def _check_structure(self, out: Any, ref: torch.Tensor, name: str, case: str, want: torch.dtype,
                         finite: bool = True) -> None:
        if not isinstance(out, torch.Tensor):
            self.fail("types", f"{name} is a tensor ({case})", f"{name} should be a torch.Tensor, got "
                      f"{type(out).__name__}")
        if tuple(out.shape) != tuple(ref.shape):
            self.fail("shapes", f"{name} shape ({case})",
                      f"{name} has shape {tuple(out.shape)}; the contract asks for {tuple(ref.shape)} here")
        if out.dtype != want:
            self.fail("dtype", f"{name} dtype ({case})",
                      f"{name} has dtype {out.dtype}; with these inputs it should be {want} "
                      "(outputs keep the input dtype)")
        problem = self._non_finite(out, ref, name) if finite else None
        if problem:
            self.fail("finite", f"{name} has no NaN/inf ({case})", problem)

    @staticmethod
    def _non_finite(out: torch.Tensor, ref: torch.Tensor, name: str) -> str | None:
        """Where ``out`` has NaN/inf and the reference is finite, a description; else None."""
        if out.is_floating_point() or out.is_complex():
            bad = ~torch.isfinite(out.detach()) & torch.isfinite(ref)
            if bool(bad.any()):
                idx = bad.nonzero()[0].tolist()
                return f"{name} contains {int(bad.sum())} NaN/inf values, the first at index {_fmt_index(idx)}"
        return None

    def _diagnose(self, pairs: list[tuple[str, Any, torch.Tensor]], args: dict[str, Any], tol: dict | None,
                  select: Callable[[Any], Any] | None) -> str | None:
        """The description of the first catalogued mistake whose outputs the learner's match."""
        for m in MISTAKES.get(self.exercise.id, []):
            try:
                # A fresh copy of any module argument for each entry: a mistake may change it in place.
                call_args = {k: copy.deepcopy(v) if isinstance(v, torch.nn.Module) else v for k, v in args.items()}
                with torch.no_grad():
                    wrong = m.fn(**(call_args if m.native_dtype else as_float64(call_args)))
                wrong = select(wrong) if select is not None else wrong
                wrong_leaves = _flat_tensors(wrong)
            except Exception:  # noqa: BLE001 - a catalogue entry that does not apply to these inputs
                continue
            if len(wrong_leaves) != len(pairs):
                continue
            if any(tuple(w.shape) != tuple(o.shape) for w, (_, o, _) in zip(wrong_leaves, pairs, strict=True)):
                continue
            matches = all(_matches(o, w, tol) for w, (_, o, _) in zip(wrong_leaves, pairs, strict=True))
            differs = any(not _matches(w, r, tol) for w, (_, _, r) in zip(wrong_leaves, pairs, strict=True))
            if matches and differs:
                return m.description
        return None

    # ---- rules ----------------------------------------------------------------------------
    def call_recording(self, fn: Callable, case: str, /, *args: Any, inference: bool = False,
                       operators: bool = True, **kwargs: Any) -> tuple[Any, OpRecord]:
        """:meth:`call`, also recording the torch functions and ATen operators the learner's code ran.

        ``operators=False`` records torch functions (and autograd, and calls of ``course_lib``) but
        not ATen operators: enough for rules that name torch functions, and it avoids the few
        seconds that the first ``TorchDispatchMode`` of a session costs (it imports torch._dynamo).
        """
        record = OpRecord(operators=operators)
        out = self.call(record.wrap(fn), case, *args, inference=inference, **kwargs)
        return out, record

    def forbid(self, record: OpRecord | Sequence[OpRecord], forbidden: dict[str, str], case: str) -> None:
        """Fail at "rules" if the recorded code called one of ``forbidden`` (name fragment -> what to say).

        ``record`` may be a list of records (several calls, e.g. one per case): one sub-check for all.

        Names are matched against torch function names (``torch.lstm_cell``,
        ``torch.nn.functional.scaled_dot_product_attention``, ``torch.autograd.grad``) and ATen
        operator names (``aten._scaled_dot_product_flash_attention_for_cpu``). The special name
        ``"autograd"`` matches any use of autograd: ``backward``, ``torch.autograd.grad``, or a result
        that requires grad when the grader called the function without gradients.
        """
        records = [record] if isinstance(record, OpRecord) else list(record)
        for fragment, why in forbidden.items():
            hit = next((h for r in records if (h := r.autograd if fragment == "autograd" else r.find(fragment))),
                       None)
            if hit:
                self.fail("rules", f"follows the exercise's rules ({case})",
                          f"your function used {hit if isinstance(hit, str) else 'autograd'}: {why}")
        self.ok("rules", f"follows the exercise's rules ({case})")


class OpRecord:
    """The torch functions and ATen operators that a learner's function called (for rule checks).

    ``course`` lists the functions of ``course_lib`` (outside the graders) that the learner's own code
    called directly, e.g. ``course_lib.attention.reference.scaled_dot_product_attention``, so that a
    rule (a fragment starting with "course_lib") can forbid the course's reference implementations.
    """

    def __init__(self, operators: bool = True) -> None:
        self.operators = operators
        self.functions: list[str] = []
        self.aten: list[str] = []
        self.course: list[str] = []
        self.autograd: str | None = None
        self.no_grad_call = False

    def find(self, fragment: str) -> str | None:
        """The first recorded function or operator whose name contains ``fragment``.

        Calls of ``course_lib`` functions are searched only for fragments that start with "course_lib".
        """
        names = self.course if fragment.startswith("course_lib") else self.functions + self.aten
        return next((n for n in names if fragment in n), None)

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if module.startswith("course_lib.") and not module.startswith("course_lib.grading"):
            caller = frame.f_back.f_globals.get("__name__", "") if frame.f_back is not None else ""
            if not caller.startswith("course_lib"):  # called by the learner's code, not by the course itself
                self.course.append(f"{module}.{frame.f_code.co_name}")

    def wrap(self, fn: Callable) -> Callable:
        record = self

        class Functions(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                name = _AUTOGRAD_ENTRY.get(func) or resolve_name(func) or getattr(func, "__name__", repr(func))
                record.functions.append(name)
                if func in _AUTOGRAD_ENTRY and record.autograd is None:
                    record.autograd = name
                out = func(*args, **(kwargs or {}))
                if (record.autograd is None and record.no_grad_call
                        and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tree_leaves(out))):
                    record.autograd = f"{name} (a result that requires grad)"
                return out

        class Operators(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                record.aten.append(str(func.overloadpacket._qualified_op_name).replace("::", "."))
                return func(*args, **(kwargs or {}))

        def recorded(*args: Any, **kwargs: Any) -> Any:
            # Entered in the thread that runs the learner's function: function and dispatch modes are per thread.
            record.no_grad_call = not torch.is_grad_enabled()
            previous = sys.getprofile()
            sys.setprofile(record._profile)
            try:
                with Functions(), (Operators() if record.operators else contextlib.nullcontext()):
                    return fn(*args, **kwargs)
            finally:
                sys.setprofile(previous)

        try:
            recorded.__signature__ = inspect.signature(fn)
        except (TypeError, ValueError):
            pass
        recorded.__name__ = getattr(fn, "__name__", "fn")
        return recorded


_AUTOGRAD_ENTRY = {torch.autograd.grad: "torch.autograd.grad", torch.autograd.backward: "torch.autograd.backward",
                   torch.Tensor.backward: "Tensor.backward"}


def _spell(names: Any) -> str:
    if isinstance(names, (tuple, list)):
        return "(" + ", ".join(_spell(n) for n in names) + ")"
    return str(names)


def _count_word(n: int) -> str:
    return {2: "a pair", 3: "a triple"}.get(n, f"a tuple of {n}")


def _matches(out: torch.Tensor, other: torch.Tensor, tol: dict | None) -> bool:
    """``out`` equals ``other`` within tolerance, NaN/inf included (same non-finite values at the same places)."""
    out, other = out.detach(), other.detach()
    if out.is_floating_point() and other.is_floating_point():
        a, b = out.to(torch.float64), other.to(torch.float64)
        same = (torch.isnan(a) & torch.isnan(b)) | (torch.isinf(a) & (a == b))
        if bool((~torch.isfinite(a) & ~same).any()) or bool((~torch.isfinite(b) & ~same).any()):
            return False
        zero = torch.zeros((), dtype=torch.float64)
        return _value_error(torch.where(same, zero, a).to(out.dtype), torch.where(same, zero, b), tol) is None
    return _value_error(out, other, tol) is None


def _value_error(out: torch.Tensor, ref: torch.Tensor, tol: dict | None) -> str | None:
    """None when ``out`` matches ``ref`` (exactly for bool/integer outputs), else a description."""
    if not out.is_floating_point() or not ref.is_floating_point():
        return report_mismatch(out.detach(), ref.detach())
    tol = tol or TOLERANCES.get(out.dtype, TOLERANCES[torch.float32])
    return report_error(out.detach().to(torch.float64), ref.detach().to(torch.float64), **tol)


def report_mismatch(out: torch.Tensor, ref: torch.Tensor, show: int = 6) -> str | None:
    """For bool or integer outputs: how many entries are wrong and where (no abs/rel error: it means nothing)."""
    out = out.to(ref.dtype) if out.dtype != ref.dtype and ref.dtype != torch.bool else out
    bad = out != ref
    if not bool(bad.any()):
        return None
    parts = [f"{int(bad.sum())} of {bad.numel()} entries wrong"]
    if ref.dtype == torch.bool and out.dtype == torch.bool:
        for value, other in ((True, False), (False, True)):
            where = (bad & (out == value)).nonzero().tolist()
            if where:
                listed = ", ".join(_fmt_index(i) for i in where[:show]) + (", ..." if len(where) > show else "")
                parts.append(f"{value} where it should be {other} at {listed}")
    else:
        where = bad.nonzero().tolist()
        parts.append("at " + ", ".join(_fmt_index(i) for i in where[:show]) + (", ..." if len(where) > show else ""))
    return "; ".join(parts)


def report_error(out: torch.Tensor, ref: torch.Tensor, atol: float, rtol: float) -> str | None:
    """None when ``out`` is within ``atol + rtol*|ref|`` of ``ref`` everywhere, else a description.

    The description gives the max abs and rel error and the index of the worst element; it never
    reveals expected values.
    """
    both_inf = torch.isinf(out) & torch.isinf(ref) & (torch.sign(out) == torch.sign(ref))
    diff = torch.where(both_inf, torch.zeros_like(out), (out - ref).abs())
    diff = torch.nan_to_num(diff, nan=math.inf)
    allowed = atol + rtol * ref.abs().nan_to_num(posinf=0.0, neginf=0.0)
    bad = diff > allowed
    if not bool(bad.any()):
        return None
    if not bool(out.ne(0).any()):
        # All zeros (a placeholder return): the error would equal |expected| itself, so say so instead.
        return (f"your output is all zeros; {int(bad.sum())} of {bad.numel()} elements are outside tolerance "
                f"(atol={atol:g}, rtol={rtol:g})")
    rel = diff / ref.abs().clamp_min(1e-12)
    worst = int(torch.argmax(torch.where(bad, diff - allowed, torch.full_like(diff, -math.inf))))
    idx = list(torch.unravel_index(torch.tensor(worst), ref.shape)) if ref.dim() else []
    return (f"max abs error {float(diff[bad].max()):.3g}, max rel error {float(rel[bad].max()):.3g}; "
            f"{int(bad.sum())} of {bad.numel()} elements outside tolerance (atol={atol:g}, rtol={rtol:g}); "
            f"worst at index {_fmt_index(idx)}")


# --------------------------------------------------------------------------------------------
# The registry and the entry point
# --------------------------------------------------------------------------------------------

EXERCISES: dict[str, Exercise] = {}
"""Exercise id -> :class:`Exercise`. Filled by the ``@exercise`` decorators of the grader modules."""


def exercise(
    id: str,
    *,
    module: str,
    title: str,
    points: int,
    difficulty: str,
    minutes: int,
    signature: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Callable[[Callable[[Grader, Callable], None]], Callable[[Grader, Callable], None]]:
    """Register ``grader(g, fn)`` as the grader of exercise ``id``."""
    assert difficulty in ("warm-up", "easy", "medium", "hard"), difficulty

    def register(grader: Callable[[Grader, Callable], None]) -> Callable[[Grader, Callable], None]:
        if id in EXERCISES:
            raise ValueError(f"exercise {id!r} is registered twice")
        EXERCISES[id] = Exercise(id, module, title, points, difficulty, minutes, signature, grader, timeout_s)
        return grader

    return register


def run_grader(exercise_id: str, fn: Any, *, seed: int = 0, timeout_s: float | None = None) -> CheckResult:
    """Grade ``fn`` for ``exercise_id``; never raises for anything the learner's code does."""
    if exercise_id not in EXERCISES:
        known = ", ".join(sorted(EXERCISES))
        return CheckResult(exercise_id, "unknown exercise", 0, [SubCheck(
            "signature", "known exercise id", False, f"there is no exercise {exercise_id!r}; known ids: {known}")])
    ex = EXERCISES[exercise_id]
    state = _GlobalState()
    g = Grader(ex, seed=seed, timeout_s=timeout_s)
    start = time.perf_counter()
    try:
        # Grade with autograd on even when check() is called inside no_grad() or inference_mode().
        with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
            ex.grader(g, fn)
    except _Stop:
        pass
    except Exception as exc:  # noqa: BLE001 - returned objects the grader could not even inspect
        stage = g.checks[-1].stage if g.checks else "types"
        g.checks.append(SubCheck(stage, "result can be inspected", False,
                                 f"the grader could not use what your function returned "
                                 f"({type(exc).__name__}: {exc}); check the return type against the signature: "
                                 f"{ex.signature}"))
    finally:
        state.restore()
    return CheckResult(ex.id, ex.title, ex.points, g.checks, not_attempted=g.not_attempted,
                       seconds=time.perf_counter() - start)


def _flat_tensors(obj: Any) -> list[torch.Tensor]:
    return [t for _, t in _tensors_with_paths(obj, "")]


def check_gradients(g: Grader, fn: Callable, ref_fn: Callable, case: str, args: dict[str, Any],
                    wrt: Sequence[str], select: Callable[[Any], Any] = lambda out: out) -> None:
    """Gradients of a random projection of ``select(fn(**args))`` w.r.t. ``wrt`` match the reference.

    Checks that gradients flow to every named argument (none detached), then compares them with
    autograd through ``ref_fn`` in float64.
    """
    def leaves() -> dict[str, Any]:
        return {k: (v.detach().clone().requires_grad_(True) if k in wrt else v) for k, v in args.items()}

    mine, ref_args = leaves(), leaves()
    out = g.call(fn, case, **mine)
    outs = _flat_tensors(select(out))
    refs = _flat_tensors(select(ref_fn(**ref_args)))
    weights = [torch.randn(r.shape, generator=g.gen, dtype=r.dtype) for r in refs]
    if len(outs) != len(refs) or not all(o.requires_grad for o in outs):
        g.fail("gradients", f"outputs carry gradients ({case})",
               "no gradient flows back from your outputs: avoid .detach(), .item(), .numpy(), "
               "torch.no_grad() and building new tensors with torch.tensor(...) from results")
    loss = sum((o.to(torch.float64) * w).sum() for o, w in zip(outs, weights, strict=True))
    ref_loss = sum((r * w).sum() for r, w in zip(refs, weights, strict=True))
    tensors = [mine[n] for n in wrt]
    grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    ref_grads = torch.autograd.grad(ref_loss, [ref_args[n] for n in wrt], allow_unused=True)
    status = []
    for name, gr, rg in zip(wrt, grads, ref_grads, strict=True):
        status.append((name, None if gr is None else _value_error(gr, rg, None), gr is None))
    label = ", ".join(f"grad['{n}']" for n in wrt)
    if not any(err or none for _, err, none in status):
        g.ok("gradients", f"{label} ({case})")
        return
    lines = ["status: " + ", ".join(f"grad['{n}'] {'✗' if (err or none) else '✓'}" for n, err, none in status)]
    for name, err, none in status:
        if none:
            lines.append(f"no gradient reaches {name}: it does not influence your output, or the path is cut")
        elif err:
            lines.append(f"d(loss)/d({name}) differs from the correct gradient: {err}")
    first = next(n for n, err, none in status if err or none)
    missing = next((True for n, _, none in status if n == first and none), False)
    g.fail("gradients", f"gradient reaches {first} ({case})" if missing else f"d(loss)/d({first}) values ({case})",
           "\n".join(lines))
