"""The ``course`` command: open the lab, grade, track progress, build slides, measure, and nbgrader."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

MODULE_HELP = "module numbers, e.g. 01 02 (default: all)"


def _module(value: str) -> str:
    if not (len(value) <= 2 and value.isdigit()):
        raise argparse.ArgumentTypeError(f"{value!r} is not a module number such as 01")
    return value.zfill(2)


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of seconds")
    return number


def _check_target(value: str) -> str:
    if value.endswith(".ipynb"):
        return value
    if len(value) <= 2 and value.isdigit():
        return value.zfill(2)
    raise argparse.ArgumentTypeError(f"{value!r} is neither a module number such as 01 nor a notebook (.ipynb)")


def _root() -> Path:
    from course_lib.tools.nbgrader_course import course_root

    return course_root()


# --------------------------------------------------------------------------------------------


def lab_command(root: Path, args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The ``jupyter lab`` command line and environment that ``course lab`` runs."""
    from course_lib.lab import LAB_CONFIG_DIR, LAB_SETTINGS_DIR

    start = root / "notebooks" / "00_start_here.ipynb"
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={root}",
           f"--LabApp.app_settings_dir={LAB_SETTINGS_DIR}"]
    if args.no_browser:
        cmd += ["--no-browser", "--ServerApp.ip=0.0.0.0" if args.ip_any else "--ServerApp.ip=127.0.0.1"]
    if args.port:
        cmd.append(f"--ServerApp.port={args.port}")
    if args.allow_root or (hasattr(os, "geteuid") and os.geteuid() == 0):
        # root is the normal user in containers and cloud notebooks; the server refuses it unless told
        cmd.append("--allow-root")
    # The kernels talk to the server over local sockets (no TCP ports, no "without encryption" warning)
    # when the socket paths, <runtime dir>/kernel-<uuid>-ipc-N, fit the 107-byte limit of Unix sockets.
    from jupyter_core.paths import jupyter_runtime_dir

    if os.name == "posix" and len(os.environ.get("JUPYTER_RUNTIME_DIR") or jupyter_runtime_dir()) <= 50:
        cmd.append("--KernelManager.transport=ipc")
    cmd.append(str(start.relative_to(root)))
    env = dict(os.environ)
    if not args.nbgrader:  # learners: no nbgrader menus, server extensions or "no nbgrader_config.py" warning
        env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
            p for p in (str(LAB_CONFIG_DIR), env.get("JUPYTER_CONFIG_PATH", "")) if p)
    return cmd, env


def cmd_lab(args: argparse.Namespace) -> int:
    root = _root()
    cmd, env = lab_command(root, args)
    print("Starting JupyterLab on", cmd[-1], flush=True)
    os.chdir(root)
    if hasattr(os, "execve"):
        # Become the server: the process the user started (and its id) is JupyterLab itself, so
        # Ctrl-C, SIGTERM or `kill PID` stop the server, with nothing left behind.
        os.execve(sys.executable, cmd, env)
    return subprocess.call(cmd, cwd=root, env=env)


def _progress_off() -> None:
    """Running the solutions (or the test suite) must not mark the learner's exercises as passed."""
    os.environ["COURSE_PROGRESS"] = "off"


def cmd_check(args: argparse.Namespace) -> int:
    from course_lib.tools.notebook_grading import find_notebooks, grade_notebooks

    if args.solutions:
        _progress_off()
    folder = _root() / ("solutions" if args.solutions else "exercises")
    modules = [t for t in args.targets if not t.endswith(".ipynb")]
    paths = [Path(t).expanduser() for t in args.targets if t.endswith(".ipynb")]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"no notebook {path}")
    if modules or not paths:
        paths = find_notebooks(folder, modules) + paths
    return 0 if grade_notebooks(paths, timeout=args.timeout) else 1


