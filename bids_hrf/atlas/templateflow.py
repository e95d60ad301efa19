"""Offline lookup of TemplateFlow atlases.

TemplateFlow's API downloads missing files on first access and, without network, leaves
0-byte placeholders behind. This module never imports ``templateflow`` (whose import
populates ``TEMPLATEFLOW_HOME``) and never downloads: it looks for the atlas files in the
local TemplateFlow folder, treats 0-byte files as absent and explains how to fetch them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_hrf.errors import NoInputError, UsageError

_ENTITY = re.compile(r"([a-zA-Z]+)-([a-zA-Z0-9]+)")
_KNOWN_TEMPLATE_PREFIXES = ("MNI", "tpl-", "OASIS", "fsLR", "fsaverage", "Fischer", "UNC",
                            "NKI", "PNC", "WHS", "RESILIENT", "MouseIn")


@dataclass(frozen=True)
class TemplateFlowSpec:
    """A parsed ``[Template:]Atlas[:desc][:res]`` atlas specification."""

    template: str
    atlas: str
    desc: str | None = None
    resolution: int | None = None

    @property
    def label(self) -> str:
        """The atlas name and description run together (e.g. Schaefer2018400Parcels7Networks)."""
        return re.sub(r"[^A-Za-z0-9]", "", self.atlas + (self.desc or ""))

    def __str__(self) -> str:
        text = f"{self.template}:{self.atlas}"
        if self.desc:
            text += f":{self.desc}"
        if self.resolution is not None:
            text += f":res-{self.resolution:02d}"
        return text


def templateflow_home() -> Path:
    """Return TemplateFlow's folder: ``$TEMPLATEFLOW_HOME`` or its default user cache."""
    env = os.environ.get("TEMPLATEFLOW_HOME")
    if env:
        return Path(env).expanduser().absolute()
    try:
        from platformdirs import user_cache_dir
    except ImportError:  # pragma: no cover - platformdirs comes with templateflow
        return Path.home() / ".cache" / "templateflow"
    return Path(user_cache_dir("templateflow")).absolute()


def parse_templateflow_spec(spec: str, space: str, home: Path | None = None) -> TemplateFlowSpec:
    """Parse ``[Template:]Atlas[:desc][:res]``.

    The template defaults to ``space``. A first field is taken as the template when it looks
    like one (``MNI...``, ``tpl-...``) or when ``tpl-<field>`` exists in TemplateFlow's
    folder. A field of digits (``2``, ``02``, ``res-2``) is the resolution index.

    Examples
    --------
    ``Schaefer2018:400Parcels7Networks`` -> (space, Schaefer2018, 400Parcels7Networks, None);
    ``MNI152NLin6Asym:Schaefer2018:100Parcels7Networks:2``.
    """
    fields = [f.strip() for f in spec.split(":") if f.strip()]
    if not fields:
        raise UsageError(f"empty TemplateFlow atlas specification {spec!r}",
                         fix="write Atlas:desc, e.g. Schaefer2018:400Parcels7Networks")
    home = home or templateflow_home()
    template = space
    first = fields[0].removeprefix("tpl-")
    if len(fields) > 1 and (fields[0].startswith(_KNOWN_TEMPLATE_PREFIXES)
                            or (home / f"tpl-{first}").is_dir()):
        template, fields = first, fields[1:]
    atlas = fields[0].removeprefix("atlas-")
    desc, res = None, None
    for item in fields[1:]:
        match = re.fullmatch(r"(?:res-)?(\d+)(?:mm)?", item)
        if match and res is None:
            res = int(match.group(1))
        elif desc is None:
            desc = item.removeprefix("desc-")
        else:
            raise UsageError(f"cannot parse TemplateFlow atlas specification {spec!r}",
                             fix="write [Template:]Atlas[:desc][:res], e.g. "
                             "Schaefer2018:400Parcels7Networks:2")
    for name, value in (("template", template), ("atlas", atlas), ("desc", desc)):
        if value is not None and not re.fullmatch(r"[A-Za-z0-9]+", value):
            raise UsageError(f"TemplateFlow {name} {value!r} in {spec!r} is not alphanumeric",
                             fix="write [Template:]Atlas[:desc][:res]")
    return TemplateFlowSpec(template, atlas, desc, res)


def _entities(name: str) -> dict[str, str]:
    stem = name.split(".")[0]
    return dict(_ENTITY.findall(stem))


def _candidates(home: Path, spec: TemplateFlowSpec, ext: str) -> list[Path]:
    folder = home / f"tpl-{spec.template}"
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.rglob(f"tpl-{spec.template}_*atlas-{spec.atlas}_*dseg{ext}")):
        ents = _entities(path.name)
        if ents.get("atlas") != spec.atlas or path.name.split(".")[0].split("_")[-1] != "dseg":
            continue
        out.append(path)
    return out


def _fetch_hint(spec: TemplateFlowSpec, res: int | None) -> str:
    args = [f"'{spec.template}'", f"atlas='{spec.atlas}'"]
    if spec.desc:
        args.append(f"desc='{spec.desc}'")
    args.append("suffix='dseg'")
    if res is not None:
        args.append(f"resolution={res}")
    return ("on a machine with network run python -c \"from templateflow import api; "
            f"api.get({', '.join(args)})\" and set TEMPLATEFLOW_HOME to the folder it fills, "
            "or pass --atlas FILE")


