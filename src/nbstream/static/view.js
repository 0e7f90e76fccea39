// The live view of one streaming answer (an anywidget ESM module).
// Content arrives as custom messages declared in nbstream/widget.py (UpdateMsg, ResetMsg,
// StatusMsg); the status words come with them (one table: nbstream/response.py LABELS, via Stream.label).
// All HTML comes from the kernel's sanitizing Markdown renderer (raw HTML disabled); the
// only text this file puts into the page itself goes through textContent.
function fmtStatus(model, st, now) {
  const parts = [model.get("llm_model")];
  if (model.get("note")) parts.push(model.get("note"));
  parts.push(st.label);
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
//   update: {keep, add, freeze?, chunks, state?, label?}
//           buf = tail[:keep] + add; frozen += buf[:freeze]; tail = buf[freeze:]
//   reset:  {frozen, tail, state, label, chunks, elapsed, streaming_for,
//            thinking, thinking_tokens, thinking_for}  (reply to "sync")
//   status: {state, label}  (e.g. retrying, with its countdown words)
//   thinking: {add, tokens}  (the model's thinking: appended as text, never as HTML)
//   approval: {id, name, arguments}  (a tool call waits: show a card with Run / Skip / Always)
//   approved: {id, answer}           (the call was decided: the card says so, buttons off)
// Browser -> kernel: {event: "stop"} (the button), {event: "sync"} (a view rendered),
//   {event: "approve", id, answer: "run" | "skip" | "always"} (a card's button).
// Timings are kept on the browser's clock: t0 = start, t1 = first token, tEnd = end.
const LIVE = ["waiting", "retrying", "thinking", "streaming"];
function initialize({ model }) {
  model.__nb = { frozen: "", tail: "", state: "waiting", label: "waiting for the first token",
    chunks: 0, t0: Date.now(), t1: null, tEnd: null, views: new Set(), cards: new Map(),
    thinking: "", thinkTokens: 0, tThink: null, tThought: null };
  model.on("msg:custom", (msg) => {
    const st = model.__nb;
    const now = Date.now();
    let added;
    if (msg.type === "reset") {
      st.frozen = msg.frozen; st.tail = msg.tail;
      st.t0 = now - msg.elapsed * 1000;
      st.t1 = msg.chunks > 0 ? now - msg.streaming_for * 1000 : null;
      st.state = msg.state; st.label = msg.label;
      st.thinking = msg.thinking || ""; st.thinkTokens = msg.thinking_tokens || 0;
      if (st.thinking && st.tThink === null) st.tThink = now - (msg.thinking_for || 0) * 1000;
      added = null;
    } else if (msg.type === "thinking") {
      if (st.tThink === null) st.tThink = now;
      st.thinking += msg.add; st.thinkTokens = msg.tokens;
      added = "";
    } else if (msg.type === "update") {
      const buf = st.tail.slice(0, msg.keep) + msg.add;
      const cut = msg.freeze || 0;
      added = buf.slice(0, cut);
      st.frozen += added; st.tail = buf.slice(cut);
      if (st.t1 === null && msg.chunks > 0) st.t1 = now;
      if (msg.state) { st.state = msg.state; st.label = msg.label; }
    } else if (msg.type === "status") {
      st.state = msg.state; st.label = msg.label;
      added = "";
    } else if (msg.type === "approval") {
      st.cards.set(msg.id, { name: msg.name, args: msg.arguments, answer: null });
      added = "";
    } else if (msg.type === "approved") {
      const card = st.cards.get(msg.id);
      if (card) card.answer = msg.answer || "decided";
      added = "";
    } else return;
    if (msg.chunks !== undefined) st.chunks = msg.chunks;
    if (st.tThink !== null && st.tThought === null && (st.chunks > 0 || !LIVE.includes(st.state)))
      st.tThought = now;
    if (st.tEnd === null && !LIVE.includes(st.state)) st.tEnd = now;
    for (const v of st.views) v(added);
  });
}
// A "Copy" button on each code block: copies the text of its <code> (the exact code).
function addCopyButtons(root) {
  for (const block of root.querySelectorAll(".nbstream-code:not([data-copy])")) {
    block.dataset.copy = "1";
    const btn = document.createElement("button");
    btn.type = "button"; btn.className = "nbstream-copy"; btn.textContent = "Copy";
    btn.title = "Copy this code";
    block.prepend(btn);
  }
}
async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (err) {  // no clipboard API (insecure context) or no permission: the old way
    const area = document.createElement("textarea");
    area.value = text; area.style.position = "fixed"; area.style.opacity = "0";
    document.body.appendChild(area); area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}
function render({ model, el }) {
  if (!model.__nb) initialize({ model });
  const st = model.__nb;
  el.classList.add("nbstream-view");
  el.innerHTML =
    '<div class="nbstream-bar">' +
    '<button class="nbstream-stop" type="button" title="Stop the stream (the partial answer is kept)">&#9632; Stop</button>' +
    '<span class="nbstream-status"></span></div>' +
    '<details class="nbstream-prompt" hidden><summary>prompt</summary><pre></pre></details>' +
    '<details class="nbstream-thinking" hidden><summary></summary><pre class="nbstream-thinking-text"></pre></details>' +
    '<pre class="nbstream-thinking-peek" hidden></pre>' +
    '<div class="nbstream-cards"></div>' +
    '<div class="nbstream-body jp-RenderedHTMLCommon"><div class="nbstream-frozen"></div><div class="nbstream-tail"></div></div>';
  const btn = el.querySelector(".nbstream-stop");
  if (!model.get("stoppable")) {
    btn.disabled = true; btn.textContent = "■ Stop: interrupt the kernel";
    btn.title = "This cell does not await the stream (e.g. under %%time), so the button " +
      "cannot be heard: interrupt the kernel to stop it (the partial answer is kept)";
  }
  const prompt = model.get("prompt");
  if (prompt) {
    const details = el.querySelector(".nbstream-prompt");
    details.querySelector("pre").textContent = prompt;
    details.hidden = false;
  }
  const status = el.querySelector(".nbstream-status");
  const frozen = el.querySelector(".nbstream-frozen");
  const tail = el.querySelector(".nbstream-tail");
  const cards = el.querySelector(".nbstream-cards");
  const thinking = el.querySelector(".nbstream-thinking");
  const thinkingText = thinking.querySelector(".nbstream-thinking-text");
  const peek = el.querySelector(".nbstream-thinking-peek");
  // The thinking: its summary line; while the model thinks, its last lines below it
  // ("collapsed to its last lines"); the whole text when the section is opened. Text only.
  let shownThinking = 0;
  const paintThinking = (now) => {
    if (!st.thinking) return;
    thinking.hidden = false;
    if (shownThinking !== st.thinking.length) {
      if (shownThinking < st.thinking.length && shownThinking > 0) {
        thinkingText.append(st.thinking.slice(shownThinking));
      } else {
        thinkingText.textContent = st.thinking;
      }
      shownThinking = st.thinking.length;
    }
    const end = st.tThought !== null ? st.tThought : now;
    const secs = ((end - st.tThink) / 1000).toFixed(0);
    const tokens = st.thinkTokens + (st.thinkTokens === 1 ? " token" : " tokens");
    thinking.querySelector("summary").textContent =
      (st.tThought !== null ? "Thought for " : "Thinking · ") + secs + " s · " + tokens;
    const live = st.tThought === null && !thinking.open;
    peek.hidden = !live;
    if (live) peek.textContent = st.thinking.split("\n").slice(-3).join("\n").slice(-400);
    el.dataset.thinking = st.tThought === null ? "live" : "done";
  };
  // One card per tool call that waited for approval; all text through textContent.
  const paintCards = () => {
    for (const [id, card] of st.cards) {
      let box = cards.querySelector(`[data-card="${id}"]`);
      if (!box) {
        box = document.createElement("div");
        box.className = "nbstream-card"; box.dataset.card = String(id);
        const head = document.createElement("div");
        head.append("Run ");
        const code = document.createElement("code"); code.textContent = card.name;
        head.append(code, "?");
        const args = document.createElement("pre"); args.textContent = card.args;
        const buttons = document.createElement("div");
        for (const [answer, words] of [["run", "Run"], ["skip", "Skip"],
                                       ["always", "Always run " + card.name + " in this kernel"]]) {
          const b = document.createElement("button");
          b.type = "button"; b.dataset.answer = answer; b.textContent = words;
          buttons.append(b);
        }
        const said = document.createElement("span"); said.className = "nbstream-card-answer";
        buttons.append(said);
        box.append(head, args, buttons);
        cards.append(box);
      }
      if (card.answer) {
        for (const b of box.querySelectorAll("button")) b.disabled = true;
        box.querySelector(".nbstream-card-answer").textContent = card.answer;
      }
    }
  };
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
    addCopyButtons(el);
    paintCards();
    tick();
  };
  const tick = () => {
    const now = st.tEnd === null ? Date.now() : st.tEnd;
    paintThinking(now);
    status.textContent = fmtStatus(model, st, now);
    el.dataset.state = st.state;
    if (st.tEnd !== null) btn.disabled = true;
  };
  btn.addEventListener("click", () => {
    btn.disabled = true; btn.textContent = "Stopping…";
    model.send({ event: "stop" });
  });
  cards.addEventListener("click", (event) => {
    const b = event.target.closest && event.target.closest("button[data-answer]");
    if (!b) return;
    const box = b.closest(".nbstream-card");
    for (const other of box.querySelectorAll("button")) other.disabled = true;
    model.send({ event: "approve", id: Number(box.dataset.card), answer: b.dataset.answer });
  });
  el.addEventListener("click", async (event) => {
    const copy = event.target.closest && event.target.closest(".nbstream-copy");
    if (!copy) return;
    const code = copy.parentElement.querySelector("code");
    const ok = await copyText(code ? code.textContent : "");
    copy.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => { copy.textContent = "Copy"; }, 1500);
  });
  st.views.add(paint);
  paint(null);
  const timer = setInterval(tick, 250);
  model.send({ event: "sync" });
  return () => { clearInterval(timer); st.views.delete(paint); };
}
export default { initialize, render };
