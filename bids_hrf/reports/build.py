"""Build self-contained HTML reports: sections, text, tables, inline figures, warnings.

A :class:`Report` collects content in memory and renders one HTML file with everything
inline (CSS, JavaScript, SVG/PNG figures as ``data:`` URIs); nothing is fetched when the file
is opened. Figures are made through :meth:`Report.add_figure`, which never lets a failing
figure stop the run: the failure is logged and a short note takes the figure's place.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import html as _html
import importlib.metadata
import importlib.resources
import json
import logging
import os
import platform
import re
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from bids_hrf.errors import OutputError
from bids_hrf.reports._common import EmbeddedFigure, display_figure, embed

#: Distribution names of the packages listed by :func:`software_versions`.
_PACKAGES = {
    "numpy": "numpy",
    "scipy": "scipy",
    "pandas": "pandas",
    "nibabel": "nibabel",
    "nilearn": "nilearn",
    "nipype": "nipype",
    "pybids": "pybids",
    "scikit-learn": "scikit-learn",
    "matplotlib": "matplotlib",
    "jinja2": "jinja2",
    "templateflow": "templateflow",
    "PyWavelets": "PyWavelets",
}

_SLUG = re.compile(r"[^a-z0-9_-]+")


def software_versions() -> dict[str, str]:
    """Versions of bids_hrf, Python and the scientific packages it relies on.

    Returns
    -------
    dict of str to str
        Keys ``bids_hrf``, ``python``, ``numpy``, ``scipy``, ``pandas``, ``nibabel``,
        ``nilearn``, ``nipype``, ``pybids``, ``scikit-learn``, ``matplotlib``, ``jinja2``,
        ``templateflow`` and ``PyWavelets``; ``"not installed"`` for missing packages.
    """
    from bids_hrf import __version__

    versions = {"bids_hrf": __version__, "python": platform.python_version()}
    for key, dist in _PACKAGES.items():
        try:
            versions[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[key] = "not installed"
    return versions


@dataclass
class _Section:
    id: str
    title: str
    parent: str | None
    open: bool
    items: list[Markup] = field(default_factory=list)
    children: list[_Section] = field(default_factory=list)
    n_figures: int = 0
    n_failed: int = 0


@dataclass
class _Pending:
    """A figure recorded by :meth:`Report.add_figure`, drawn when the report is rendered."""

    section: _Section
    position: int
    number: int
    make: Callable[..., Any]
    args: tuple
    kwargs: dict
    caption: str


#: Figures being drawn by forked workers (inherited through fork, never pickled).
_JOBS: list[_Pending] = []


def _draw(make: Callable[..., Any], args: tuple, kwargs: dict) -> tuple:
    """Draw one figure: ``("ok", EmbeddedFigure)`` or ``("error", reason, traceback)``."""
    before = _open_pyplot_figures()
    try:
        return ("ok", _to_embedded(make(*args, **kwargs) if callable(make) else make))
    except Exception as exc:  # a figure must never stop the run
        _close_new_pyplot_figures(before)
        reason = f"{type(exc).__name__}: {exc}".strip()
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
        return ("error", reason, traceback.format_exc())


def _draw_job(index: int) -> tuple:
    job = _JOBS[index]
    return _draw(job.make, job.args, job.kwargs)


def _draw_parallel(jobs: list[_Pending], n_procs: int) -> list[tuple]:
    """Draw ``jobs`` in ``n_procs`` forked processes (serially where fork is unavailable)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    global _JOBS
    if n_procs < 2 or len(jobs) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [_draw(j.make, j.args, j.kwargs) for j in jobs]
    # Import the drawing libraries once here: the forked workers inherit them.
    from bids_hrf.reports._common import ensure_agg

    ensure_agg()
    import matplotlib.pyplot  # noqa: F401
    import nilearn.plotting  # noqa: F401

    _JOBS = jobs
    try:
        with ProcessPoolExecutor(max_workers=min(n_procs, len(jobs)),
                                 mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_draw_job, range(len(jobs))))
    finally:
        _JOBS = []


