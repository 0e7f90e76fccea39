"""Helpers for the nbstream tests of the browser tier (on top of ``labkit``): watching a
streaming cell (``Recorder``), waiting for its live view and static footer, building
``%%llm`` cells for the fake server, switching the theme and measuring text contrast.

Plain module like ``labkit`` (``tests/browser`` is on ``sys.path`` via ``conftest.py``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit import ARTIFACTS, REPO_ROOT, NotebookPage

RECORDER_JS = r"""
(cell, key) => {
  const SCOPE = '.nbstream-view, .nbstream-answer';
  const rec = { samples: [], bad: [], done: false, sawView: false,
    sawLoading: false };
  (window.__nbrec = window.__nbrec || {})[key] = rec;
  const t0 = performance.now();
  const URL_ATTRS = ['href', 'src', 'action', 'formaction', 'xlink:href', 'data'];
  const BAD_TAGS = ['script', 'iframe', 'object', 'embed', 'frame', 'base', 'form', 'meta'];
  const isBad = (el) => {
    const tag = el.tagName.toLowerCase();
    if (BAD_TAGS.includes(tag)) return true;
    if (tag === 'img' && (el.getAttribute('src') || '').trim() === 'x') return true;
    for (const a of el.attributes) {
      const name = a.name.toLowerCase();
      const value = a.value.replace(/[\s\u0000-\u001f]+/g, '').toLowerCase();
      if (name.startsWith('on')) return true;
      if (URL_ATTRS.includes(name) && /^(javascript|vbscript|data:text\/html)/.test(value)) {
        return true;
      }
    }
    return false;
  };
  const scan = (root, where) => {
    if (!root || root.nodeType !== 1) return;
    for (const el of [root, ...root.querySelectorAll('*')]) {
      if (isBad(el)) rec.bad.push(where + ': ' + el.outerHTML.slice(0, 300));
    }
  };
  // The answer's text: textContent without the view's own controls (the Copy buttons).
  const skipButtons = { acceptNode: (n) => (n.parentElement && n.parentElement.closest('button'))
    ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT };
  const text = (sel) => {
    const e = cell.querySelector(sel);
    if (!e) return null;
    let out = '';
    const walk = document.createTreeWalker(e, NodeFilter.SHOW_TEXT, skipButtons);
    while (walk.nextNode()) out += walk.currentNode.nodeValue;
    return out;
  };
  const sample = (why) => {
    if (rec.done) return;
    const view = cell.querySelector('.nbstream-view');
    const footer = cell.querySelector('.nbstream-footer');
    if (view) rec.sawView = true;
    if (!view && (cell.querySelector('.jp-OutputArea') || cell).textContent.includes(
      'Loading widget')) rec.sawLoading = true;
    rec.samples.push({
      t: Math.round(performance.now() - t0), why,
      state: view ? (view.dataset.state || '') : null,
      body: text('.nbstream-view .nbstream-body'),
      status: text('.nbstream-view .nbstream-status'),
      answer: text('.nbstream-answer'),
      finish: footer ? footer.dataset.finishReason : null,
    });
    if (rec.samples.length > 5000) stop();
  };
  const inScope = (node) => node && node.nodeType === 1 &&
    (node.closest(SCOPE) || node.matches(SCOPE) || node.querySelector(SCOPE));
  const observer = new MutationObserver((records) => {
    let touched = false;
    for (const m of records) {
      const target = m.target.nodeType === 1 ? m.target : m.target.parentElement;
      if (m.type === 'attributes') {
        if (target && target.closest(SCOPE) && isBad(target)) {
          rec.bad.push('attribute ' + m.attributeName + ': ' + target.outerHTML.slice(0, 300));
        }
        continue;
      }
      const scoped = target && target.closest(SCOPE);
      if (scoped) touched = true;
      for (const n of m.addedNodes) {
        if (scoped || inScope(n)) { scan(n, 'added'); touched = true; }
      }
    }
    if (touched) sample('mutation');
  });
  observer.observe(cell, { childList: true, subtree: true, attributes: true,
    characterData: true });
  const timer = setInterval(() => sample('tick'), 50);
  const stop = () => { if (rec.done) return; sample('stop'); rec.done = true;
    clearInterval(timer); observer.disconnect(); };
  rec.stop = stop;
  sample('start');
  for (const el of cell.querySelectorAll(SCOPE)) scan(el, 'initial');
}
"""


class Recorder:
    """Python side of ``RECORDER_JS`` for one cell."""

    def __init__(self, nb: NotebookPage, i: int, key: str):
        self.nb, self.key = nb, key
        nb.cell(i).evaluate(RECORDER_JS, key)

    def stop(self) -> None:
        self.nb.page.evaluate("k => window.__nbrec[k].stop()", self.key)

    def samples(self) -> list[dict]:
        return self.nb.page.evaluate(
            "k => window.__nbrec[k].samples.map(({t, why, state, body, status, answer,"
            " finish}) => ({t, why, state, body, status, answer, finish}))",
            self.key,
        )

    def bad(self) -> list[str]:
        return self.nb.page.evaluate("k => window.__nbrec[k].bad", self.key)

    def last(self) -> dict:
        return self.nb.page.evaluate(
            "k => { const s = window.__nbrec[k].samples; return s[s.length - 1]; }", self.key
        )


def wait_until(
    what: str,
    fn: Callable[[], Any],
    timeout: float,
    interval: float = 0.05,
    show: Callable[[], Any] | None = None,
) -> Any:
    """Poll ``fn`` until it returns something truthy; on timeout fail with ``what`` and the
    last value (or ``show()``, which describes the state better)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
        except Exception as exc:  # a locator that is not there yet
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            if show is not None:
                try:
                    last = show()
                except Exception as exc:
                    last = f"(show failed: {exc})"
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; {last!r}")
        time.sleep(interval)


