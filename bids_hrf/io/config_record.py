"""``config.toml``: a run's fully resolved configuration, as a file ``--config`` reads.

Every run writes it into OUTPUT_DIR (the group level: ``group_config.toml``), whether it
was started from the command line or from the Python API, so that
``bids-hrf BIDS_DIR OUT LEVEL --config OUT_OLD/config.toml`` reproduces it. Keys are the
long command-line options without their dashes. Settings the command line takes as files
(contrasts given as a dict, pybids filters) are written beside it as JSON under
``OUTPUT_DIR/logs`` and named by path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bids_hrf.config import Config
from bids_hrf.io.derivatives import write_json, write_text

#: file every participant-level run writes in OUTPUT_DIR (group level: ``group_config.toml``)
CONFIG_NAME = "config.toml"

# Config field -> command-line key, where they differ (the others: the field with dashes)
_KEYS = {"database_path": "bids-database-dir", "group_height_control": "height-control",
         "connectivity_task_regression": "connectivity-task-regression",
         "write_report": "write-report"}
# not options of the command line (positional or derived)
_NOT_OPTIONS = {"bids_dir", "output_dir", "analysis_level", "contrasts", "contrasts_file",
                "bids_filters", "method_options", "connectivity", "plugin_args"}


def toml_value(value: Any) -> str:
    """One TOML value (dicts as JSON text, as the command line takes them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML cannot hold {value!r}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return json.dumps(json.dumps(dict(value)))  # JSON options are given as text
    raise ValueError(f"cannot write {type(value).__name__} {value!r} in TOML")


def to_toml(values: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """Write flat ``values`` as TOML (``key = value`` lines, keys sorted), comments first."""
    lines = [f"# {h}" for h in header]
    for key in sorted(values):
        lines.append(f"{key} = {toml_value(values[key])}")
    return "\n".join(lines) + "\n"


def config_name(level: str) -> str:
    """``config.toml`` (participant) or ``<level>_config.toml``."""
    return CONFIG_NAME if level == "participant" else f"{level}_{CONFIG_NAME}"


def config_options(config: Config) -> dict[str, Any]:
    """``{command-line key: value}`` of ``config`` (None values left out).

    Contrasts given as a dict without their file and pybids filters are written as JSON
    under ``OUTPUT_DIR/logs`` (named by the configuration hash) and given by path.
    """
    out: dict[str, Any] = {}
    for key, value in config.to_dict().items():
        if key in _NOT_OPTIONS or value is None:
            continue
        out[_KEYS.get(key, key.replace("_", "-"))] = value
    out.update({k.replace("_", "-"): v for k, v in config.method_options.items()
                if v is not None})
    out["connectivity"] = (",".join(k.replace(" ", "-") for k in config.connectivity)
                           or "none")
    if config.plugin_args:
        out["plugin-args"] = json.dumps(config.plugin_args)
    logs = config.output_dir / "logs"
    if config.contrasts_file is not None:
        out["contrasts"] = str(config.contrasts_file)
    elif config.contrasts:
        out["contrasts"] = str(write_json(
            logs / f"contrasts_{config.config_hash()}.json", config.contrasts))
    if config.bids_filters:
        out["bids-filter-file"] = str(write_json(
            logs / f"bids_filters_{config.config_hash()}.json", config.bids_filters))
    return out


def write_config_record(config: Config, header: Sequence[str] = ()) -> Path:
    """Write ``config``'s options as OUTPUT_DIR/config.toml (``group_config.toml``)."""
    level = config.analysis_level
    head = list(header) or [
        "bids-hrf resolved options (written by the run; the version is in "
        "dataset_description.json)",
        f"rerun: bids-hrf {config.bids_dir} {config.output_dir} {level} --config THIS_FILE",
        "keys are the long command-line options without the dashes; the command line "
        "overrides them"]
    return write_text(config.output_dir / config_name(level),
                      to_toml(config_options(config), head))
