"""Open the built HTML docs in headless Chromium, offline, and check them.

Usage (from the repository root, after the Sphinx build)::

    python .ci/check_site.py BUILD_DIR --screenshots DIR

Chromium (Debian's ``chromium`` package) is driven over its DevTools protocol
with ``websocket-client`` (in the ``docs`` extra). Every host name resolves to
nothing, the page's network is emulated as offline, and a request for any URL
that is not a local file fails the check, so a page that needs a CDN to look
right fails here as it would for a reader without a network.

For each page the DOM is read once its scripts have run, and the check asserts:

- every formula that Sphinx wrote (``span.math`` and ``div.math``) contains
  rendered math (a MathML ``<math>`` element, or MathJax's or KaTeX's output),
  and pages known to have formulas have at least one;
- the visible text holds no raw LaTeX delimiter (``\\(``, ``\\)``, ``\\[``,
  ``\\]``), and no rendered formula shows a LaTeX command as text (a command
  the converter did not know);
- fractions are laid out as fractions (the numerator above the denominator),
  which a browser that ignored the MathML would not do;
- every image loaded (``naturalWidth > 0``), pages that should show images
  have at least one, and each figure a page is known to show (by file name;
  the user guide's are drawn by the docs build) is there and loaded;
- no local file that the page refers to failed to load.

It saves a screenshot of each page to the screenshots folder and exits with
status 1 when any check fails.
"""

import argparse
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import websocket


@dataclass(frozen=True)
class Page:
    path: str  # relative to the build folder
    math: bool  # the page has formulas
    images: bool  # the page shows at least one image
    figures: tuple = ()  # file names of images the page must show, loaded


PAGES = (
    Page("index.html", math=True, images=False),
    Page(
        "user_guide.html",
        math=True,
        images=True,
        # Drawn from the page's own code (docs/_ext/section_figure.py);
        # tests/test_tutorial.py checks this list against the page.
        figures=(
            "worked_example.png",
            "noise_against_batch_size.png",
            "loss_against_epochs_and_steps.png",
            "separate_fits.png",
            "shuffle_fixed_point.png",
            "best_rate_against_batch_size.png",
            "noise_scale_over_training.png",
        ),
    ),
    Page("auto_examples/plot_noise_scale.html", math=True, images=True),
    Page("performance.html", math=True, images=True),
    Page("generated/skbatchnet.BatchMLPClassifier.html", math=True, images=False),
)

WIDTH, HEIGHT = 1280, 900
# Screenshots stop at this height: the user guide is many screens long.
MAX_SCREENSHOT_HEIGHT = 12_000
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")

# Runs in the page once it has loaded; returns what the checks need.
INSPECT = r"""
(async () => {
  // Lazy images below the fold would never load in a headless viewport.
  for (const img of document.images) img.loading = "eager";
  await Promise.all([...document.images].map((img) => img.decode().catch(() => {})));
  await document.fonts.ready;
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));

  const RENDERED = "math, mjx-container, .katex";
  const containers = [...document.querySelectorAll(".math")];
  const raw = containers
    .filter((c) => !c.querySelector(RENDERED))
    .map((c) => c.textContent.trim().slice(0, 60));

  const text = document.body.innerText;
  const delimiters = [];
  for (const d of ["\\(", "\\)", "\\[", "\\]"]) {
    const at = text.indexOf(d);
    if (at >= 0) delimiters.push(text.slice(Math.max(0, at - 20), at + 40));
  }

  const formulas = [...document.querySelectorAll("math")];
  const commands = formulas
    .map((m) => (m.textContent.match(/\\[A-Za-z]+/) || [null])[0])
    .filter((c) => c !== null);

  const flat = [];
  let fractions = 0;
  for (const f of document.querySelectorAll("mfrac")) {
    if (f.children.length !== 2 || f.getBoundingClientRect().height === 0) continue;
    fractions += 1;
    const top = f.children[0].getBoundingClientRect();
    const bottom = f.children[1].getBoundingClientRect();
    if (top.bottom > bottom.top + 1) flat.push(f.textContent.slice(0, 40));
  }

  const images = [...document.images].map((img) => ({
    src: img.getAttribute("src"),
    loaded: img.complete && img.naturalWidth > 0,
  }));
  return {
    containers: containers.length, raw, delimiters, formulas: formulas.length,
    commands, fractions, flat, images,
  };
})()
"""


class DevTools:
    """A minimal DevTools-protocol client over one browser websocket."""

    def __init__(self, url, timeout):
        self.timeout = timeout
        self.ws = websocket.create_connection(
            url, timeout=timeout, suppress_origin=True
        )
        self.next_id = 0
        self.events = []

    def _receive(self):
        return json.loads(self.ws.recv())

    def call(self, method, session=None, **params):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = self._receive()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method, session):
        deadline = time.monotonic() + self.timeout
        while True:
            for event in self.events:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {self.timeout} s")
            self.events.append(self._receive())

    def close(self):
        self.ws.close()


def start_chromium(executable, profile, timeout):
    """Start headless Chromium with no way out to the network."""
    args = [
        executable,
        "--headless",
        # CI runs as root, where Chromium's sandbox cannot start.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        # Every host name resolves to nothing: a CDN cannot be reached even
        # on a machine that has a network.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        f"--window-size={WIDTH},{HEIGHT}",
        "about:blank",
    ]
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    # With port 0, Chromium picks a free port and writes it, with the
    # browser's websocket path, to this file.
    port_file = Path(profile) / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{executable} exited with status {process.returncode} at start"
            )
        lines = port_file.read_text().split() if port_file.exists() else []
        if len(lines) == 2:
            return process, f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.1)
    process.kill()
    raise TimeoutError(f"{executable} opened no DevTools port within {timeout} s")