def nonspace(text: str | None) -> int:
    return len("".join((text or "").split()))


def llm_cell(fake_llm: Any, model: str, prompt: str, out: str = "ans", extra: str = "") -> str:
    return (
        f"%%llm -m openai:{model} --base-url {fake_llm.openai_base_url} -o {out}{extra}\n{prompt}"
    )


def footer(nb: NotebookPage, i: int) -> Any:
    return nb.output(i).locator(".nbstream-footer")


def wait_live_view(nb: NotebookPage, i: int, rec: Recorder, timeout: float = 15) -> None:
    """Wait until the live widget (``.nbstream-view``) has been rendered in cell ``i``.

    Fails early if the stream ends (static footer) without the live view ever showing."""
    flags = "k => { const r = window.__nbrec[k]; return [r.sawView, r.sawLoading]; }"

    def seen() -> bool:
        return nb.page.evaluate(flags, rec.key)[0] or footer(nb, i).count() > 0

    wait_until(f"the live nbstream widget in cell {i}", seen, timeout)
    saw_view, saw_loading = nb.page.evaluate(flags, rec.key)
    if not saw_view:
        hint = (
            "the output showed ipywidgets' 'Loading widget...' placeholder until the static "
            "answer replaced it: the front end never found the widget's model"
            if saw_loading
            else "no live view was ever rendered"
        )
        raise AssertionError(
            f"cell {i}: the stream ended without a live nbstream widget ({hint}); "
            f"output: {nb.output_text(i)[:300]!r}"
        )


def wait_footer(nb: NotebookPage, i: int, timeout: float = 30) -> tuple[str, str]:
    """Wait for the static footer of cell ``i``; returns (finish reason, footer text)."""
    loc = footer(nb, i)
    wait_until(
        f"the static answer + footer of cell {i}",
        lambda: loc.count() > 0,
        timeout,
        # the output when the wait gave up (e.g. a traceback instead of the answer)
        show=lambda: f"output: {nb.output_text(i)[:1500]!r}",
    )
    return loc.first.get_attribute("data-finish-reason") or "", loc.first.inner_text()


def summary(samples: list[dict]) -> list[tuple]:
    """Compact (t ms, state, live text length, static text length, finish) per sample."""
    out = []
    for s in samples:
        row = (s["t"], s["state"], nonspace(s["body"]), nonspace(s["answer"]), s["finish"])
        if not out or out[-1][1:] != row[1:]:
            out.append(row)
    return out


def streaming_bodies(samples: list[dict]) -> list[dict]:
    return [s for s in samples if s["body"] is not None and s["state"] in ("waiting", "streaming")]


