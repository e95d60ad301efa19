"""Up-front validation of a :class:`~bids_hrf.config.Config` against the file system.

Every problem is collected and reported at once, one line each, naming the argument or
file and the fix, before any work starts. Used by :func:`bids_hrf.api.run` (and so by the
command line).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd

from bids_hrf.config import Config
from bids_hrf.errors import (
    BidsHrfError,
    NoInputError,
    OutputError,
    UsageError,
    ValidationErrors,
)
from bids_hrf.glm.group_design import parse_group_model
from bids_hrf.options import GLMOptions, GroupOptions, HRFOptions, PrepareOptions
from bids_hrf.surface.meshes import surface_mesh
from bids_hrf.surface.samples import surface_kind

PLUGINS = ("Linear", "MultiProc", "SLURM", "SLURMGraph", "SGE", "PBS", "LSF", "Legacy",
           "IPython", "Debug")
_TEMPLATEFLOW_RE = re.compile(r"^[A-Za-z0-9]+(:[A-Za-z0-9-]+)+$")


def _is_within(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def validate_config(config: Config, errors: list[BidsHrfError] | None = None) -> None:
    """Check a configuration against the file system; raise all problems at once.

    Parameters
    ----------
    config : Config
        The configuration to check.
    errors : list, optional
        Problems already found (e.g. while parsing), reported together.

    Raises
    ------
    BidsHrfError
        One problem, or :class:`ValidationErrors` listing several.
    """
    errors = list(errors or [])
    bids = config.bids_dir
    if not bids.is_dir():
        errors.append(NoInputError(f"BIDS_DIR {bids} does not exist or is not a folder",
                                   fix="give the path of the raw BIDS dataset"))
    elif not (bids / "dataset_description.json").is_file():
        errors.append(NoInputError(f"BIDS_DIR {bids} has no dataset_description.json",
                                   fix="point BIDS_DIR at the root of a BIDS dataset"))
    out = config.output_dir
    if bids.is_dir():
        if out.resolve() == bids.resolve():
            errors.append(UsageError("OUTPUT_DIR is BIDS_DIR: bids-hrf never writes into the "
                                     "raw dataset",
                                     fix=f"use e.g. {bids / 'derivatives' / 'bids_hrf'}"))
        elif _is_within(out, bids) and not _is_within(out, bids / "derivatives"):
            errors.append(UsageError(f"OUTPUT_DIR {out} is inside BIDS_DIR but not under "
                                     "its derivatives/ folder",
                                     fix=f"use e.g. {bids / 'derivatives' / 'bids_hrf'}"))
        elif any(_is_within(out, d) or out.resolve() == d.resolve()
                 for d in config.fmriprep_dirs if d.exists()):
            errors.append(UsageError(f"OUTPUT_DIR {out} is inside the fMRIPrep derivatives",
                                     fix="give a folder of its own to bids-hrf"))
    anchor = _nearest_existing(out)
    if anchor.exists() and not anchor.is_dir():
        errors.append(OutputError(f"OUTPUT_DIR {out}: {anchor} is a file, not a folder",
                                  fix="choose another OUTPUT_DIR"))
    elif not os.access(anchor, os.W_OK | os.X_OK):
        errors.append(OutputError(f"OUTPUT_DIR {out} cannot be created or written "
                                  f"({anchor} is not writable)",
                                  fix="choose a writable OUTPUT_DIR or fix its permissions"))
    work = config.effective_work_dir
    work_anchor = _nearest_existing(work)
    if not os.access(work_anchor, os.W_OK | os.X_OK):
        errors.append(OutputError(f"work directory {work} is not writable",
                                  fix="give a writable folder with -w/--work-dir"))
    if config.participant_label and bids.is_dir():
        roots = [bids] + [d for d in config.fmriprep_dirs if d.is_dir()]
        known = sorted({p.name[4:] for r in roots for p in r.glob("sub-*") if p.is_dir()})
        for label in config.participant_label:
            if label not in known:
                errors.append(UsageError(f"participant '{label}' is not in {bids}",
                                         fix=f"choose from: {', '.join(known) or 'none'}"))
    if config.analysis_level == "participant":
        for d in config.derivatives:
            if not d.is_dir():
                errors.append(NoInputError(f"--derivatives {d} does not exist",
                                           fix="give the fMRIPrep output folder"))
        errors.extend(_check_analysis_options(config))
        # lazy (start-up time): io.inputs imports pybids, which the parser does not need
        from bids_hrf.io.inputs import check_bids_filters

        errors.extend(UsageError(f"--bids-filter-file: {msg}")
                      for msg in check_bids_filters(config.bids_filters or {}))
    else:
        if config.networks is not None and not config.networks.is_file():
            errors.append(NoInputError(f"--networks {config.networks} does not exist",
                                       fix="give a TSV with columns name, network"))
        errors.extend(_check_group_options(config))
    if config.plugin is not None and config.plugin not in PLUGINS:
        errors.append(UsageError(f"--plugin {config.plugin} is not a nipype plugin",
                                 fix=f"use one of {', '.join(PLUGINS)}"))
    if errors:
        raise errors[0] if len(errors) == 1 else ValidationErrors(errors)


def _check_analysis_options(config: Config) -> list[BidsHrfError]:
    errors: list[BidsHrfError] = []
    if surface_kind(config.space) and config.smoothing_fwhm \
            and surface_mesh(config.space, "L") is None:
        errors.append(UsageError(
            f"--smoothing-fwhm on {config.space} needs the cortical mesh, which is not "
            "available offline", fix="drop --smoothing-fwhm, use --space fsaverage5, or set "
                                     "TEMPLATEFLOW_HOME to a TemplateFlow folder holding its "
                                     "midthickness surfaces (tpl-fsLR den-32k for fsLR)"))
    if config.den and surface_kind(config.space) != "cifti":
        errors.append(UsageError(f"--den {config.den} applies to CIFTI data (--space fsLR), "
                                 f"not to --space {config.space}", fix="drop --den"))
    atlas = config.atlas
    if atlas.startswith("data-driven"):
        n = atlas.split(":")[1] if ":" in atlas else ""
        if n and (not n.isdigit() or int(n) < 2):
            errors.append(UsageError(f"--atlas {atlas}: N must be an integer >= 2",
                                     fix="e.g. --atlas data-driven:100"))
    elif atlas.endswith((".nii", ".nii.gz")) or os.sep in atlas or Path(atlas).exists():
        if not Path(atlas).is_file():
            errors.append(NoInputError(f"--atlas file {atlas} does not exist",
                                       fix="give a label NIfTI file, a TemplateFlow atlas "
                                           "name or data-driven:N"))
    elif not _TEMPLATEFLOW_RE.match(atlas):
        errors.append(UsageError(f"--atlas {atlas!r} is neither a file, a TemplateFlow atlas "
                                 "(Atlas:desc, e.g. Schaefer2018:400Parcels7Networks) nor "
                                 "data-driven:N", fix="see 'bids-hrf --help'"))
    if config.atlas_labels is not None and not config.atlas_labels.is_file():
        errors.append(NoInputError(f"--atlas-labels {config.atlas_labels} does not exist",
                                   fix="give a TSV with columns index, name"))
    errors += _option_errors(PrepareOptions.from_config, config)
    errors += _option_errors(GLMOptions.from_config, config)
    errors += _option_errors(HRFOptions.from_config, config)
    return errors


def _option_errors(build, config: Config) -> list[BidsHrfError]:
    """The problems a stage's options constructor finds (validated there, once)."""
    try:
        build(config)
    except ValidationErrors as exc:
        return list(exc.errors)
    except BidsHrfError as exc:
        return [exc]
    return []


def _check_group_options(config: Config) -> list[BidsHrfError]:
    """Problems with the group-level options (model, thresholds, connectivity kinds)."""
    errors: list[BidsHrfError] = _option_errors(GroupOptions.from_config, config)
    model = config.group_model
    if model and model.lower().endswith(".json"):
        if not Path(model).is_file():
            errors.append(NoInputError(f"--group-model {model} does not exist",
                                       fix="give a BIDS Stats Models JSON file or e.g. "
                                           "two-sample:group"))
        else:
            try:
                json.loads(Path(model).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                errors.append(UsageError(f"--group-model {model} is not valid JSON ({exc})"))
    elif model:
        try:
            participants = config.bids_dir / "participants.tsv"
            table = None
            if participants.is_file():
                table = pd.read_csv(participants, sep="\t", dtype={"participant_id": str},
                                    na_values=["n/a"])
            parse_group_model(model, table)
        except ValueError as exc:
            errors.append(UsageError(f"--group-model {model!r}: {exc}"))
    return errors