def visit(devtools, url, screenshot):
    """Load ``url`` offline, save a screenshot, return the page's report."""
    target = devtools.call("Target.createTarget", url="about:blank")["targetId"]
    session = devtools.call("Target.attachToTarget", targetId=target, flatten=True)[
        "sessionId"
    ]
    devtools.call("Network.enable", session)
    devtools.call(
        "Network.emulateNetworkConditions",
        session,
        offline=True,
        latency=0,
        downloadThroughput=-1,
        uploadThroughput=-1,
    )
    devtools.call("Page.enable", session)
    devtools.call(
        "Emulation.setDeviceMetricsOverride",
        session,
        width=WIDTH,
        height=HEIGHT,
        deviceScaleFactor=1,
        mobile=False,
    )
    devtools.call("Page.navigate", session, url=url)
    devtools.wait_for("Page.loadEventFired", session)
    result = devtools.call(
        "Runtime.evaluate",
        session,
        expression=INSPECT,
        awaitPromise=True,
        returnByValue=True,
    )
    if "exceptionDetails" in result:
        raise RuntimeError(f"the page check raised: {result['exceptionDetails']}")
    report = result["result"]["value"]

    metrics = devtools.call("Page.getLayoutMetrics", session)
    height = min(metrics["cssContentSize"]["height"], MAX_SCREENSHOT_HEIGHT)
    shot = devtools.call(
        "Page.captureScreenshot",
        session,
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1},
    )
    screenshot.write_bytes(base64.b64decode(shot["data"]))

    requests, failed = {}, []
    for event in devtools.events:
        if event.get("sessionId") != session:
            continue
        params = event.get("params", {})
        if event.get("method") == "Network.requestWillBeSent":
            requests[params["requestId"]] = params["request"]["url"]
        elif event.get("method") == "Network.loadingFailed":
            failed.append(params["requestId"])
    report["external"] = sorted(
        {u for u in requests.values() if not u.startswith(LOCAL_SCHEMES)}
    )
    report["broken"] = sorted(
        {
            requests[r]
            for r in failed
            if r in requests and requests[r].startswith("file:")
        }
    )
    devtools.events = [e for e in devtools.events if e.get("sessionId") != session]
    devtools.call("Target.closeTarget", targetId=target)
    return report


def problems(page, report):
    """What is wrong with a page, as sentences; empty when it passes."""
    found = []
    if page.math and report["containers"] == 0:
        found.append("no formula on a page that has formulas")
    if report["raw"]:
        found.append(
            f"{len(report['raw'])} of {report['containers']} formulas not "
            f"rendered, e.g. {report['raw'][0]!r}"
        )
    if report["delimiters"]:
        found.append(f"raw LaTeX in the text: {report['delimiters'][0]!r}")
    if report["commands"]:
        found.append(f"LaTeX commands shown as text: {sorted(set(report['commands']))}")
    if report["flat"]:
        found.append(f"fractions not laid out: {report['flat'][:3]}")
    not_loaded = [image["src"] for image in report["images"] if not image["loaded"]]
    if not_loaded:
        found.append(f"images not loaded: {not_loaded}")
    if page.images and not report["images"]:
        found.append("no image on a page that shows images")
    for figure in page.figures:
        shown = [
            image
            for image in report["images"]
            if (image["src"] or "").rsplit("/", 1)[-1] == figure
        ]
        if not shown:
            found.append(f"figure {figure} missing")
        elif not all(image["loaded"] for image in shown):
            found.append(f"figure {figure} not loaded")
    if report["external"]:
        found.append(f"requests to the network: {report['external']}")
    if report["broken"]:
        found.append(f"local files that failed to load: {report['broken']}")
    return found


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the HTML build folder")
    parser.add_argument(
        "--screenshots",
        type=Path,
        required=True,
        help="folder for the screenshots (created if missing)",
    )
    parser.add_argument(
        "--chromium",
        default=None,
        help="the browser to run (default: chromium or chromium-browser on PATH)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds allowed for each wait"
    )
    return parser.parse_args()


def main():
    args = parse_args()
    executable = (
        args.chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if executable is None:
        sys.exit(
            "check_site: no chromium found on PATH; install it "
            "(apt-get install chromium) or pass --chromium PATH."
        )
    site = args.site.resolve()
    missing = [page.path for page in PAGES if not (site / page.path).is_file()]
    if missing:
        sys.exit(f"check_site: {site} lacks {missing}; build the docs first.")
    args.screenshots.mkdir(parents=True, exist_ok=True)

    failures = 0
    with tempfile.TemporaryDirectory() as profile:
        process, url = start_chromium(executable, profile, args.timeout)
        try:
            devtools = DevTools(url, args.timeout)
            for page in PAGES:
                name = page.path.replace("/", "__").removesuffix(".html") + ".png"
                report = visit(
                    devtools, (site / page.path).as_uri(), args.screenshots / name
                )
                found = problems(page, report)
                failures += bool(found)
                summary = (
                    f"{report['formulas']} formulas rendered "
                    f"({report['fractions']} fractions), "
                    f"{len(report['images'])} images, "
                    f"{len(report['external'])} network requests"
                )
                print(f"{'FAIL' if found else 'ok  '} {page.path}: {summary}")
                for sentence in found:
                    print(f"     - {sentence}")
            devtools.close()
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    print(f"screenshots: {args.screenshots.resolve()}")
    if failures:
        print(f"check_site: {failures} of {len(PAGES)} pages failed", file=sys.stderr)
        return 1
    print(f"check_site: all {len(PAGES)} pages passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
