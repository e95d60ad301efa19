"""Configuration files for the command line: ``--config FILE.toml|.json``, ``--print-config``
and the ``config.toml`` every run writes (PyHRF's XML setups, done the modern way).

A configuration file holds command-line options as keys, spelled like the long option
without the leading dashes (``hrf-model``; ``hrf_model`` is accepted too), with TOML/JSON
values: strings, numbers, booleans (``estimate-hrf = false`` for ``--no-estimate-hrf``) and
lists for options taking several values. The file's values become the parser's defaults,
so options given on the command line override them. Positional arguments (BIDS_DIR,
OUTPUT_DIR, the analysis level) stay on the command line. The module works on any
:class:`argparse.ArgumentParser`: the options are the parser's, never listed twice.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bids_hrf.cli.hrf_options import method_options_from_args
from bids_hrf.errors import NoInputError, UsageError, ValidationErrors
from bids_hrf.hrf.registry import resolved_method_options
from bids_hrf.io.config_record import CONFIG_NAME, to_toml

__all__ = ["config_actions", "read_config_file", "apply_config", "resolved_options",
           "to_toml", "parse_with_config", "CONFIG_NAME"]

#: options that are not settings of the analysis
_NOT_SETTINGS = {"help", "version", "config", "print_config"}


def _key(action: argparse.Action) -> str:
    """The file key of an option: its first long option without dashes, else its dest."""
    longs = [s for s in action.option_strings if s.startswith("--")]
    if isinstance(action, argparse._StoreFalseAction) and longs:
        return action.dest.replace("_", "-")
    return longs[0][2:] if longs else action.dest.replace("_", "-")


def config_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every name a file may use -> the parser action it sets.

    Names are the long options without dashes (``hrf-model``, ``no-estimate-hrf``) and the
    destinations with dashes or underscores (``estimate-hrf``, ``estimate_hrf``).
    """
    out: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if not action.option_strings or action.dest in _NOT_SETTINGS or \
                action.dest == argparse.SUPPRESS:
            continue
        for opt in action.option_strings:
            if opt.startswith("--"):
                out[opt[2:]] = action
        for name in (action.dest, action.dest.replace("_", "-")):
            # the dest names the positive action of a --x/--no-x pair
            if name not in out or not isinstance(action, argparse._StoreFalseAction):
                out.setdefault(name, action)
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or JSON (``.json``) configuration file into a flat dict.

    Tables/objects are flattened (``[hrf] model = "spm"`` is not an option: the keys are the
    options themselves), so nested tables are refused with a clear error.

    Raises
    ------
    bids_hrf.errors.NoInputError
        The file does not exist.
    bids_hrf.errors.UsageError
        The file is not valid TOML/JSON, or holds tables.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NoInputError(f"configuration file {path} cannot be read ({exc.strerror})",
                           fix="give the path of an existing .toml or .json file") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"configuration file {path} is not valid JSON ({exc})",
                             fix="fix the syntax or write TOML") from exc
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"configuration file {path} is not valid TOML ({exc})",
                             fix="fix the syntax (key = value, strings in quotes)") from exc
    if not isinstance(data, dict):
        raise UsageError(f"configuration file {path} must hold option = value pairs")
    tables = [k for k, v in data.items() if isinstance(v, dict)]
    if tables:
        raise UsageError(f"configuration file {path}: {tables} are tables; write options as "
                         "top-level keys", fix='e.g. hrf-model = "spm"')
    return data


def _convert(action: argparse.Action, key: str, value: Any, source: str) -> Any:
    """Turn a file value into what argparse would have stored for ``action``."""
    where = f"configuration file {source}: {key}"
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction) or (
            isinstance(action, argparse.BooleanOptionalAction)):
        if not isinstance(value, bool):
            raise UsageError(f"{where} must be true or false, got {value!r}")
        if key.startswith("no-") and (
                isinstance(action, argparse._StoreFalseAction | argparse.BooleanOptionalAction)):
            return not value  # no-x = true means x = false
        return value
    if isinstance(action, argparse._StoreConstAction | argparse._CountAction):
        if isinstance(action, argparse._CountAction):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UsageError(f"{where} must be a count (0, 1, 2...), got {value!r}")
            return value
        if not isinstance(value, bool):
            raise UsageError(f"{where} must be true or false, got {value!r}")
        return action.const if value else action.default
    many = action.nargs in ("+", "*") or (isinstance(action.nargs, int) and action.nargs > 1) \
        or isinstance(action, argparse._AppendAction)
    if many and not isinstance(value, list):
        value = [value]
    if not many and isinstance(value, list):
        raise UsageError(f"{where} takes one value, got the list {value!r}")
    items = value if many else [value]
    out = []
    for item in items:
        if isinstance(item, (dict, list)) or item is None:
            raise UsageError(f"{where}: {item!r} is not a value")
        if isinstance(item, float) and not math.isfinite(item):
            raise UsageError(f"{where}: {item!r} is not a finite number")
        text = item if isinstance(item, str) else (json.dumps(item) if isinstance(item, bool)
                                                   else str(item))
        try:
            converted = action.type(text) if action.type is not None else text
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            raise UsageError(f"{where}: invalid value {item!r} ({exc})") from None
        if action.choices is not None and converted not in action.choices:
            raise UsageError(f"{where}: {item!r} is not one of {list(action.choices)}")
        out.append(converted)
    return out if many else out[0]


