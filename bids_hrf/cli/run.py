"""``bids-hrf`` entry point: parse, validate, run, and turn errors into exit codes."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Sequence

from bids_hrf.errors import EXIT_FAILURE, EXIT_OK, BidsHrfError, ValidationErrors

LOGGER = logging.getLogger("bids_hrf")


def setup_logging(verbose: int) -> None:
    """Log to stderr: warnings and progress by default, debug with ``-vv``."""
    level = logging.DEBUG if verbose >= 2 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [bids-hrf] %(levelname)s: %(message)s",
                                           "%H:%M:%S"))
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level)
    LOGGER.propagate = False
    for name in ("nipype.workflow", "nipype.interface", "nipype.utils"):
        logging.getLogger(name).setLevel(logging.INFO if verbose >= 2 else logging.ERROR)
    if verbose < 2:
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
    logging.captureWarnings(True)
    pywarn = logging.getLogger("py.warnings")
    pywarn.handlers[:] = [handler]
    pywarn.setLevel(logging.WARNING if verbose else logging.ERROR)
    pywarn.propagate = False


def _quiet_environment() -> None:
    # nipype's usage telemetry would try the network at import time.
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    os.environ.setdefault("NO_ET", "1")
    os.environ.setdefault("TEMPLATEFLOW_AUTOUPDATE", "0")
    os.environ.setdefault("MPLBACKEND", "Agg")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bids-hrf`` and return its exit code (0 ok, 1 failure, 64/65/66/73 user errors)."""
    _quiet_environment()
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = sum(a.count("v") for a in argv if a.startswith("-v") and set(a[1:]) == {"v"})
    verbose += argv.count("--verbose")
    setup_logging(verbose)
    try:
        from bids_hrf.cli.config_file import parse_with_config
        from bids_hrf.cli.parser import build_parser, config_from_args

        parser = build_parser()
        args, printed = parse_with_config(parser, argv)
        if printed is not None:
            print(printed, end="")
            return EXIT_OK
        config = config_from_args(args)
        from bids_hrf.api import run

        run(config)  # writes OUTPUT_DIR/config.toml
    except ValidationErrors as exc:
        for err in exc.errors:
            print(f"bids-hrf: error: {err.one_line()}", file=sys.stderr)
        return exc.exit_code
    except BidsHrfError as exc:
        print(f"bids-hrf: error: {exc.one_line()}", file=sys.stderr)
        if verbose >= 2:
            raise
        return exc.exit_code
    except KeyboardInterrupt:
        print("bids-hrf: interrupted; rerun with the same -w/--work-dir to resume",
              file=sys.stderr)
        return 130
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    except MemoryError:
        print("bids-hrf: error: out of memory -- lower --nprocs, give --mem-gb, or use a "
              "machine with more memory", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # an unexpected failure: one line unless --verbose
        if verbose >= 1:
            raise
        print(f"bids-hrf: error: unexpected {type(exc).__name__}: {exc} -- rerun with -vv for "
              "the traceback and report it", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
