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
    parser.add_argument("--nprocs", type=int, default=None)
    args, extra = parser.parse_known_args(argv)

    from bids_hrf.datasets.synthetic import make_synthetic_dataset

    bids_dir = args.directory / "bids"
    if not (bids_dir / "dataset_description.json").exists():
        print(f"bids-hrf-demo: making the example dataset in {bids_dir}", file=sys.stderr)
        make_synthetic_dataset(bids_dir, size=args.size, n_subjects=args.subjects)
    out = bids_dir / "derivatives" / "bids_hrf"
    work = args.directory / "work"
    atlas = (bids_dir / "derivatives" / "atlas"
             / "tpl-MNI152NLin2009cAsym_atlas-Synthetic_dseg.nii.gz")
    common = [str(bids_dir), str(out)]
    opts = ["--atlas", str(atlas), "-w", str(work), "--hrf-method", args.hrf_method]
    if args.nprocs:
        opts += ["--nprocs", str(args.nprocs)]
    code = bids_hrf_main([*common, "participant", *opts, *extra])
    if code:
        return code
    model = "two-sample:group" if args.subjects >= 4 else "one-sample"
    code = bids_hrf_main([*common, "group", "--group-model", model, "-w", str(work)])
    if code:
        return code
    print(f"bids-hrf-demo: reports in {out}: "
          + ", ".join(sorted(p.name for p in out.glob("*.html"))))
    print(f"bids-hrf-demo: open {out / 'group.html'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
