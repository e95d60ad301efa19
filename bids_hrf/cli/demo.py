"""``bids-hrf-demo``: make the bundled example dataset and run both levels on it.

The example dataset is generated (no download): a BIDS dataset with fMRIPrep-like
derivatives, a synthetic atlas and a known truth (see :mod:`bids_hrf.datasets`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bids_hrf.cli.run import main as bids_hrf_main

#: Participants of the demo: 4 controls and 4 patients. With 2 + 2 the two-sample model has 2
#: degrees of freedom and p < 0.001 needs t > 22, so the group maps showed scattered voxels.
DEFAULT_SUBJECTS = 8


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the example dataset under DIR and run participant + group levels."""
    parser = argparse.ArgumentParser(
        prog="bids-hrf-demo",
        description="Make the bundled example dataset (DIR/bids) and run bids-hrf on it at "
                    "both levels (outputs in DIR/bids/derivatives/bids_hrf).")
    parser.add_argument("directory", type=Path, help="folder for the dataset and outputs")
    parser.add_argument("--size", choices=["small", "realistic"], default="small",
                        help="small: seconds; realistic: whole brain at 3 mm, 300 volumes")
    parser.add_argument("--hrf-method", default="canonical",
                        choices=["canonical", "fir", "jde-vem", "sparse"])
    parser.add_argument("--subjects", type=int, default=DEFAULT_SUBJECTS,
                        help="participants (alternating control/patient; >= 4 for the "
                             "two-sample group model; the default 8 gives 6 degrees of "
                             "freedom, enough for the planted effects to pass p < 0.001)")
    parser.add_argument("--space", choices=["MNI152NLin2009cAsym", "fsaverage5", "fsLR"],
                        default="MNI152NLin2009cAsym",
                        help="volume data (default), fsaverage5 GIFTI pairs or fsLR CIFTI "
                             "grayordinates (a reduced set; see bids_hrf.datasets.surface_sim)")
    parser.add_argument("--nprocs", type=int, default=None)
    args, extra = parser.parse_known_args(argv)

    bids_dir = args.directory / "bids"
    atlas = _make_dataset(bids_dir, args)
    out = bids_dir / "derivatives" / "bids_hrf"
    work = args.directory / "work"
    common = [str(bids_dir), str(out)]
    opts = ["--atlas", str(atlas), "-w", str(work), "--hrf-method", args.hrf_method,
            "--space", args.space]
    if args.nprocs:
        opts += ["--nprocs", str(args.nprocs)]
    code = bids_hrf_main([*common, "participant", *opts, *extra])
    if code:
        return code
    model = "two-sample:group" if args.subjects >= 4 else "one-sample"
    code = bids_hrf_main([*common, "group", "--group-model", model, "-w", str(work),
                          "--space", args.space])
    if code:
        return code
    print(f"bids-hrf-demo: reports in {out}: "
          + ", ".join(sorted(p.name for p in out.glob("*.html"))))
    print(f"bids-hrf-demo: open {out / 'group.html'}")
    return 0


def _make_dataset(bids_dir: Path, args: argparse.Namespace) -> Path:
    """Write the example dataset (once) and return its atlas."""
    atlas_dir = bids_dir / "derivatives" / "atlas"
    if args.space == "fsaverage5":
        atlas = atlas_dir / "hemi-L_space-fsaverage5_atlas-SurfSim_dseg.label.gii"
    elif args.space == "fsLR":
        atlas = atlas_dir / "space-fsLR_den-91k_atlas-SurfSim_dseg.dlabel.nii"
    else:
        atlas = atlas_dir / "tpl-MNI152NLin2009cAsym_atlas-Synthetic_dseg.nii.gz"
    if (bids_dir / "dataset_description.json").exists():
        return atlas
    print(f"bids-hrf-demo: making the example dataset in {bids_dir}", file=sys.stderr)
    if args.space == "MNI152NLin2009cAsym":
        from bids_hrf.datasets.synthetic import make_synthetic_dataset

        make_synthetic_dataset(bids_dir, size=args.size, n_subjects=args.subjects)
    else:
        from bids_hrf.datasets.surface_sim import make_surface_dataset

        n_scans = 120 if args.size == "small" else 300
        make_surface_dataset(bids_dir, space=args.space, n_subjects=args.subjects,
                             n_scans=n_scans)
    return atlas


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
