"""``bids-hrf-parcellation``: tools on label images (PyHRF's parcellation tools and more).

    bids-hrf-parcellation extract PARCELLATION ID [ID ...] -o OUT [-c/--contiguous]
    bids-hrf-parcellation relabel PARCELLATION --contiguous -o OUT
    bids-hrf-parcellation split-connected PARCELLATION -o OUT [--min-size N]
    bids-hrf-parcellation resample PARCELLATION REFERENCE -o OUT
    bids-hrf-parcellation info PARCELLATION

A labels table (``index``, ``name``[, ``network``]) given with ``--labels`` or found next to
the image (same name, ``.tsv``) is carried along: the output gets ``OUT`` with ``.tsv``. The
work is done by :mod:`bids_hrf.atlas.tools` on arrays.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_hrf.errors import EXIT_FAILURE, EXIT_OK, BidsHrfError, DataError, UsageError

PROG = "bids-hrf-parcellation"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D102 - one line, exit 64
        self.print_usage(sys.stderr)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """Parser with one subcommand per tool."""
    p = _Parser(prog=PROG, description="Tools on parcellations (integer label images).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(sp, output=True):
        sp.add_argument("parcellation", help="NIfTI label image (0 = background)")
        if output:
            sp.add_argument("-o", "--output", required=True, help="output NIfTI file")
        sp.add_argument("--labels", default=None, help="labels TSV (index, name[, network]); "
                        "default: next to the image, same name with .tsv")

    sp = sub.add_parser("extract", help="keep only some parcels (pyhrf_parcellation_extract)")
    common(sp)
    sp.add_argument("ids", nargs="+", type=int, metavar="ID", help="parcel labels to keep")
    sp.add_argument("-c", "--contiguous", action="store_true",
                    help="renumber the kept parcels 1..N")
    sp = sub.add_parser("relabel", help="renumber the parcels")
    common(sp)
    sp.add_argument("--contiguous", action="store_true", required=True,
                    help="renumber 1..N in increasing order of the old labels")
    sp = sub.add_parser("split-connected",
                        help="one region per spatially connected piece of each parcel")
    common(sp)
    sp.add_argument("--min-size", type=int, default=1,
                    help="drop pieces with fewer voxels than this")
    sp.add_argument("--connectivity", type=int, choices=(6, 18, 26), default=26,
                    help="voxel neighbourhood: faces, +edges, +corners")
    sp = sub.add_parser("resample", help="nearest-neighbour resampling onto a reference grid")
    sp.add_argument("parcellation", help="NIfTI label image")
    sp.add_argument("reference", help="image on the target grid (e.g. a BOLD run)")
    sp.add_argument("-o", "--output", required=True, help="output NIfTI file")
    sp.add_argument("--labels", default=None, help="labels TSV (default: next to the image)")
    sp = sub.add_parser("info", help="labels, sizes, pieces and holes of each parcel")
    common(sp, output=False)
    sp.add_argument("-o", "--output", default=None, help="also write the table as TSV")
    return p


def _stem(path: Path) -> Path:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path.with_suffix("")


def _load(path: str):
    from bids_hrf.atlas.base import load_label_image
    from bids_hrf.atlas.tools import as_labels, check_willard

    img = load_label_image(path)
    try:
        labels = as_labels(np.asanyarray(img.dataobj), f"parcellation {path}")
        check_willard(Path(path).name, img.shape, img.header.get_zooms(), labels)
    except ValueError as exc:
        raise DataError(str(exc), fix="give an integer label image (0 = background)",
                        path=path) from exc
    if labels.ndim != 3:
        raise DataError(f"parcellation {path} is {labels.ndim}-D", fix="give a 3-D label "
                        "image", path=path)
    return img, labels


def _names(path: str, given: str | None, labels: np.ndarray):
    from bids_hrf.atlas.labels import read_label_table
    from bids_hrf.atlas.tools import present_labels

    table = Path(given) if given else _stem(Path(path)).with_suffix(".tsv")
    if given and not table.is_file():
        raise DataError(f"labels table {table} does not exist", fix="check --labels",
                        path=str(table))
    if not table.is_file():
        return None, None
    return read_label_table(table, present_labels(labels))


def _output(path: str, inputs: Sequence[str]) -> Path:
    out = Path(path)
    if not out.name.endswith((".nii", ".nii.gz")):
        raise UsageError(f"output {out} must end in .nii or .nii.gz")
    if any(out.resolve() == Path(i).resolve() for i in inputs):
        raise UsageError(f"output {out} is an input file", fix="write to another file")
    if not out.parent.is_dir():
        raise UsageError(f"folder of the output {out} does not exist",
                         fix=f"create {out.parent} first")
    return out


def _save(out: Path, labels: np.ndarray, img, names=None, networks=None,
          table: pd.DataFrame | None = None) -> list[Path]:
    from bids_hrf.io.derivatives import write_nifti, write_tsv

    dtype = np.int16 if labels.max(initial=0) < 32768 else np.int32
    header = img.header.copy()
    header.set_data_dtype(dtype)
    new = nib.Nifti1Image(labels.astype(dtype), img.affine, header)
    new.header.set_slope_inter(1, 0)
    written = [write_nifti(out, new)]
    if table is None and names is not None:
        table = pd.DataFrame({"index": list(names), "name": list(names.values())})
        if networks:
            table["network"] = [networks.get(i, "n/a") for i in names]
    if table is not None:
        written.append(write_tsv(_stem(out).with_suffix(".tsv"), table))
    return written


def run(args: argparse.Namespace) -> list[str]:
    """Run one subcommand; return the lines to print."""
    from bids_hrf.atlas import tools

    img, labels = _load(args.parcellation)
    names, networks = _names(args.parcellation, args.labels, labels)
    lines: list[str] = []
    if args.command == "info":
        vol = float(abs(np.linalg.det(img.affine[:3, :3])))
        table = tools.label_info(labels, vol, names)
        lines.append(f"{args.parcellation}: grid {labels.shape}, voxels "
                     f"{'x'.join(f'{z:g}' for z in img.header.get_zooms()[:3])} mm, "
                     f"{len(table)} parcels, labels {tools._ranges(table['index'].tolist())}")
        if table.attrs["gaps"]:
            lines.append(f"missing labels between 1 and {table['index'].max()}: "
                         f"{tools._ranges(table.attrs['gaps'])}")
        if table.attrs["absent"]:
            lines.append(f"in the labels table but without voxels: {table.attrs['absent']}")
        split = table[table["n_components"] > 1]
        lines.append(f"{len(split)} parcel(s) in several pieces, "
                     f"{int((table['n_hole_voxels'] > 0).sum())} with holes")
        lines.append(table.to_string(index=False))
        if args.output:
            from bids_hrf.io.derivatives import write_tsv

            write_tsv(args.output, table)
        return lines
    out = _output(args.output, [args.parcellation] + ([args.labels] if args.labels else []))
    table = None
    if args.command == "extract":
        try:
            new, mapping = tools.extract(labels, args.ids, args.contiguous)
        except ValueError as exc:
            raise DataError(f"{args.parcellation}: {exc}", fix="give IDs listed by "
                            f"'{PROG} info {args.parcellation}'") from exc
    elif args.command == "relabel":
        new, mapping = tools.relabel_contiguous(labels)
    elif args.command == "split-connected":
        if args.min_size < 1:
            raise UsageError(f"--min-size must be >= 1, got {args.min_size}")
        new, parts = tools.split_connected(labels, args.min_size, args.connectivity)
        if not len(parts):
            raise DataError(f"{args.parcellation}: every piece is smaller than --min-size "
                            f"{args.min_size}", fix="lower --min-size")
        table = tools.split_table(parts, names, networks)
        dropped = parts.attrs["dropped"]
        lines.append(f"{len(tools.present_labels(labels))} parcels -> {len(parts)} "
                     "connected regions"
                     + (f"; {len(dropped)} piece(s) under {args.min_size} voxels dropped"
                        if dropped else ""))
        mapping = None
    else:  # resample
        new, lines = _resample(img, labels, args.reference)
        mapping = {v: v for v in tools.present_labels(new)}
        img = nib.load(args.reference)
    if mapping is not None and names is not None:
        names, networks = tools.relabel_table(names, mapping, networks)
    written = _save(out, new, img, names, networks, table)
    lines.extend(f"wrote {p}" for p in written)
    return lines


def _resample(img, labels: np.ndarray, reference: str):
    from nilearn.image import resample_img

    from bids_hrf.atlas.tools import present_labels
    from bids_hrf.steps.prepare import open_img

    ref = open_img(reference, "reference image")
    src = nib.Nifti1Image(labels.astype(np.int32), img.affine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = resample_img(src, target_affine=ref.affine, target_shape=ref.shape[:3],
                               interpolation="nearest", force_resample=True,
                               copy_header=True)
            new = np.rint(np.asanyarray(res.dataobj)).astype(np.int64)
        except Exception as exc:  # nilearn's BoundingBoxError: no overlap at all
            raise DataError(f"the parcellation does not overlap {reference} ({exc})",
                            fix="give a reference in the same space") from exc
    before, after = present_labels(labels), set(present_labels(new))
    if not after:
        raise DataError(f"the parcellation and {reference} do not overlap: no parcel on the "
                        "new grid", fix="give a reference in the same space")
    lost = [v for v in before if v not in after]
    lines = [f"{len(before)} parcels -> {len(after)} on the grid of {reference} "
             f"{tuple(ref.shape[:3])}"]
    if lost:
        lines.append(f"parcels lost (no voxel on the new grid): {lost}")
    return new, lines


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bids-hrf-parcellation``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        for line in run(args):
            print(line)
    except BidsHrfError as exc:
        print(f"{PROG}: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except BrokenPipeError:  # output piped into head
        return EXIT_OK
    except Exception as exc:
        print(f"{PROG}: error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