def assert_grows(samples: list[dict], min_samples: int = 5, min_distinct: int = 3) -> list[int]:
    """The live body's text (non-whitespace characters) never shrinks and grows in steps."""
    live = streaming_bodies(samples)
    lengths = [nonspace(s["body"]) for s in live]
    assert len(live) >= min_samples, f"only {len(live)} mid-stream samples: {samples[-5:]}"
    for a, b in itertools.pairwise(live):
        assert nonspace(b["body"]) >= nonspace(a["body"]), (
            f"streamed text shrank at t={b['t']} ms: {a['body']!r} -> {b['body']!r}"
        )
    distinct = sorted(set(lengths))
    assert len(distinct) >= min_distinct, f"text did not grow in steps: lengths {lengths}"
    return lengths


def no_traceback(nb: NotebookPage, i: int) -> None:
    out = nb.output(i)
    stderr = out.locator('.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]')
    texts = stderr.all_inner_texts() if stderr.count() else []
    assert not any("Traceback" in t for t in texts), f"traceback on stderr: {texts}"
    assert "Traceback" not in nb.output_text(i)


def run_and_record(nb: NotebookPage, i: int, key: str) -> Recorder:
    rec = Recorder(nb, i, key)
    nb.run_cell(i, wait=False)
    return rec


# --------------------------------------------------------------------------- sample answers

# Math (inline and display) and a Python block: the README's math-and-code screenshots.
GAUSS_CODE = (
    "import math\n"
    "\n"
    "def normal_pdf(x, mu=0.0, sigma=1.0):\n"
    '    """Density of N(mu, sigma^2) at x."""\n'
    "    z = (x - mu) / sigma\n"
    "    return math.exp(-z * z / 2) / (sigma * math.sqrt(2 * math.pi))\n"
    "\n"
    "print(round(normal_pdf(0.0), 4))  # 0.3989\n"
)
GAUSS_ANSWER = (
    "## The Gaussian integral\n\n"
    "The standard normal density is $\\varphi(x) = \\frac{1}{\\sqrt{2\\pi}} e^{-x^2/2}$, "
    "and it integrates to one because\n\n"
    "$$\\int_{-\\infty}^{\\infty} e^{-x^2/2}\\,dx = \\sqrt{2\\pi}.$$\n\n"
    "In Python:\n\n"
    f"```python\n{GAUSS_CODE}```\n\n"
    "The peak, $1/\\sqrt{2\\pi} \\approx 0.3989$, matches the printed value."
)


# --------------------------------------------------------------------------- theme, contrast

# WCAG 2 contrast of an element's text against what it is drawn on: its computed `color`
# (alpha and ancestors' opacity composited) over the background made of its ancestors'
# background colours, composited bottom-up from the first opaque one (or the white canvas).
CONTRAST_JS = r"""
(el) => {
  const parse = (c) => {
    let m = c.match(/^rgba?\(([^)]+)\)$/);
    if (m) {
      const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(parseFloat);
      return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
    }
    m = c.match(/^color\(srgb ([^)]+)\)$/);
    if (m) {
      const p = m[1].split(/[\s\/]+/).filter(Boolean).map(parseFloat);
      return [p[0] * 255, p[1] * 255, p[2] * 255, p.length > 3 ? p[3] : 1];
    }
    throw new Error('cannot parse the colour ' + c);
  };
  const over = (top, bottom) =>
    [0, 1, 2].map((k) => top[k] * top[3] + bottom[k] * (1 - top[3])).concat([1]);
  const layers = [];
  let drawnOn = 'canvas';
  for (let n = el; n && n.nodeType === 1; n = n.parentElement) {
    const c = parse(getComputedStyle(n).backgroundColor);
    if (c[3] > 0) {
      layers.push(c);
      if (c[3] >= 1) { drawnOn = String(n.className || n.tagName).slice(0, 80); break; }
    }
  }
  let bg = [255, 255, 255, 1];
  for (const c of layers.reverse()) bg = over(c, bg);
  let opacity = 1;
  for (let n = el; n && n.nodeType === 1; n = n.parentElement) {
    opacity *= parseFloat(getComputedStyle(n).opacity);
  }
  const raw = parse(getComputedStyle(el).color);
  const fg = over([raw[0], raw[1], raw[2], raw[3] * opacity], bg);
  const lum = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => {
      v /= 255;
      return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [l1, l2] = [lum(fg), lum(bg)];
  const hex = (c) => '#' + c.slice(0, 3)
    .map((v) => Math.round(v).toString(16).padStart(2, '0')).join('');
  return { ratio: (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05),
    fg: hex(fg), bg: hex(bg), color: getComputedStyle(el).color, drawnOn };
}
"""


