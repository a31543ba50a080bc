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


def _root() -> Path:
    from course_lib.tools.nbgrader_course import course_root

    return course_root()


# --------------------------------------------------------------------------------------------


def cmd_lab(args: argparse.Namespace) -> int:
    root = _root()
    start = root / "notebooks" / "00_start_here.ipynb"
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={root}"]
    if args.no_browser:
        cmd += ["--no-browser", "--ServerApp.ip=0.0.0.0" if args.ip_any else "--ServerApp.ip=127.0.0.1"]
    if args.port:
        cmd.append(f"--ServerApp.port={args.port}")
    cmd.append(str(start.relative_to(root)))
    print("Starting JupyterLab on", start.relative_to(root), flush=True)
    return subprocess.call(cmd, cwd=root)


def _progress_off() -> None:
    """Running the solutions (or the test suite) must not mark the learner's exercises as passed."""
    os.environ["COURSE_PROGRESS"] = "off"


def cmd_check(args: argparse.Namespace) -> int:
    from course_lib.tools.notebook_grading import grade_notebooks

    if args.solutions:
        _progress_off()
    folder = "solutions" if args.solutions else "exercises"
    return 0 if grade_notebooks(_root() / folder, args.modules, timeout=args.timeout) else 1


def cmd_progress(args: argparse.Namespace) -> int:
    from course_lib.grading import EXERCISES, progress

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


def cmd_test(args: argparse.Namespace) -> int:
    root = _root()
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", str(args.workers), "--dist", "loadfile",
           "--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg",
           "tests", "notebooks", "solutions", *args.pytest_args]
    _progress_off()
    env = dict(os.environ, PYTHONHASHSEED="0")
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=root, env=env)


def cmd_build_exercises(args: argparse.Namespace) -> int:
    from course_lib.tools.nbgrader_course import build_exercises

    for path in build_exercises(modules=args.modules or None):
        print("generated", path)
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from course_lib.tools.nbgrader_course import release

    for path in release(Path(args.course_dir), modules=args.modules or None):
        print("released", path)
    print(f"Hand out the folders under {Path(args.course_dir) / 'release'}; collect each student's notebooks "
          f"as SUBMISSIONS/<student>/<NN_name>.ipynb, then run: course autograde {args.course_dir} SUBMISSIONS")
    return 0


def cmd_autograde(args: argparse.Namespace) -> int:
    from course_lib.tools.nbgrader_course import autograde

    csv = autograde(Path(args.course_dir), Path(args.submissions))
    print("gradebook written to", csv)
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
    p.set_defaults(func=cmd_lab)

    p = sub.add_parser("check", help="grade your exercise notebooks from the terminal")
    p.add_argument("modules", nargs="*", type=_module, help=MODULE_HELP)
    p.add_argument("--solutions", action="store_true", help="grade the solution notebooks instead")
    p.add_argument("--timeout", type=int, default=600, help="seconds per notebook cell (default 600)")
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

    p = sub.add_parser("test", help="run the whole test suite (unit tests, graders, notebooks, slides)")
    p.add_argument("--workers", type=int, default=2, help="parallel pytest workers (default 2)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra arguments passed to pytest")
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
    p.set_defaults(func=cmd_autograde)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as exc:
        print(f"course {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