def cmd_progress(args: argparse.Namespace) -> int:
    from course_lib.grading import EXERCISES, progress

    known = sorted({ex.module for ex in EXERCISES.values()})
    unknown = sorted(set(args.modules) - set(known))
    if unknown:
        raise ValueError(f"no module {', '.join(unknown)} in this course (modules with exercises: {', '.join(known)})")
    done = progress.load()
    print(f"Progress file: {progress.progress_file()}")
    total = earned = 0
    module = None
    for ex in sorted(EXERCISES.values(), key=lambda e: e.module):
        if args.modules and ex.module not in args.modules:
            continue
        if ex.module != module:
            module = ex.module
            print(f"\nModule {module}")
        entry = done.get(ex.id)
        status = "passed" if entry and entry["passed"] else (entry["last_result"] if entry else "not started")
        mark = "[x]" if status == "passed" else "[ ]"
        total += ex.points
        earned += ex.points if status == "passed" else 0
        print(f"  {mark} {ex.id:<32} {ex.points} pt  {ex.difficulty:<8} ~{ex.minutes:>2} min  {status}")
    print(f"\n{earned}/{total} points")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from course_lib.tools.doctor import run_doctor

    return run_doctor()


def cmd_slides(args: argparse.Namespace) -> int:
    from course_lib.tools.slides import build_slides

    out = Path(args.out) if args.out else _root() / "slides"
    for path in build_slides(args.modules or None, out_dir=out):
        print("built", path)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from course_lib.tools.bench import run_bench

    _progress_off()
    if args.what == "kernels":
        from course_lib.tools.gpu_bench import RESULTS, run_gpu_bench

        return run_gpu_bench(path=Path(args.out) if args.out else RESULTS)
    return run_bench(_root(), notebooks=not args.no_notebooks, tests=args.tests, kernels=not args.no_kernels,
                     out=Path(args.out) if args.out else None)


DEFAULT_TEST_PATHS = ["tests", "notebooks", "solutions"]
CELL_TIMEOUT_S = 300  # nbval: a lecture cell runs in seconds; one past this is stopped and named, not waited on


def _is_test_path(root: Path, arg: str) -> bool:
    """A pytest argument that names a file, folder or test node (``path::name``) rather than an option."""
    if arg.startswith("-"):
        return False
    path = Path(arg.split("::", 1)[0])
    return path.exists() or (root / path).exists()


def cmd_test(args: argparse.Namespace) -> int:
    root = _root()
    extra = list(args.pytest_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    given = [a for a in extra if _is_test_path(root, a)]
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", str(args.workers), "--dist", "loadfile",
           "--no-loadscope-reorder",
           "--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg",
           f"--nbval-cell-timeout={CELL_TIMEOUT_S}", *([] if given else DEFAULT_TEST_PATHS), *extra]
    _progress_off()
    env = dict(os.environ, PYTHONHASHSEED="0")
    # Each worker's kernels get their share of the cores: with two workers on two cores, two-thread PyTorch
    # kernels spin against each other (measured: 17 % more CPU time and 2 more minutes for the whole suite).
    cores_each = max(1, (os.cpu_count() or 1) // max(1, args.workers))
    env.setdefault("OMP_NUM_THREADS", str(cores_each))
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=root, env=env)


def cmd_build_exercises(args: argparse.Namespace) -> int:
    from course_lib.tools.nbgrader_course import build_exercises, check_modules

    check_modules(args.modules)
    for path in build_exercises(modules=args.modules or None):
        print("generated", path)
    return 0


def _inside_repository(path: Path) -> bool:
    try:
        path.resolve().relative_to(_root().resolve())
    except (ValueError, FileNotFoundError):
        return False
    return True


def cmd_release(args: argparse.Namespace) -> int:
    from course_lib.tools.nbgrader_course import release

    course_dir = Path(args.course_dir).expanduser()
    if _inside_repository(course_dir):
        print(f"note: {course_dir} is inside the course repository, where git would see the class's files; "
              "a folder outside it (e.g. ~/my-class) is safer", file=sys.stderr)
    for path in release(course_dir, modules=args.modules or None):
        print("released", path)
    print(f"Hand out the folders under {course_dir / 'release'}; collect each student's notebooks "
          f"as SUBMISSIONS/<student>/<NN_name>.ipynb, then run: course autograde {args.course_dir} SUBMISSIONS")
    return 0


