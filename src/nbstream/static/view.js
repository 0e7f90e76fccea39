// The live view of one streaming answer (an anywidget ESM module).
// Content arrives as custom messages; see nbstream/widget.py for the protocol.
// All HTML comes from the kernel's sanitizing Markdown renderer (raw HTML disabled).
const LABELS = { waiting: "waiting for the first token", streaming: "streaming", done: "finished",
  stopped: "stopped", error: "failed" };
function fmtStatus(model, st, now) {
  const parts = [model.get("llm_model")];
  if (model.get("note")) parts.push(model.get("note"));
  parts.push(LABELS[st.state] || st.state);
  if (st.state === "error" && model.get("error")) parts.push(model.get("error"));
  parts.push(st.chunks + (st.chunks === 1 ? " token" : " tokens"));
  parts.push(((now - st.t0) / 1000).toFixed(1) + " s");
  const streaming = (now - st.t1) / 1000;
  if (st.t1 !== null && st.chunks > 1 && streaming > 0) {
    parts.push((st.chunks / streaming).toFixed(1) + " tok/s");
  }
  return parts.join(" · ");
}
// Model-level state, shared by every view of this widget. Messages:
//   update: {keep, add, freeze?, chunks, state?}
//           buf = tail[:keep] + add; frozen += buf[:freeze]; tail = buf[freeze:]
//   reset:  {frozen, tail, state, chunks, elapsed, streaming_for}  (reply to "sync")
// Timings are kept on the browser's clock: t0 = start, t1 = first token, tEnd = end.
function initialize({ model }) {
  model.__nb = { frozen: "", tail: "", state: "waiting", chunks: 0, t0: Date.now(), t1: null,
    tEnd: null, views: new Set() };
  model.on("msg:custom", (msg) => {
    const st = model.__nb;
    const now = Date.now();
    let added;
    if (msg.type === "reset") {
      st.frozen = msg.frozen; st.tail = msg.tail;
      st.t0 = now - msg.elapsed * 1000;
      st.t1 = msg.chunks > 0 ? now - msg.streaming_for * 1000 : null;
      st.state = msg.state;
      added = null;
    } else if (msg.type === "update") {
      const buf = st.tail.slice(0, msg.keep) + msg.add;
      const cut = msg.freeze || 0;
      added = buf.slice(0, cut);
      st.frozen += added; st.tail = buf.slice(cut);
      if (st.t1 === null && msg.chunks > 0) st.t1 = now;
      if (msg.state) st.state = msg.state;
    } else return;
    st.chunks = msg.chunks;
    if (st.tEnd === null && st.state !== "waiting" && st.state !== "streaming") st.tEnd = now;
    for (const v of st.views) v(added);
  });
}
function render({ model, el }) {
  if (!model.__nb) initialize({ model });
  const st = model.__nb;
  el.classList.add("nbstream-view");
  el.innerHTML =
    '<div class="nbstream-bar">' +
    '<button class="nbstream-stop" type="button" title="Stop the stream (the partial answer is kept)">&#9632; Stop</button>' +
    '<span class="nbstream-status"></span></div>' +
    '<div class="nbstream-body jp-RenderedHTMLCommon"><div class="nbstream-frozen"></div><div class="nbstream-tail"></div></div>';
  const btn = el.querySelector(".nbstream-stop");
  const status = el.querySelector(".nbstream-status");
  const frozen = el.querySelector(".nbstream-frozen");
  const tail = el.querySelector(".nbstream-tail");
  let shownFrozen = 0;
  // added: the HTML that just froze (append it), or null after a reset (repaint all)
  const paint = (added) => {
    if (added !== null && shownFrozen === st.frozen.length - added.length) {
      if (added) frozen.insertAdjacentHTML("beforeend", added);
    } else {
      frozen.innerHTML = st.frozen;
    }
    shownFrozen = st.frozen.length;
    tail.innerHTML = st.tail;
    tick();
  };
  const tick = () => {
    status.textContent = fmtStatus(model, st, st.tEnd === null ? Date.now() : st.tEnd);
    el.dataset.state = st.state;
    if (st.tEnd !== null) btn.disabled = true;
  };
  btn.addEventListener("click", () => {
    btn.disabled = true; btn.textContent = "Stopping…";
    model.send({ event: "stop" });
  });
  st.views.add(paint);
  paint(null);
  const timer = setInterval(tick, 250);
  model.send({ event: "sync" });
  return () => { clearInterval(timer); st.views.delete(paint); };
}
export default { initialize, render };