def _format_value(value: Any) -> Markup:
    """HTML for a metadata value: scalars as text, mappings and lists as compact code."""
    if isinstance(value, Markup):
        return value
    if isinstance(value, float | np.floating):
        return escape(f"{float(value):.6g}")
    if isinstance(value, Path):
        return Markup("<code>{}</code>").format(str(value))
    if isinstance(value, Mapping):
        text = json.dumps(value, indent=1, default=str, sort_keys=False)
        return Markup('<pre class="json">{}</pre>').format(text)
    if isinstance(value, list | tuple | set | frozenset):
        items = [str(v) for v in value]
        if not items:
            return Markup("<em>none</em>")
        return escape(", ".join(items))
    if value is None:
        return Markup("<em>n/a</em>")
    return escape(str(value))


def _figure_html(fig: EmbeddedFigure, caption: str, number: int) -> Markup:
    alt = caption or f"Figure {number}"
    cap = Markup("<figcaption><b>Figure {}.</b> {}</figcaption>").format(number, caption)
    return Markup('<figure class="fig"><img src="{}" alt="{}" loading="lazy">{}</figure>').format(
        Markup(fig.data_uri()), alt, cap
    )


def _to_embedded(result: Any) -> EmbeddedFigure:
    """Turn what a figure callable returned into an :class:`EmbeddedFigure`."""
    if isinstance(result, EmbeddedFigure):
        return result
    if isinstance(result, str):
        text = result.lstrip()
        if text.startswith("<svg") or text.startswith("<?xml"):
            return EmbeddedFigure("image/svg+xml", text.encode("utf-8"))
        raise TypeError("a figure callable returned a string that is not an SVG document")
    if isinstance(result, bytes):
        if result.startswith(b"\x89PNG"):
            return EmbeddedFigure("image/png", result)
        if result.lstrip().startswith((b"<svg", b"<?xml")):
            return EmbeddedFigure("image/svg+xml", result)
        raise TypeError("a figure callable returned bytes that are neither PNG nor SVG")
    if result is None:
        raise TypeError("the figure callable returned nothing")
    return embed(display_figure(result))


def _open_pyplot_figures() -> set[int]:
    pyplot = sys.modules.get("matplotlib.pyplot")
    return set(pyplot.get_fignums()) if pyplot is not None else set()


def _close_new_pyplot_figures(before: set[int]) -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        for num in set(pyplot.get_fignums()) - before:
            pyplot.close(num)


