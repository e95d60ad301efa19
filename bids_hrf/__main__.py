"""Run ``python -m bids_hrf`` as ``bids-hrf``."""

import sys

from bids_hrf.cli.run import main

sys.exit(main())
