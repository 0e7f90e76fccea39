// The live view of one streaming answer (an anywidget ESM module).
// Content arrives as custom messages; see nbstream/widget.py for the protocol.
// All HTML comes from the kernel's sanitizing Markdown renderer (raw HTML disabled).
const LABELS = { waiting: "waiting for the first token", streaming: "streaming", done: "finished",
  stopped: "stopped", error: "failed" };
function fmtStatus(model, s, elapsed) {
  const parts = [model.get("llm_model")];
  if (model.get("note")) parts.push(model.get("note"));
  parts.push(LABELS[s.state] || s.state);
  if (s.state === "error" && model.get("error")) parts.push(model.get("error"));
  parts.push(s.chunks + (s.chunks === 1 ? " token" : " tokens"));
  parts.push(elapsed.toFixed(1) + " s");
  if (s.chunks > 1 && s.streaming_for > 0) parts.push((s.chunks / s.streaming_for).toFixed(1) + " tok/s");
  return parts.join(" · ");
}
function initialize({ model }) {
  model.__nb = { frozen: "", tail: "", status: null, receivedAt: Date.now(), views: new Set() };
  model.on("msg:custom", (msg) => {
    const st = model.__nb;
    if (msg.type === "reset") { st.frozen = msg.frozen; st.tail = msg.tail; }
    else if (msg.type === "update") { st.frozen += msg.frozen; st.tail = st.tail.slice(0, msg.keep) + msg.tail; }
    else return;
    st.status = msg.status; st.receivedAt = Date.now();
    for (const v of st.views) v(msg);
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
  const paint = (msg) => {
    if (msg && msg.type === "update" && shownFrozen <= st.frozen.length - msg.frozen.length) {
      if (msg.frozen) frozen.insertAdjacentHTML("beforeend", msg.frozen);
    } else {
      frozen.innerHTML = st.frozen;
    }
    shownFrozen = st.frozen.length;
    tail.innerHTML = st.tail;
    tick();
  };
  const tick = () => {
    const s = st.status;
    if (!s) { status.textContent = "starting…"; return; }
    const live = s.state === "waiting" || s.state === "streaming";
    const elapsed = s.elapsed + (live ? (Date.now() - st.receivedAt) / 1000 : 0);
    status.textContent = fmtStatus(model, s, elapsed);
    el.dataset.state = s.state;
    if (!live) { btn.disabled = true; }
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
