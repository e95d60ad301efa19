"""HTML reports: figures (:mod:`.figures`) and the self-contained report builder (:mod:`.build`).

Importing this package does not import matplotlib or nilearn.plotting; figure functions do,
when called, with the non-interactive Agg backend.
"""

from bids_hrf.reports._common import EmbeddedFigure
from bids_hrf.reports.build import Report, escape_text, software_versions

__all__ = ["EmbeddedFigure", "Report", "escape_text", "software_versions"]
