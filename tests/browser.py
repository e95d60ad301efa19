"""Open an HTML report in headless Chromium and collect what a reader would hit.

:func:`check_report` copies the report, adds a script that runs in the page (console
errors, images that do not decode, elements wider than the page, table cells with a word cut
across lines, figures without a caption, figures that could not be made) and reads the
answer back from the DOM that Chromium dumps.
``python -m tests.browser REPORT.html [PNG]`` prints the findings (and a screenshot).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTH = 1280

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-dev-shm-usage", "--hide-scrollbars"]

#: Runs before the report's own scripts: records errors and console.error calls.
_HEAD = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  var what = e.message || (e.target && e.target.outerHTML || "").slice(0, 120);
  window.__errors.push("error: " + what);
}, true);
window.addEventListener("unhandledrejection", function (e) {
  window.__errors.push("unhandled rejection: " + e.reason);
});
(function () {
  var original = console.error;
  console.error = function () {
    window.__errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
})();
</script>"""

#: Runs at the load event (every image loaded): opens every section, measures.
_TAIL = """<script>
window.addEventListener("load", function () {
  document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  var imgs = Array.from(document.images);
  var broken = [];
  imgs.forEach(function (img, k) {
    if (!(img.complete && img.naturalWidth > 0 && img.naturalHeight > 0)) {
      broken.push(k + ": " + (img.alt || "").slice(0, 80));
    }
  });
  var limit = document.documentElement.clientWidth;
  // Content of a scrolling box that fits in the page is reached by scrolling that box.
  function scrolledInPage(el) {
    for (var a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      var ox = getComputedStyle(a).overflowX;
      if ((ox === "auto" || ox === "scroll" || ox === "hidden")
          && a.getBoundingClientRect().right <= limit + 1) return true;
    }
    return false;
  }
  var overflow = [];
  document.querySelectorAll("main *").forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > limit + 1 && !scrolledInPage(el)) {
      overflow.push(el.tagName.toLowerCase() + (el.className ? "." + el.className : "")
                    + " right=" + Math.round(r.right));
    }
  });
  // Table cells whose words are cut across lines ("time_to_pe|ak"): a word (split at
  // spaces, after "_" and "-") drawn on more than one line.
  var brokenWords = [];
  document.querySelectorAll("main table th, main table td").forEach(function (cell) {
    var walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (var node = walker.nextNode(); node; node = walker.nextNode()) {
      var re = /[^\\s_-]+[_-]?/g, m;
      while ((m = re.exec(node.data)) !== null) {
        var range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].replace(/[_-]$/, "").length);
        var tops = {};
        Array.from(range.getClientRects()).forEach(function (q) {
          if (q.width > 0) tops[Math.round(q.top)] = true;
        });
        if (Object.keys(tops).length > 1 && brokenWords.length < 20) {
          brokenWords.push(m[0] + " in " + cell.textContent.trim().slice(0, 60));
        }
      }
    }
  });
  var uncaptioned = [];
  document.querySelectorAll("figure").forEach(function (f, k) {
    var cap = f.querySelector("figcaption");
    var text = cap ? cap.textContent.replace(/^\\s*Figure\\s+\\d+\\.\\s*/, "").trim() : "";
    if (!text) uncaptioned.push(k);
  });
  var out = document.createElement("pre");
  out.id = "__browser_check";
  out.textContent = JSON.stringify({
    errors: window.__errors, n_images: imgs.length, broken: broken,
    page_width: limit, scroll_width: document.documentElement.scrollWidth,
    overflow: overflow.slice(0, 20), n_overflow: overflow.length, broken_words: brokenWords,
    n_figures: document.querySelectorAll("figure").length, uncaptioned: uncaptioned,
    failed_notes: document.querySelectorAll(".note.fail").length
  });
  document.body.appendChild(out);
});
</script>"""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _instrumented(report: Path, folder: Path) -> Path:
    text = report.read_text(encoding="utf-8")
    head = text.find("<head>")
    if head < 0 or "</body>" not in text:
        raise ValueError(f"{report} has no <head> or </body>")
    text = text[: head + 6] + _HEAD + text[head + 6:]
    # Every image loads before the load event (lazy ones below the fold would not).
    text = text.replace(' loading="lazy"', "")
    cut = text.rfind("</body>")
    text = text[:cut] + _TAIL + text[cut:]
    path = folder / report.name
    path.write_text(text, encoding="utf-8")
    return path


def check_report(report: str | os.PathLike, chromium: str | None = None,
                 screenshot: str | os.PathLike | None = None, timeout: float = 180) -> dict:
    """Render ``report`` in headless Chromium and return the findings.

    Returns
    -------
    dict
        ``errors`` (uncaught errors, failed resource loads, unhandled rejections and
        console.error calls), ``n_images``, ``broken`` (images that did not decode),
        ``page_width``, ``scroll_width``, ``overflow`` (elements whose right edge passes the
        page width, every section opened, except inside a scrolling box that fits the page),
        ``broken_words`` (table cells with a word cut across lines), ``n_figures``,
        ``uncaptioned`` (figure indices without caption text) and ``failed_notes`` (figures
        that could not be made).
    """
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium/Chrome executable (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="report-browser-") as tmp:
        tmp_path = Path(tmp)
        page = _instrumented(Path(report), tmp_path)
        common = [chromium, *_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                  f"--window-size={WIDTH},1000", "--virtual-time-budget=30000"]
        for _attempt in range(3):  # a cold Chromium start now and then dumps too early
            proc = subprocess.run([*common, "--dump-dom", page.as_uri()],
                                  capture_output=True, text=True, timeout=timeout,
                                  check=False)
            if '<pre id="__browser_check">' in proc.stdout:
                break
        if screenshot is not None:
            subprocess.run([*common, f"--screenshot={Path(screenshot).absolute()}",
                            page.as_uri()], capture_output=True, timeout=timeout,
                           check=False)
    dom = proc.stdout
    start = dom.find('<pre id="__browser_check">')
    if start < 0:
        raise RuntimeError(f"Chromium gave no result for {report} (exit {proc.returncode}): "
                           + proc.stderr[-2000:])
    end = dom.find("</pre>", start)
    raw = dom[start + len('<pre id="__browser_check">'):end]
    import html

    return json.loads(html.unescape(raw))


if __name__ == "__main__":  # pragma: no cover
    result = check_report(sys.argv[1], screenshot=sys.argv[2] if len(sys.argv) > 2 else None)
    print(json.dumps(result, indent=1))
