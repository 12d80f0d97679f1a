"""The ``gpvton`` command: one subcommand per job.

Each job module exposes ``add_arguments(parser)`` and ``run(args) -> int``; only the chosen
job's module is imported, so ``gpvton --help`` stays fast and a missing optional extra only
affects the jobs that need it.

Exit codes, the same for every job:
  0  success
  1  the job ran but failed (e.g. the failed fraction exceeded its limit)
  2  configuration or usage error (the message says what to fix)
  130 interrupted
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pipelines.config import ConfigError

COMMANDS: dict[str, tuple[str, str]] = {
    "preprocess": ("pipelines.preprocess.job", "build condition shards from garments and model photos (Beam)"),
    "render": ("pipelines.render", "render try-ons over a catalogue × model-photo cross product (Ray)"),
    "train": ("pipelines.train", "train the warping module or the generator (Ray Train)"),
    "eval": ("pipelines.evaluate", "set-level metrics (SSIM, LPIPS, FID, KID, mIoU) over a render job"),
    "report": ("pipelines.report.job", "static HTML QA report of a render job, worst first"),
    "demo": ("pipelines.demo", "make a small catalogue and run preprocess → render → report"),
}

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpvton",
        description="Batch virtual try-on for fashion catalogues with GP-VTON.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {k:<11} {v[1]}" for k, v in COMMANDS.items())
        + "\n\nRun 'gpvton COMMAND --help' for a command's options.\n"
          "Exit codes: 0 success, 1 job failed, 2 configuration error.",
    )
    p.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return EXIT_OK if argv else EXIT_CONFIG
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        top.print_usage(sys.stderr)
        print(f"gpvton: unknown command {command!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_CONFIG
    module_name, help_text = COMMANDS[command]
    verbose = "-v" in rest or "--verbose" in rest
    rest = [a for a in rest if a not in ("-v", "--verbose")]
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
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
    except ConfigError as exc:
        print(f"gpvton {command}: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print(f"gpvton {command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