def find_templateflow_atlas(
    spec: TemplateFlowSpec, target_zoom: float | None = None, home: Path | None = None
) -> tuple[Path, Path | None]:
    """Find an atlas image (and its label table) in the local TemplateFlow folder.

    Parameters
    ----------
    spec : TemplateFlowSpec
        What to look for.
    target_zoom : float, optional
        Voxel size (mm) of the BOLD data; without a resolution in ``spec``, the available
        image whose voxel size is closest is chosen (the finest when ``None``).
    home : path-like, optional
        TemplateFlow folder (default :func:`templateflow_home`).

    Returns
    -------
    image : pathlib.Path
        The ``..._dseg.nii.gz`` file.
    table : pathlib.Path or None
        The matching ``..._dseg.tsv`` (with or without ``res``), if present.

    Raises
    ------
    bids_hrf.errors.UsageError
        If the atlas has several descriptions and none was given.
    bids_hrf.errors.NoInputError
        If TemplateFlow's folder has no such atlas, or only 0-byte placeholders.
    """
    home = Path(home) if home is not None else templateflow_home()
    images = _candidates(home, spec, ".nii.gz")
    tables = _candidates(home, spec, ".tsv")
    descs = sorted({_entities(p.name).get("desc", "") for p in images + tables})
    if spec.desc is None and len(descs) > 1:
        choices = ", ".join(f"{spec.atlas}:{d}" if d else spec.atlas for d in descs)
        raise UsageError(f"TemplateFlow atlas {spec.atlas} of {spec.template} has several "
                         f"versions: {choices}", fix="add the description, e.g. "
                         f"--atlas {spec.atlas}:{[d for d in descs if d][0]}")
    want_desc = spec.desc or (descs[0] if descs else None) or None

    def matches(path: Path) -> bool:
        ents = _entities(path.name)
        if ents.get("desc") != want_desc:
            return False
        res = ents.get("res")
        return spec.resolution is None or (res is not None and int(res) == spec.resolution)

    images = [p for p in images if matches(p)]
    available = [p for p in images if p.stat().st_size > 0]
    if not available:
        if images:
            needed = images[0]
            what = (f"{needed.relative_to(home)} is a 0-byte placeholder (TemplateFlow could "
                    "not download it)")
        else:
            res = f"_res-{spec.resolution:02d}" if spec.resolution is not None else "_res-*"
            desc = f"_desc-{want_desc}" if want_desc else ""
            what = (f"tpl-{spec.template}/tpl-{spec.template}{res}_atlas-{spec.atlas}{desc}"
                    "_dseg.nii.gz is not there")
        raise NoInputError(
            f"TemplateFlow atlas {spec} is not available offline: under "
            f"TEMPLATEFLOW_HOME={home}, {what}",
            fix=_fetch_hint(spec, spec.resolution))
    image = _closest(available, target_zoom)
    table = None
    for path in tables:
        ents = _entities(path.name)
        if ents.get("desc") == want_desc and path.stat().st_size > 0:
            if table is None or ents.get("res") == _entities(image.name).get("res"):
                table = path
    return image, table


def _closest(paths: list[Path], target_zoom: float | None) -> Path:
    zooms = []
    for path in paths:
        try:
            zooms.append(float(np.mean(nib.load(str(path)).header.get_zooms()[:3])))
        except Exception:  # unreadable files are reported when the chosen one is loaded
            zooms.append(np.inf)
    if target_zoom is None:
        return paths[int(np.argmin(zooms))]
    order = sorted(range(len(paths)), key=lambda i: (abs(zooms[i] - target_zoom), zooms[i]))
    return paths[order[0]]


#: TemplateFlow template and density of each surface space's atlases.
SURFACE_TEMPLATES = {"fsaverage5": ("fsaverage", "10k"), "fsaverage6": ("fsaverage", "41k"),
                     "fsaverage": ("fsaverage", "164k"), "fsLR": ("fsLR", "32k")}


def find_surface_templateflow_atlas(spec_text: str, space: str,
                                    home: Path | None = None) -> Path:
    """A TemplateFlow surface atlas in the local folder (never downloaded).

    For ``--space fsaverage5`` the ``tpl-fsaverage`` atlas of density ``den-10k``, for
    ``fsLR`` the ``tpl-fsLR`` ``den-32k`` one: a CIFTI ``.dlabel.nii`` or the ``hemi-L`` file
    of a ``.label.gii``/``.annot`` pair (its twin is found by name when it is read).

    Raises
    ------
    NoInputError
        The atlas is not in the local TemplateFlow folder (the message says how to get it).
    """
    home = home or templateflow_home()
    template, den = SURFACE_TEMPLATES[space]
    parsed = parse_templateflow_spec(spec_text, template, home)
    spec = TemplateFlowSpec(template, parsed.atlas, parsed.desc)
    found = []
    for ext in (".dlabel.nii", ".label.gii", ".annot"):
        for path in _candidates(home, spec, ext):
            ents = _entities(path.name)
            if path.stat().st_size == 0 or ents.get("den", den) != den:
                continue
            if spec.desc and ents.get("desc") != spec.desc:
                continue
            if ext != ".dlabel.nii" and ents.get("hemi") != "L":
                continue
            found.append(path)
    if not found:
        raise NoInputError(
            f"TemplateFlow surface atlas {spec_text} (tpl-{template}, den-{den}) is not in "
            f"{home}", fix=_fetch_hint(spec, None).replace("suffix='dseg'",
                                                          f"suffix='dseg', density='{den}'"))
    return found[0]