class Report:
    """A self-contained HTML report built section by section.

    Parameters
    ----------
    title : str
        Page title, e.g. ``"sub-01"``.
    subtitle : str
        Line under the title, e.g. the dataset and the analysis.
    logger : logging.Logger, optional
        Where figure failures are logged (``bids_hrf.reports`` by default).
    include_versions : bool
        Show :func:`software_versions` in the summary.
    n_procs : int
        Processes drawing the figures. With more than one, :meth:`add_figure` only records
        the figure and all recorded figures are drawn in parallel (forked worker processes)
        when the report is rendered; with one, each figure is drawn when added.
    """

    def __init__(
        self,
        title: str,
        subtitle: str = "",
        logger: logging.Logger | None = None,
        include_versions: bool = True,
        n_procs: int = 1,
    ):
        if int(n_procs) < 1:
            raise ValueError(f"n_procs must be at least 1, got {n_procs}")
        self.n_procs = int(n_procs)
        self._pending: list[_Pending] = []
        self.title = str(title)
        self.subtitle = str(subtitle)
        self.logger = logger if logger is not None else logging.getLogger("bids_hrf.reports")
        self.include_versions = include_versions
        self._sections: dict[str, _Section] = {}
        self._roots: list[_Section] = []
        self._warnings: list[str] = []
        self._metadata: dict[str, dict[str, Any]] = {}
        self._n_figures = 0
        self._n_tables = 0
        self._failed: list[str] = []

    # -- structure -------------------------------------------------------------------------
    def section(
        self, title: str, parent: str | None = None, anchor: str | None = None, open: bool = True
    ) -> str:
        """Add a section and return its id.

        Parameters
        ----------
        title : str
            Section heading.
        parent : str, optional
            Id of the enclosing section; nested sections (runs) are collapsible.
        anchor : str, optional
            Preferred id (made HTML-safe and unique); derived from the title by default.
        open : bool
            Whether a nested section starts expanded.

        Returns
        -------
        str
            The section id, to pass to the ``add_*`` methods.
        """
        if parent is not None and parent not in self._sections:
            raise ValueError(f"unknown parent section {parent!r}: create it with section() first")
        base = _SLUG.sub("-", str(anchor if anchor is not None else title).lower()).strip("-")
        base = base or "section"
        if not base[0].isalpha():
            base = f"s-{base}"
        sid, k = base, 2
        while sid in self._sections or sid in ("summary", "warnings", "top"):
            sid, k = f"{base}-{k}", k + 1
        sec = _Section(id=sid, title=str(title), parent=parent, open=bool(open))
        self._sections[sid] = sec
        (self._sections[parent].children if parent is not None else self._roots).append(sec)
        return sid

    def _get(self, section_id: str) -> _Section:
        try:
            return self._sections[section_id]
        except KeyError:
            raise ValueError(
                f"unknown section {section_id!r}: use the id returned by section()"
            ) from None

    # -- content ---------------------------------------------------------------------------
    def add_text(self, section_id: str, text: str) -> None:
        """Add plain text (escaped); blank lines separate paragraphs."""
        sec = self._get(section_id)
        for para in re.split(r"\n\s*\n", str(text).strip()):
            if para.strip():
                sec.items.append(Markup("<p>{}</p>").format(" ".join(para.split())))

    def add_html(self, section_id: str, html: str) -> None:
        """Add a trusted HTML fragment as is (never pass user-controlled text here)."""
        self._get(section_id).items.append(Markup(str(html)))

    def add_table(
        self, section_id: str, df: pd.DataFrame, caption: str = "", max_rows: int = 50
    ) -> None:
        """Add a DataFrame as a styled table (cells escaped), truncated to ``max_rows`` rows."""
        sec = self._get(section_id)
        if not isinstance(df, pd.DataFrame):
            df = pd.DataFrame(df)
        n = len(df)
        shown = df.iloc[: max(0, int(max_rows))]
        show_index = not isinstance(df.index, pd.RangeIndex)
        table = shown.to_html(
            escape=True,
            index=show_index,
            border=0,
            classes="data",
            na_rep="n/a",
            float_format=lambda x: f"{x:.4g}",
            justify="left",
        )
        # Line-break opportunities after the "_" of snake_case names (column names, parcel
        # labels): cells then wrap between words, never inside one (text nodes only).
        table = re.sub(r">([^<]+)<", lambda m: ">" + m.group(1).replace("_", "_<wbr>") + "<",
                       table)
        self._n_tables += 1
        note = f"showing the first {len(shown)} of {n} rows" if n > len(shown) else ""
        head = Markup("<p class='caption'><b>Table {}.</b> {}{}</p>").format(
            self._n_tables, caption, f" ({note})" if caption and note else note
        )
        sec.items.append(
            Markup('<div class="table">{}<div class="scroll">{}</div></div>').format(
                head, Markup(table)
            )
        )

    def add_figure(
        self,
        section_id: str,
        make: Callable[..., Any],
        *args: Any,
        caption: str = "",
        **kwargs: Any,
    ) -> bool:
        """Call ``make(*args, **kwargs)`` and embed the figure it returns.

        ``make`` may also be an already made figure (anything it may return).
        ``make`` may return an :class:`~bids_hrf.reports.figures.EmbeddedFigure`, a
        matplotlib Figure (converted and closed), a nilearn display, or an SVG string. When it
        raises, a warning is logged (traceback at debug level) and the note "figure could not
        be made: <reason>" is inserted instead.

        Returns
        -------
        bool
            Whether the figure was embedded (always True for a figure recorded to be drawn
            in parallel: its failure shows when the report is rendered).
        """
        sec = self._get(section_id)
        self._n_figures += 1
        if self.n_procs > 1:
            sec.items.append(Markup(""))
            self._pending.append(_Pending(sec, len(sec.items) - 1, self._n_figures, make,
                                          args, kwargs, caption))
            return True
        outcome = _draw(make, args, kwargs)
        return self._place(sec, None, self._n_figures, outcome, caption,
                           getattr(make, "__name__", "figure"))

    def _place(self, sec: _Section, position: int | None, number: int, outcome: tuple,
               caption: str, name: str) -> bool:
        """Put a drawn figure (or the note of its failure) into its section."""
        if outcome[0] == "ok":
            html = _figure_html(outcome[1], caption, number)
            ok = True
        else:
            reason, trace = outcome[1], outcome[2]
            what = caption or name
            self.logger.warning("figure %r could not be made: %s", what, reason)
            self.logger.debug("traceback of the failed figure %r:\n%s", what, trace)
            html = Markup(
                '<div class="note fail"><b>Figure {}</b> ({}): figure could not be '
                "made: {}</div>"
            ).format(number, what, reason)
            sec.n_failed += 1
            self._failed.append(f"{sec.title}: {what}")
            ok = False
        if position is None:
            sec.items.append(html)
        else:
            sec.items[position] = html
        sec.n_figures += ok
        return ok

    def draw_pending(self) -> None:
        """Draw the figures recorded so far (in parallel when ``n_procs`` > 1)."""
        jobs, self._pending = self._pending, []
        for job, outcome in zip(jobs, _draw_parallel(jobs, self.n_procs), strict=True):
            self._place(job.section, job.position, job.number, outcome, job.caption,
                        getattr(job.make, "__name__", "figure"))

    def add_warning(self, text: str) -> None:
        """Add a warning shown in the box at the top of the report."""
        self._warnings.append(str(text))

    def add_metadata(self, key: str, value: Any, group: str = "Summary") -> None:
        """Add a key/value to the summary (``group`` names its table, e.g. "Parameters")."""
        self._metadata.setdefault(str(group), {})[str(key)] = value

    @property
    def failed_figures(self) -> list[str]:
        """``"<section>: <caption>"`` of each figure that could not be made (so far drawn)."""
        return list(self._failed)

    # -- output ----------------------------------------------------------------------------
    def _template(self):
        import jinja2

        text = (
            importlib.resources.files("bids_hrf.reports")
            .joinpath("templates")
            .joinpath("report.html.j2")
            .read_text(encoding="utf-8")
        )
        env = jinja2.Environment(
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        return env.from_string(text)

    def render(self) -> str:
        """Return the report as one self-contained HTML document."""
        from bids_hrf import __version__

        self.draw_pending()
        warnings = list(self._warnings)
        if self._failed:
            listed = "; ".join(self._failed[:5]) + ("; ..." if len(self._failed) > 5 else "")
            warnings.append(
                f"{len(self._failed)} figure(s) could not be made ({listed}); "
                "see the notes in the sections and the log."
            )
        metadata = [
            (group, [(key, _format_value(value)) for key, value in items.items()])
            for group, items in self._metadata.items()
        ]
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return self._template().render(
            title=self.title,
            subtitle=self.subtitle,
            generated=now,
            version=__version__,
            warnings=warnings,
            metadata=metadata,
            versions=software_versions() if self.include_versions else {},
            sections=self._roots,
            n_figures=self._n_figures,
            n_failed=len(self._failed),
        )

    def write(self, path: str | os.PathLike) -> Path:
        """Render and write the report atomically (temporary file, then ``os.replace``).

        Returns
        -------
        pathlib.Path
            The written file.
        """
        path = Path(path)
        text = self.render()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as exc:
            raise OutputError(
                f"cannot write the report: {exc.strerror or exc}",
                fix="check that the output directory is writable",
                path=str(path),
            ) from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise OutputError(
                    f"cannot write the report: {exc.strerror or exc}",
                    fix="check free disk space and permissions",
                    path=str(path),
                ) from exc
            raise
        return path


def escape_text(text: str) -> str:
    """Escape ``text`` for inclusion in an HTML fragment given to :meth:`Report.add_html`."""
    return _html.escape(str(text), quote=True)


__all__ = ["Report", "escape_text", "software_versions"]