def cmd_autograde(args: argparse.Namespace) -> int:
    from course_lib.tools.nbgrader_course import autograde

    report = autograde(Path(args.course_dir).expanduser(), Path(args.submissions).expanduser(),
                       timeout=args.timeout, feedback=not args.no_feedback, grader_timeout=args.grader_timeout)
    for sub in report.submissions:
        print(sub.line())
    print(f"\ngradebook written to {report.csv_path}")
    if not args.no_feedback:
        print(f"feedback for each student in {Path(args.course_dir) / 'feedback'}")
    if report.with_problems:
        print(f"{len(report.with_problems)} submission(s) with changed read-only cells or code stopped by the "
              "time limit (listed in [...] above and in the gradebook's problems column)")
    if report.not_graded:
        print(f"{len(report.not_graded)} submission(s) could not be graded (marked 'not graded' in the gradebook); "
              "fix or collect them again and rerun", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="course", description="Memory in sequence models - from RNNs to xLSTM: the course's command line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("lab", help="open JupyterLab on notebooks/00_start_here.ipynb")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser (servers, containers)")
    p.add_argument("--ip-any", action="store_true", help="with --no-browser: listen on all interfaces")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--allow-root", action="store_true",
                   help="accepted for familiarity: as root the server is always started with --allow-root")
    p.add_argument("--nbgrader", action="store_true", help="instructors: show nbgrader's menus and formgrader")
    p.set_defaults(func=cmd_lab)

    p = sub.add_parser("check", help="grade your exercise notebooks (or any notebook you give) from the terminal")
    p.add_argument("targets", nargs="*", metavar="NN|NOTEBOOK", type=_check_target,
                   help="module numbers (exercises/NN_*.ipynb) or paths of notebooks, e.g. your own copy "
                        "(default: every exercise notebook)")
    p.add_argument("--solutions", action="store_true", help="with module numbers: grade the solution notebooks")
    p.add_argument("--timeout", type=_positive, default=600,
                   help="seconds a notebook cell may run before it is stopped (default 600)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("progress", help="which exercises you have passed")
    p.add_argument("modules", nargs="*", type=_module, help=MODULE_HELP)
    p.set_defaults(func=cmd_progress)

    p = sub.add_parser("doctor", help="check the environment and say how to fix what is missing")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("slides", help="build the offline reveal.js slide decks into slides/")
    p.add_argument("modules", nargs="*", type=_module, help=MODULE_HELP)
    p.add_argument("--out", default=None, help="output folder (default: slides/)")
    p.set_defaults(func=cmd_slides)

    p = sub.add_parser("bench", help="time notebooks and implementations against torch; write benchmarks/RESULTS.md")
    p.add_argument("what", nargs="?", choices=["all", "kernels"], default="all",
                   help="all (default): notebooks and the CPU comparisons; kernels: the Triton kernels against torch "
                        "and the public kernels on a GPU (without a GPU: an interpreter correctness check)")
    p.add_argument("--tests", action="store_true", help="also time the whole test suite")
    p.add_argument("--no-notebooks", action="store_true", help="skip the notebooks")
    p.add_argument("--no-kernels", action="store_true", help="skip the implementation-against-torch timings")
    p.add_argument("--out", default=None, help="results file (default: benchmarks/RESULTS.md)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("test", help="run the whole test suite, or only the files and tests given "
                                    "(course test tests/test_cli.py notebooks/01_rnn_bptt.ipynb)")
    p.add_argument("--workers", type=int, default=2, help="parallel pytest workers (default 2)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER,
                   help="paths or test ids to run instead of the whole suite, and options passed to pytest")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("build-exercises", help="regenerate exercises/ from solutions/ with nbgrader")
    p.add_argument("modules", nargs="*", type=_module, help=MODULE_HELP)
    p.set_defaults(func=cmd_build_exercises)

    p = sub.add_parser("release", help="instructors: make an nbgrader course directory with the assignments")
    p.add_argument("course_dir")
    p.add_argument("modules", nargs="*", type=_module, help=MODULE_HELP)
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("autograde", help="instructors: autograde SUBMISSIONS/<student>/<NN_name>.ipynb, export CSV")
    p.add_argument("course_dir", help="a folder made by `course release`")
    p.add_argument("submissions", help="folder with one sub-folder of notebooks per student")
    p.add_argument("--timeout", type=_positive, default=None,
                   help="seconds per notebook cell before it is stopped (default: the course directory's, 600)")
    p.add_argument("--grader-timeout", type=_positive, default=None,
                   help="seconds one call of a student's function may run inside a check before it is stopped "
                        "and that exercise scores 0 (default 30)")
    p.add_argument("--no-feedback", action="store_true", help="do not generate the per-student HTML feedback")
    p.set_defaults(func=cmd_autograde)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if args.command != "test":
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.pytest_args = unknown + args.pytest_args  # pytest's own options, e.g. course test -k softplus
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as exc:
        print(f"course {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
