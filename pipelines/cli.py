"""The ``gpvton`` command: one subcommand per job.

Each job module exposes ``add_arguments(parser)`` and ``run(args) -> int``; only the chosen
job's module is imported, so ``gpvton --help`` stays fast and a missing optional extra only
affects the jobs that need it.

Exit codes, the same for every job:
  0  success
  1  the job ran but failed (e.g. the failed fraction exceeded its limit)
  2  configuration or usage error: one line says what to fix (``-v`` adds the traceback)
  130 interrupted

Output: our progress and summary lines. Library logs (Beam, Ray, …) and worker logs go to the
job's ``logs/`` folder; ``-v`` shows them on the console as well, at debug level.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from typing import Callable

from pipelines.config import UserError

COMMANDS: dict[str, tuple[str, str]] = {
    "preprocess": ("pipelines.preprocess.job", "build condition shards from garments and model photos (Beam)"),
    "render": ("pipelines.render.cli", "render try-ons over a catalogue × model-photo cross product (Ray)"),
    "status": ("pipelines.status", "what a render job has done so far: units, failures, errors, logs"),
    "prune": ("pipelines.prune", "delete renders the catalogue no longer serves, and old change lists"),
    "train": ("pipelines.train", "train the warping module or the generator (Ray Train)"),
    "eval": ("pipelines.evaluate.job", "set-level metrics (SSIM, LPIPS, FID, KID, mIoU) over a render job"),
    "report": ("pipelines.report.job", "static HTML QA report of a render job, worst first (the QA gate)"),
    "demo": ("pipelines.demo", "make a small catalogue and run preprocess → render → report"),
}

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130

OUR_LOGGERS = ("gpvton", "pipelines", "workers", "infra", "gpvton_core")
# Errors the user fixes (a wrong flag, a missing file): one line and exit 2, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError, NotADirectoryError,
                                                IsADirectoryError, PermissionError)


class ConsoleFilter(logging.Filter):
    """Quiet console: our loggers from INFO, libraries only from ERROR (everything when verbose)."""

    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose:
            return True
        ours = record.name.split(".", 1)[0] in OUR_LOGGERS
        return record.levelno >= (logging.INFO if ours else logging.ERROR)


class StderrHandler(logging.StreamHandler):
    """A console handler that writes to whatever ``sys.stderr`` is now (callers and tests swap it)."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


def setup_logging(verbose: bool) -> Callable[[], None]:
    """Root at INFO (DEBUG with -v) so job log files get library records; the console filters.

    ``verbose`` is visible to the jobs as ``logging.getLogger("gpvton").isEnabledFor(DEBUG)``
    (see :func:`is_verbose`): render then also streams the Ray workers' output. Returns a function
    that restores the previous logging state (``main`` is also called in process, by tests).
    """
    root = logging.getLogger()
    chatty = ("apache_beam", "urllib3", "botocore", "s3fs", "fsspec", "matplotlib", "PIL", "filelock")
    saved = {name: logging.getLogger(name or None).level for name in ("", *OUR_LOGGERS, *chatty)}
    console = StderrHandler()
    console.addFilter(ConsoleFilter(verbose))
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(console)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    # Chatty libraries: their INFO lines are noise in a job's log file, their DEBUG lines even with -v.
    for name in chatty:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    logging.captureWarnings(True)

    def restore() -> None:
        root.removeHandler(console)
        for name, level in saved.items():
            logging.getLogger(name or None).setLevel(level)
        logging.captureWarnings(False)

    return restore


def is_verbose() -> bool:
    """Whether the command runs with ``-v`` (or a caller configured debug logging itself)."""
    return logging.getLogger("gpvton").isEnabledFor(logging.DEBUG)


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpvton",
        description="Batch virtual try-on for fashion catalogues with GP-VTON.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {k:<11} {v[1]}" for k, v in COMMANDS.items())
        + "\n\nRun 'gpvton COMMAND --help' for a command's options; -v (anywhere) shows library and\n"
          "worker logs and the traceback of an error.\n"
          "Exit codes: 0 success, 1 job failed, 2 configuration error.",
    )
    p.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    p.add_argument("-v", "--verbose", action="store_true", help="library/worker logs and tracebacks")
    return p


def _user_message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, UserError) and exc.filename:
        what = {FileNotFoundError: "not found", NotADirectoryError: "not a folder",
                IsADirectoryError: "is a folder, not a file", PermissionError: "permission denied"}
        return f"{what.get(type(exc), exc.strerror or type(exc).__name__)}: {exc.filename}"
    return str(exc) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in ("-v", "--verbose") for a in argv)
    argv = [a for a in argv if a not in ("-v", "--verbose")]
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return EXIT_OK if argv else EXIT_CONFIG
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        top.print_usage(sys.stderr)
        print(f"gpvton: unknown command {command!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_CONFIG
    restore_logging = setup_logging(verbose)
    try:
        return _run_command(command, rest, verbose)
    finally:
        restore_logging()


def _run_command(command: str, rest: list[str], verbose: bool) -> int:
    module_name, help_text = COMMANDS[command]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if verbose:
            traceback.print_exc()
        print(f"gpvton {command}: a dependency is missing ({exc}). "
              f"Install the extras: pip install -e '.[all]'", file=sys.stderr)
        return EXIT_CONFIG
    parser = argparse.ArgumentParser(prog=f"gpvton {command}", description=help_text)
    module.add_arguments(parser)
    try:
        args = parser.parse_args(rest)
    except SystemExit as exc:  # argparse: --help exits 0, bad usage exits 2
        return int(exc.code or 0)
    try:
        return int(module.run(args))
    except USER_ERRORS as exc:
        if verbose:
            traceback.print_exc()
        hint = "" if verbose else " (-v for the traceback)"
        print(f"gpvton {command}: error: {_user_message(exc)}{hint}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print(f"gpvton {command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
