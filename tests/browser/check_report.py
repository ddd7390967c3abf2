"""Open a resnet-probe report in headless Chromium: screenshot, console errors, figure sizes.

Run by ``nox -s browser``; by hand:

    python tests/browser/check_report.py --out /tmp/browser-check
    python tests/browser/check_report.py --report probe-reports/lesion-.../report.html

Without ``--report`` it first builds a sample lesion report (random-weight resnet20, digits,
64 images) and, with ``--index``, the demo on its first 64 images (its digits nets trained
first where the cache lacks them) to check the demo's index page as well: no console errors,
every link leads to a file, a screenshot. Chromium runs with plain flags only: ``--dump-dom``
on a copy of the report with a small probe script appended (it writes every figure's rendered size into the DOM),
``--enable-logging=stderr`` for console messages, ``--screenshot`` for the picture. Exit
code 0 when the page logs no console error and every figure SVG has a non-zero size.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: tests.deadlines from the checkout
from tests.deadlines import deadline  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
)
WIDTH = 1280
CHROMIUM_S = 20.0  # one headless Chromium call on a fast machine, rounded well up (1-3 s)
# First in <head>: console.error, uncaught exceptions and failed resources all become console
# lines with a marker, because Chromium logs every console level as INFO.
WATCH = """
<script>
(function () {
  var error = console.error;
  console.error = function () {
    console.log("[probe-error] " + Array.prototype.join.call(arguments, " "));
    return error.apply(console, arguments);
  };
  window.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t !== window) {
      console.log("[probe-error] failed to load " + (t.src || t.href || t.tagName));
    } else {
      console.log("[probe-error] uncaught " + e.message);
    }
  }, true);
})();
</script>
"""
PROBE = """
<script>
(function () {
  var out = [];
  document.querySelectorAll("svg").forEach(function (svg, i) {
    var r = svg.getBoundingClientRect();
    out.push("svg " + i + " " + (svg.parentElement ? svg.parentElement.tagName : "-") + " "
             + r.width.toFixed(1) + " " + r.height.toFixed(1));
  });
  out.push("height " + document.documentElement.scrollHeight);
  var pre = document.createElement("pre");
  pre.id = "probe-result";
  pre.textContent = out.join("\\n");
  document.body.appendChild(pre);
})();
</script>
"""
BROKEN = (
    "<script>console.error('probe self-test error');</script><img src='missing-probe.png'>"
    "<script>undefinedFunction();</script>"
)
BROKEN_ERRORS = 3
CONSOLE = re.compile(r":(\w+):CONSOLE[:(]?\d*\)?\]\s*(.*)")


def build_sample(out: Path) -> Path:
    """A lesion report of a random-weight resnet20 on 64 digits, written under ``out``."""
    run = out / "sample"
    cmd = [
        sys.executable, "-m", "resnet_probe.cli.app", "lesion", "--model", "resnet20", "--random-init",
        "--dataset", "digits", "--limit", "64", "--random-k", "1:4", "--samples", "3",
        "--device", "cpu", "--out", str(run), "--force",
    ]
    subprocess.run(cmd, check=True)
    return run / "report.html"


def build_demo(out: Path) -> Path:
    """``resnet-probe demo --limit 64`` under ``out``; its index page."""
    run = out / "demo"
    cmd = [sys.executable, "-m", "resnet_probe.cli.app", "demo", "--limit", "64", "--device", "cpu", "--out", str(run),
           "--force"]
    subprocess.run(cmd, check=True)
    return run / "index.html"


def check_index(binary: str, index: Path, work: Path, shot: Path) -> list[str]:
    """Problems of the demo's index page: console errors, links to missing files, no screenshot."""
    _, height, errors = probe(binary, index, work)
    problems = [f"index console error: {e}" for e in errors]
    links = re.findall(r'href="([^"#:]+)"', index.read_text(encoding="utf-8"))
    if not links:
        problems.append("the index links to no report")
    problems += [f"index links to a missing file: {href}" for href in links if not (index.parent / href).exists()]
    chromium(binary, work / "profile-index", f"--window-size={WIDTH},{max(height, 600)}", f"--screenshot={shot}",
             index.as_uri())
    if not shot.exists() or shot.stat().st_size == 0:
        problems.append("chromium wrote no screenshot of the index")
    print(f"index: {index} ({len(links)} links); page height {height}px; screenshot: {shot}")
    return problems


def chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium call with its own throw-away profile."""
    cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=deadline(CHROMIUM_S), check=False)


def console_errors(stderr: str) -> list[str]:
    """Console messages of level error (and uncaught exceptions) in Chromium's log."""
    errors = []
    for line in stderr.splitlines():
        m = CONSOLE.search(line)
        if m and (m.group(1) in ("ERROR", "FATAL") or "[probe-error]" in m.group(2)):
            errors.append(m.group(2).strip())
    return errors


Sizes = list[tuple[str, float, float]]  # (parent tag, width, height) per <svg>


def probe(binary: str, report: Path, work: Path, extra: str = "") -> tuple[Sizes, int, list[str]]:
    """Figure sizes, page height and console errors of ``report`` as Chromium renders it."""
    copy = work / f"probe-{report.stem}.html"
    html = report.read_text(encoding="utf-8")
    html = re.sub(r"<head>", lambda h: h.group(0) + WATCH, html, count=1)
    copy.write_text(html.replace("</body>", extra + PROBE + "</body>"), encoding="utf-8")
    done = chromium(
        binary, work / "profile-probe", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
        f"--window-size={WIDTH},900", "--dump-dom", copy.as_uri(),
    )
    m = re.search(r'<pre id="probe-result">(.*?)</pre>', done.stdout, re.S)
    if m is None:
        raise SystemExit(f"chromium produced no probe result (exit {done.returncode}):\n{done.stderr[-2000:]}")
    sizes, height = [], 0
    for line in m.group(1).splitlines():
        parts = line.split()
        if parts[0] == "svg":
            sizes.append((parts[2], float(parts[3]), float(parts[4])))
        elif parts[0] == "height":
            height = int(parts[1])
    return sizes, height, console_errors(done.stderr)


def self_test(binary: str, work: Path) -> None:
    """The checker must see a console error on a page that makes one."""
    page = work / "broken.html"
    page.write_text("<!DOCTYPE html><html><head></head><body><p>x</p></body></html>", encoding="utf-8")
    _, _, errors = probe(binary, page, work, extra=BROKEN)
    if len(errors) != BROKEN_ERRORS:
        raise SystemExit(
            f"self-test failed: a page with {BROKEN_ERRORS} console errors showed {len(errors)}: {errors}"
        )


def main(argv: list[str] | None = None) -> int:
    """Build (or take) a report, probe it, screenshot it; non-zero exit on a problem."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, help="an existing report.html (default: build a sample)")
    parser.add_argument("--out", type=Path, help="where the sample and the screenshot go (default: a temp dir)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or CHROMIUM)
    parser.add_argument("--index", action="store_true", help="also build the demo (64 images) and check its index")
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        raise SystemExit(f"no Chromium at {args.chromium}: apt-get install -y chromium")
    out = args.out or Path(tempfile.mkdtemp(prefix="probe-browser-"))
    out.mkdir(parents=True, exist_ok=True)
    report = (args.report or build_sample(out)).resolve()
    with tempfile.TemporaryDirectory(prefix="probe-chromium-") as tmp:
        work = Path(tmp)
        self_test(args.chromium, work)
        sizes, height, errors = probe(args.chromium, report, work)
        shot = out / "screenshot.png"
        chromium(
            args.chromium, work / "profile-shot", f"--window-size={WIDTH},{max(height, 600)}",
            f"--screenshot={shot}", report.as_uri(),
        )
        index_problems = (
            check_index(args.chromium, build_demo(out).resolve(), work, out.resolve() / "index.png")
            if args.index else []
        )
    problems = [f"console error: {e}" for e in errors] + index_problems
    figures = [s for s in sizes if s[0] == "FIGURE"]
    if not figures:
        problems.append("no <svg> figure in the report")
    problems += [f"figure svg {i} renders {w}x{h}" for i, (_, w, h) in enumerate(figures) if w <= 0 or h <= 0]
    if not shot.exists() or shot.stat().st_size == 0:
        problems.append("chromium wrote no screenshot")
    print(f"report: {report}")
    print(f"figures: {len(figures)}, sizes: " + ", ".join(f"{w:.0f}x{h:.0f}" for _, w, h in figures))
    print(f"page height: {height}px; screenshot: {shot}")
    for p in problems:
        print(f"FAIL {p}")
    if not problems:
        print("OK: no console errors, every figure has a size")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