def contrast(locator: Any) -> dict:
    """``{ratio, fg, bg, color, drawnOn}`` for the first element of ``locator``."""
    return locator.first.evaluate(CONTRAST_JS)


def set_theme(nb: NotebookPage, theme: str, timeout: float = 30) -> None:
    """Switch the JupyterLab theme (``"JupyterLab Light"`` / ``"JupyterLab Dark"``) and wait
    until its stylesheet applies. The choice is saved in the server's user settings, so
    switch back when done."""
    nb.execute_command("apputils:change-theme", {"theme": theme})
    nb.page.wait_for_function(
        """t => document.body.dataset.jpThemeName === t &&
          getComputedStyle(document.body).getPropertyValue('--jp-layout-color0').trim() !== ''""",
        arg=theme,
        timeout=timeout * 1000,
    )
    # then two frames, so the new stylesheet has been applied to the layout
    nb.page.evaluate(
        """() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"""
    )


# --------------------------------------------------------------------------- screenshots

DOCS = REPO_ROOT / "docs"
DOCS_ENV = "NBSTREAM_DOCS_SCREENSHOTS"
MAX_DOC_PNG = 200 * 1024


def doc_screenshot(locator: Any, name: str, margin: int = 12) -> Path:
    """Screenshot of ``locator`` (an element: crop to it, ``margin`` px more on the left)
    for the README.

    Always written to ``test-artifacts/browser/docs/NAME``; copied into ``docs/NAME`` when
    ``NBSTREAM_DOCS_SCREENSHOTS=1`` (so a plain test run does not rewrite tracked files
    with pixels that differ by a port number). Fails if the PNG exceeds 200 KB."""
    out = ARTIFACTS / "docs" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    page = locator.page
    locator.scroll_into_view_if_needed()
    page.mouse.move(0, 0)  # no hover effects (output collapser, Copy button) in the picture
    box = locator.bounding_box()
    assert box is not None, f"{name}: the element to screenshot is not visible"
    # a margin on the left only: above, below and right are the cell's input and borders
    x = max(0, box["x"] - margin)
    clip = {"x": x, "y": box["y"], "width": box["width"] + box["x"] - x, "height": box["height"]}
    page.screenshot(path=str(out), clip=clip, animations="disabled")
    return publish_doc(out, name)


def publish_doc(png: Path, name: str) -> Path:
    """Check the size of a README screenshot; copy it to ``docs/NAME`` when
    ``NBSTREAM_DOCS_SCREENSHOTS=1``. Returns ``png``."""
    size = png.stat().st_size
    assert size <= MAX_DOC_PNG, f"{name} is {size // 1024} KB (> 200 KB): crop it further"
    if os.environ.get(DOCS_ENV) == "1":
        shutil.copyfile(png, DOCS / name)
    return png


# --------------------------------------------------------------------------- MathJax

MATHJAX_CONTROL = (
    "from IPython.display import HTML\n"
    "HTML('<span class=\"mathjax-control\">control: $x^2$</span>')"
)


def wait_mathjax_settled(nb: NotebookPage, timeout: float = 20) -> bool:
    """Run a control cell whose HTML output has TeX in it and wait until the front end's
    MathJax has typeset it: typesetting runs in output order, so any MathJax pass over the
    outputs above it has finished too. False if MathJax never typeset the control (then a
    check for "not re-typeset" proves nothing)."""
    j = nb.add_cell(MATHJAX_CONTROL)
    nb.run_cell(j)
    try:
        wait_until(
            "MathJax to typeset the control cell",
            lambda: nb.output(j).locator("mjx-container").count() > 0,
            timeout,
        )
    except AssertionError:
        return False
    return True