def apply_config(parser: argparse.ArgumentParser, values: Mapping[str, Any],
                 source: str = "<config>") -> dict[str, Any]:
    """Make the file's ``values`` the parser's defaults (the command line still wins).

    Returns
    -------
    dict
        ``{dest: value}`` that was set.

    Raises
    ------
    bids_hrf.errors.ValidationErrors
        One line per unknown key (with the closest valid key) or bad value.
    """
    actions = config_actions(parser)
    errors, defaults = [], {}
    for key, value in values.items():
        name = str(key).lstrip("-")
        action = actions.get(name)
        if action is None:
            close = difflib.get_close_matches(name.replace("_", "-"), sorted(
                {_key(a) for a in actions.values()}), n=1, cutoff=0.5)
            errors.append(UsageError(
                f"configuration file {source}: unknown option {key!r}",
                fix=(f"did you mean {close[0]!r}?" if close else
                     "keys are the long command-line options without the dashes")))
            continue
        try:
            defaults[action.dest] = _convert(action, name, value, source)
        except UsageError as exc:
            errors.append(exc)
    if errors:
        raise ValidationErrors(errors)
    parser.set_defaults(**defaults)
    for action in parser._actions:  # a required option given in the file is no longer
        if action.dest in defaults and action.option_strings:  # required on the command line
            action.required = False
    return defaults


def resolved_options(parser: argparse.ArgumentParser, args: argparse.Namespace
                     ) -> dict[str, Any]:
    """``{file key: value}`` of every option of ``args`` (None values left out: TOML has no
    null, and leaving them out gives back the parser's default, which is None)."""
    out: dict[str, Any] = {}
    seen = set()
    # HRF-method options not given take the chosen method's defaults (written out, so the
    # file records what ran even if a default changes)
    methods = resolved_method_options(getattr(args, "hrf_method", "canonical"),
                                      method_options_from_args(args))
    for action in parser._actions:
        if not action.option_strings or action.dest in _NOT_SETTINGS or action.dest in seen:
            continue
        seen.add(action.dest)
        value = getattr(args, action.dest, None)
        if value is None:
            value = methods.get(action.dest)
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = [_absolute(v) for v in value]
        else:
            value = _absolute(value)
        out[_key(action) if not isinstance(action, argparse._StoreFalseAction)
            else action.dest.replace("_", "-")] = value
    return out


def _absolute(value: Any) -> Any:
    """Paths as absolute strings, so that the file works from any directory: Path values,
    strings naming an existing file or folder, and ``file:`` HRF tables."""
    if isinstance(value, Path):
        return str(value.absolute())
    if isinstance(value, str):
        if value.startswith("file:") and Path(value[5:]).exists():
            return "file:" + str(Path(value[5:]).absolute())
        if ("/" in value or "." in value) and not value.startswith(("{", "[")) and \
                Path(value).exists():
            return str(Path(value).absolute())
    return value


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` and ``--print-config`` to ``parser``."""
    g = parser.add_argument_group("configuration file")
    g.add_argument("--config", metavar="FILE", default=None,
                   help="TOML or JSON file of options (keys: long options without the "
                        "dashes, e.g. hrf-method = \"jde-vem\"); the command line overrides "
                        "it. OUTPUT_DIR/config.toml of a run reproduces that run")
    g.add_argument("--print-config", action="store_true",
                   help="print the resolved options as TOML and exit (positional "
                        "arguments optional)")


def parse_with_config(parser: argparse.ArgumentParser, argv: Sequence[str]
                      ) -> tuple[argparse.Namespace, str | None]:
    """Parse ``argv`` with ``--config`` applied first and ``--print-config`` handled.

    Returns
    -------
    args : Namespace
    printed : str or None
        The resolved TOML when ``--print-config`` was given (nothing should run then).
    """
    add_config_arguments(parser)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    pre.add_argument("--print-config", action="store_true")
    known, _ = pre.parse_known_args(list(argv))
    if known.config:
        apply_config(parser, read_config_file(known.config), known.config)
    if known.print_config:
        for action in parser._actions:  # positionals optional when only printing
            if not action.option_strings:
                action.nargs = "?"
                action.required = False
                action.default = None
    args = parser.parse_args(list(argv))
    if not known.print_config:
        return args, None
    return args, to_toml(resolved_options(parser, args), _header(args, "--print-config"))


def _header(args: argparse.Namespace, how: str) -> list[str]:
    pos = " ".join(str(getattr(args, d)) for d in ("bids_dir", "output_dir", "analysis_level")
                   if getattr(args, d, None) is not None)
    return [f"bids-hrf resolved options ({how}; the version is in dataset_description.json)",
            f"rerun: bids-hrf {pos or 'BIDS_DIR OUTPUT_DIR LEVEL'} --config THIS_FILE",
            "keys are the long command-line options without the dashes; the command line "
            "overrides them"]
