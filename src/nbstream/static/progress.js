// The progress display of one batch (an anywidget ESM module); the kernel side is
// nbstream/progress.py (ProgressView, widget_counts). State arrives as synced traits, one
// message per update, at most ~10 per second:
//   counts: {line, finished, total, elapsed, eta, ended, state, note}
//           line: the counts in words; elapsed/eta: seconds when sent (ticked on here)
//   pane_title, pane_text: the answer in the small pane (sent only when they change)
//   llm_model, stoppable: set once
// Browser -> kernel: {event: "stop"} (the button). Every text goes in through textContent:
// the pane holds LLM output, which is untrusted.
function fmtSeconds(s) {  // as progress.py format_seconds
  if (Math.round(s * 10) / 10 < 60) return s.toFixed(1) + " s";
  const n = Math.floor(s);
  const pad = (k) => String(k).padStart(2, "0");
  if (n < 3600) return Math.floor(n / 60) + " min " + pad(n % 60) + " s";
  return Math.floor(n / 3600) + " h " + pad(Math.floor((n % 3600) / 60)) + " min";
}
// Model-level: when the last counts arrived (on the browser's clock), for the clocks.
function initialize({ model }) {
  model.__pgAt = Date.now();
  model.on("change:counts", () => { model.__pgAt = Date.now(); });
}
function render({ model, el }) {
  if (model.__pgAt === undefined) initialize({ model });
  el.classList.add("nbstream-progress");
  el.innerHTML =
    '<div class="nbstream-progress-bar">' +
    '<button class="nbstream-progress-stop" type="button" hidden ' +
    'title="Stop the batch: running rows are cancelled, finished ones kept">&#9632; Stop</button>' +
    '<span class="nbstream-progress-status"></span></div>' +
    '<progress max="1" value="0"></progress>' +
    '<div class="nbstream-progress-note" hidden></div>' +
    '<details class="nbstream-progress-pane" open hidden><summary></summary><pre></pre></details>';
  const btn = el.querySelector(".nbstream-progress-stop");
  const status = el.querySelector(".nbstream-progress-status");
  const bar = el.querySelector("progress");
  const note = el.querySelector(".nbstream-progress-note");
  const pane = el.querySelector(".nbstream-progress-pane");
  const paneTitle = pane.querySelector("summary");
  const paneText = pane.querySelector("pre");
  let stopping = false;
  const tick = () => {
    const c = model.get("counts") || {};
    const since = c.ended ? 0 : (Date.now() - model.__pgAt) / 1000;
    const parts = [];
    if (model.get("llm_model")) parts.push(model.get("llm_model"));
    if (c.line) parts.push(c.line);
    parts.push(fmtSeconds((c.elapsed || 0) + since));
    if (!c.ended && c.eta !== null && c.eta !== undefined) {
      parts.push("ETA " + fmtSeconds(Math.max(0, c.eta - since)));
    }
    status.textContent = parts.join(" · ");
  };
  const paint = () => {
    const c = model.get("counts") || {};
    bar.max = Math.max(c.total || 0, 1);
    // the rows answered, not the cancelled ones: a stopped batch does not read as finished
    bar.value = c.ended && !c.total ? 1 : (c.answered !== undefined ? c.answered : c.finished) || 0;
    el.dataset.state = c.state || "running";
    note.textContent = c.note || "";
    note.hidden = !c.note;
    btn.hidden = !model.get("stoppable");
    if (c.ended) btn.disabled = true;
    tick();
  };
  const paintPane = () => {
    const text = model.get("pane_text");
    const title = model.get("pane_title");
    // Follow the newest text unless the reader scrolled up.
    const atBottom = paneText.scrollHeight - paneText.scrollTop - paneText.clientHeight < 20;
    paneTitle.textContent = title || "answer";
    paneText.textContent = text;
    pane.hidden = !text && !title;
    if (atBottom) paneText.scrollTop = paneText.scrollHeight;
  };
  btn.addEventListener("click", () => {
    if (stopping) return;
    stopping = true;
    btn.disabled = true; btn.textContent = "Stopping…";
    model.send({ event: "stop" });
  });
  model.on("change:counts", paint);
  model.on("change:pane_text", paintPane);
  model.on("change:pane_title", paintPane);
  paint();
  paintPane();
  const timer = setInterval(tick, 500);
  return () => {
    clearInterval(timer);
    model.off("change:counts", paint);
    model.off("change:pane_text", paintPane);
    model.off("change:pane_title", paintPane);
  };
}
export default { initialize, render };
