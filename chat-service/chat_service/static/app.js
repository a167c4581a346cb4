// LLM-In-The-Chat web page: plain ES module, no framework, no build step.
// Every piece of text that comes from a message is set with textContent (never innerHTML), so
// whatever people or models write is shown as text and never runs.
//
// Signing in: a name is taken with POST /auth/signup, which returns a signed token; the page keeps
// it in localStorage (llmchat.token, llmchat.name), sends it as "Authorization: Bearer" on every
// REST call and as the WebSocket subprotocol "bearer.<token>" (never in a URL), and exchanges it
// for a fresh one (POST /auth/refresh) at half its remaining life.

const API = "/api/v1";
const WS_PROTOCOL = "llmchat.v1";
// Close codes after which reconnecting cannot help (4429, too many connections, is retried).
const CLOSE = { badRequest: 4400, unauthenticated: 4401, forbidden: 4403, notFound: 4404, taken: 4409, tooMany: 4429 };
const REFUSED = new Set([CLOSE.badRequest, CLOSE.unauthenticated, CLOSE.forbidden, CLOSE.notFound, CLOSE.taken]);
const AUTH_CODES = new Set(["invalid_token", "token_expired", "token_revoked", "session_ended", "unauthenticated"]);
// Error frames that come just before the service ends the session (the close explains them).
const SESSION_END = new Set(["token_expired", "token_revoked", "not_a_member"]);
const MAX_TIMER_MS = 6 * 3600 * 1000; // refresh at least this often (and stay below setTimeout's limit)
const $ = (id) => document.getElementById(id);

const state = {
  room: null,
  name: null,
  ws: null,
  cursor: null, // id of the last entry shown: the resume cursor
  seen: new Set(), // entry ids shown (dedupe)
  seenMsg: new Set(), // msg ids shown (a pending post is replaced by its entry)
  answered: new Set(), // "model|turn" of the answers shown (late token deltas are dropped)
  pending: new Map(), // msg id -> {frame, el}
  live: new Map(), // "model|turn" -> bubble element
  models: [],
  members: new Set(),
  leader: null,
  attempt: 0,
  retryTimer: null,
  pingTimer: null,
  lastFrameAt: 0,
  lostAt: null,
  stopped: true,
  reconnects: [], // seconds from a lost connection to the next welcome (read by tests)
};
window.llmchat = state; // for tests and curious people

// Who this tab is signed in as. The token is a secret: it goes in headers and the WebSocket
// subprotocol, never in a URL, a log or the page.
const auth = { name: null, token: null, expiresAt: 0, refreshTimer: null, lapsed: null };
const store = {
  token: "llmchat.token",
  name: "llmchat.name",
  expires: "llmchat.expires",
  room: "llmchat.room",
};

// ---------------------------------------------------------------- helpers

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function parseId(id) {
  const [ms, seq] = String(id).split("-");
  return [Number(ms) || 0, Number(seq) || 0];
}

function isAfter(a, b) {
  const [am, as] = parseId(a);
  const [bm, bs] = parseId(b);
  return am > bm || (am === bm && as > bs);
}

function newId() {
  if (crypto.randomUUID) return "web-" + crypto.randomUUID().replaceAll("-", "");
  return "web-" + Date.now().toString(36) + Math.random().toString(36).slice(2);
}

function timeOf(ts) {
  const d = new Date(ts * 1000);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function sameName(a, b) {
  return typeof a === "string" && typeof b === "string" && a.toLowerCase() === b.toLowerCase();
}

// A REST call. Sends the tab's token unless `token` says otherwise (null: none). Errors carry
// status, code and, for 429, retryAfter (seconds).
async function api(path, { method = "GET", body, token = auth.token } = {}) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token) headers.authorization = `Bearer ${token}`;
  const r = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  let data = null;
  try {
    data = await r.json();
  } catch {
    data = null;
  }
  if (!r.ok) {
    const err = new Error(data?.error?.message || `${r.status} ${r.statusText}`);
    err.status = r.status;
    err.code = data?.error?.code;
    if (r.status === 429) err.retryAfter = Math.max(1, Math.ceil(Number(r.headers.get("retry-after")) || 1));
    throw err;
  }
  return data;
}

// What to tell a person about a failed call.
function describe(err) {
  if (err?.status === 429) return `Slow down: too many requests. Retry in ${err.retryAfter} s.`;
  if (err instanceof TypeError) return "The chat service cannot be reached; check the connection and retry.";
  return err?.message || String(err);
}

function toast(message, kind = "error") {
  if (kind === "warn") {
    // one "slow down" at a time: replace the previous one
    for (const old of $("toasts").querySelectorAll(".toast.warn")) old.remove();
  }
  const t = el("div", `toast ${kind}`, message);
  $("toasts").append(t);
  setTimeout(() => t.remove(), 8000);
}

function setConn(text, cls = "") {
  const c = $("conn");
  c.textContent = text;
  c.className = `conn ${cls}`;
}

// Render text with @mentions highlighted: split into text nodes and spans (still inert).
function renderText(container, text) {
  const re = /(^|\s)(@[\w.-]+)/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    const start = m.index + m[1].length;
    if (start > last) container.append(document.createTextNode(text.slice(last, start)));
    const who = m[2].slice(1).toLowerCase();
    const cls = who === (state.name || "").toLowerCase() ? "mention me" : "mention";
    container.append(el("span", cls, m[2]));
    last = start + m[2].length;
  }
  if (last < text.length) container.append(document.createTextNode(text.slice(last)));
}

// ---------------------------------------------------------------- scrolling

function nearBottom() {
  const s = $("scroller");
  return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
}

function stickToBottom(wasNear) {
  if (wasNear) {
    const s = $("scroller");
    s.scrollTop = s.scrollHeight;
  }
}

// ---------------------------------------------------------------- timeline

function authorLine(entry) {
  const head = el("div", "head");
  const who = el("span", "author", entry.author);
  head.append(who);
  const kindLabel = { model: "model", judge: "judge", system: "system" }[entry.kind];
  if (kindLabel) head.append(el("span", `tag tag-${entry.kind}`, kindLabel));
  const meta = entry.meta || {};
  if (entry.kind === "model" && meta.as_leader) {
    const b = el("span", "tag tag-leader", "leader");
    b.title = meta.term ? `answered as leader, term ${meta.term}` : "answered as leader";
    head.append(b);
  }
  const t = el("time", "ts", timeOf(entry.ts));
  t.dateTime = new Date(entry.ts * 1000).toISOString();
  head.append(t);
  return head;
}

function verdictCard(entry) {
  const meta = entry.meta || {};
  const scores = meta.scores || {};
  const reasons = meta.reasons || {};
  const flagged = new Set(meta.flagged || []);
  const box = el("div", "verdict");
  box.append(el("p", "verdict-title", "Verdict"));
  const list = el("ol", "scores");
  const ranked = Object.entries(scores).sort((a, b) => b[1] - a[1]);
  for (const [model, score] of ranked) {
    const li = el("li", "score");
    li.dataset.model = model;
    const name = el("span", "score-model", model);
    const bar = el("span", "bar");
    bar.setAttribute("aria-hidden", "true");
    const fill = el("span", "fill");
    fill.style.width = `${Math.max(0, Math.min(10, Number(score))) * 10}%`;
    bar.append(fill);
    const value = el("span", "score-value", `${Number(score).toFixed(1).replace(/\.0$/, "")}/10`);
    li.append(name, bar, value);
    if (flagged.has(model)) li.append(el("span", "tag tag-flag", "flagged"));
    const reason = String(reasons[model] || "no reason given").split("\n")[0];
    const why = el("span", "reason", reason);
    why.title = reasons[model] || "";
    li.append(why);
    list.append(li);
  }
  box.append(list);
  if (meta.reference) {
    const ref = el("p", "verdict-reference", `Judged against the judge's own answer: “${meta.reference}”`);
    box.append(ref);
  }
  return box;
}

function entryNode(entry) {
  const li = el("li", `entry kind-${entry.kind}`);
  li.id = `e-${entry.id}`;
  li.dataset.id = entry.id;
  li.dataset.msgId = entry.msg_id;
  li.dataset.kind = entry.kind;
  li.dataset.author = entry.author;
  if (entry.kind === "human" && entry.author === state.name) li.classList.add("mine");
  li.append(authorLine(entry));
  const meta = entry.meta || {};
  if (entry.kind === "judge" && meta.scores) {
    li.append(verdictCard(entry));
  } else {
    const body = el("p", "text");
    renderText(body, entry.text || "");
    li.append(body);
  }
  if (entry.kind === "model") {
    const bits = [];
    if (meta.tokens) bits.push(`${meta.tokens} tokens`);
    if (meta.first_token_s != null) bits.push(`first token ${Number(meta.first_token_s).toFixed(2)} s`);
    if (meta.total_s != null) bits.push(`${Number(meta.total_s).toFixed(1)} s`);
    if (meta.truncated) bits.push("cut short");
    if (bits.length) li.append(el("p", "stats", bits.join(" · ")));
  }
  return li;
}

function addEntry(entry) {
  if (!entry || !entry.id || state.seen.has(entry.id)) return;
  if (state.cursor && !isAfter(entry.id, state.cursor)) return; // already shown: resumes overlap
  const wasNear = nearBottom();
  state.seen.add(entry.id);
  state.seenMsg.add(entry.msg_id);
  if (entry.kind === "model" && entry.meta && entry.meta.turn) state.answered.add(`${entry.author}|${entry.meta.turn}`);
  state.cursor = entry.id;
  const pend = state.pending.get(entry.msg_id);
  if (pend) {
    pend.el.remove();
    state.pending.delete(entry.msg_id);
  }
  if (entry.kind === "model") {
    const meta = entry.meta || {};
    const key = `${meta.model || entry.author}|${meta.turn || meta.cut}`;
    const bubble = state.live.get(key);
    if (bubble) {
      bubble.remove();
      state.live.delete(key);
    }
  }
  $("timeline").append(entryNode(entry));
  if (entry.kind === "human" && !state.members.has(entry.author)) {
    state.members.add(entry.author);
    renderMembers();
  }
  stickToBottom(wasNear);
  if (entry.kind === "judge" || entry.kind === "model") scheduleStandings();
}

// ---------------------------------------------------------------- live tokens

function onLive(event) {
  if (!event || !event.model) return;
  const key = `${event.model}|${event.turn}`;
  if (event.type === "start" || event.type === "delta") {
    let bubble = state.live.get(key);
    if (!bubble) {
      if (event.type === "delta" && state.answered.has(key)) return;
      bubble = el("div", "entry kind-model streaming");
      bubble.dataset.model = event.model;
      bubble.dataset.turn = event.turn;
      bubble.setAttribute("aria-busy", "true");
      const head = el("div", "head");
      head.append(el("span", "author", event.model), el("span", "tag tag-model", "model"));
      head.append(el("span", "typing", "writing…"));
      bubble.append(head, el("p", "text"));
      state.live.set(key, bubble);
      const wasNear = nearBottom();
      $("live").append(bubble);
      stickToBottom(wasNear);
    }
    if (event.type === "start" && event.retry) {
      // the worker asks its model again (its first answer only repeated an earlier one)
      bubble.querySelector(".text").textContent = "";
    }
    if (event.type === "delta" && event.text) {
      const wasNear = nearBottom();
      bubble.querySelector(".text").append(document.createTextNode(event.text));
      stickToBottom(wasNear);
    }
  } else if (event.type === "end") {
    const bubble = state.live.get(key);
    if (!bubble) return;
    bubble.removeAttribute("aria-busy");
    const typing = bubble.querySelector(".typing");
    if (typing) typing.textContent = event.outcome === "ok" ? "finishing…" : `stopped: ${event.outcome}`;
    // The stored answer replaces the bubble; if none comes (empty answer, lost lease), drop it.
    setTimeout(() => {
      if (state.live.get(key) === bubble) {
        bubble.remove();
        state.live.delete(key);
      }
    }, event.outcome === "ok" ? 15000 : 4000);
  }
}

// ---------------------------------------------------------------- posting

function sendFrame(frame) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

function post(text) {
  const id = newId();
  const frame = { type: "post", id, text };
  const li = el("li", "entry kind-human mine sending");
  li.dataset.pending = id;
  const head = el("div", "head");
  head.append(el("span", "author", state.name), el("span", "tag tag-sending", "sending…"));
  const body = el("p", "text");
  renderText(body, text);
  li.append(head, body);
  $("pending").append(li);
  state.pending.set(id, { frame, el: li });
  stickToBottom(true);
  sendFrame(frame);
}

function failPending(ref, message) {
  const pend = state.pending.get(ref);
  if (!pend) return false;
  clearTimeout(pend.retryTimer);
  state.pending.delete(ref);
  pend.el.classList.remove("sending");
  pend.el.classList.add("failed");
  const tag = pend.el.querySelector(".tag-sending");
  if (tag) tag.textContent = "not sent";
  const err = el("p", "entry-error", message);
  err.setAttribute("role", "alert");
  const dismiss = el("button", "link", "Dismiss");
  dismiss.type = "button";
  dismiss.addEventListener("click", () => {
    pend.el.remove();
    $("composer-text").focus();
  });
  err.append(" ", dismiss);
  pend.el.append(err);
  return true;
}

// ---------------------------------------------------------------- the socket

// The room's WebSocket address: the cursor only. The token travels as a subprotocol.
function wsUrl() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  let url = `${proto}//${location.host}${API}/rooms/${encodeURIComponent(state.room)}/ws`;
  if (state.cursor) url += `?cursor=${encodeURIComponent(state.cursor)}`;
  return url;
}

function connect() {
  clearTimeout(state.retryTimer);
  if (state.stopped) return;
  if (!auth.token) {
    signedOut("You are signed out: join again.");
    return;
  }
  let ws;
  try {
    ws = new WebSocket(wsUrl(), [WS_PROTOCOL, `bearer.${auth.token}`]);
  } catch (err) {
    scheduleReconnect();
    return;
  }
  state.ws = ws;
  let refusal = null;
  let welcomed = false;
  ws.onmessage = (ev) => {
    state.lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(ev.data);
    } catch {
      return;
    }
    switch (frame.type) {
      case "welcome":
        welcomed = true;
        onWelcome(frame);
        break;
      case "entry":
        addEntry(frame.entry);
        break;
      case "live":
        onLive(frame.event);
        break;
      case "ack": {
        const pend = state.pending.get(frame.ref);
        if (pend) pend.acked = true;
        break;
      }
      case "error":
        if (!welcomed || SESSION_END.has(frame.code)) refusal = frame; // the close that follows explains it
        else onErrorFrame(frame);
        break;
      case "authenticated": // the fresh token sent in band was accepted: the socket stays open
        break;
      default:
        break;
    }
  };
  ws.onclose = (ev) => {
    if (state.ws !== ws) return;
    state.ws = null;
    clearInterval(state.pingTimer);
    if (state.stopped) return;
    if (REFUSED.has(ev.code)) {
      onRefused(ev.code, refusal?.message || ev.reason || "");
      return;
    }
    if (state.lostAt === null) state.lostAt = performance.now();
    if (ev.code === CLOSE.tooMany) {
      // every connection slot of this name is in use (other tabs): wait, then try again
      state.attempt = Math.max(state.attempt, 6);
      scheduleReconnect();
      setConn(`${state.name} has too many open connections: close another tab. Retrying…`, "warn");
      return;
    }
    scheduleReconnect();
  };
  ws.onerror = () => {}; // onclose follows and handles it
}

function onWelcome(frame) {
  state.attempt = 0;
  if (state.lostAt !== null) {
    state.reconnects.push((performance.now() - state.lostAt) / 1000);
    state.lostAt = null;
  }
  setConn("", "ok");
  document.body.dataset.connected = "true";
  document.body.dataset.replica = frame.replica || "";
  for (const pend of state.pending.values()) {
    if (!pend.acked) sendFrame(pend.frame); // the same id again: stored once
  }
  clearInterval(state.pingTimer);
  state.lastFrameAt = Date.now();
  state.pingTimer = setInterval(() => {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - state.lastFrameAt > 45000) {
      state.ws.close(); // silent for too long: assume a half-open connection, resume elsewhere
      return;
    }
    sendFrame({ type: "ping" });
  }, 15000);
  refreshStandings();
  refreshMembers();
}

// The service said no: back to the join screen, with what to do about it.
function onRefused(code, reason) {
  const room = state.room;
  if (code === CLOSE.unauthenticated) {
    signedOut(`Your sign-in is no longer valid${reason ? ` (${reason})` : ""}. Join again to sign in.`);
    return;
  }
  closeRoom();
  if (code === CLOSE.notFound) {
    showJoinError(`There is no room “${room}” (or you may not see it).`);
    loadRooms().catch(() => {});
  } else if (code === CLOSE.forbidden) {
    showJoinError(reason ? `You cannot join “${room}”: ${reason}.` : `You may not join “${room}”.`);
  } else {
    showJoinError(reason || `The room refused the connection (${code}).`);
  }
}

function scheduleReconnect() {
  document.body.dataset.connected = "false";
  state.attempt += 1;
  const base = Math.min(5000, 150 * 2 ** (state.attempt - 1));
  const delay = base / 2 + Math.random() * (base / 2);
  // Stay quiet for a blip; say "reconnecting…" only when it takes a moment.
  if (state.attempt > 1 || delay > 400) setConn("reconnecting…", "warn");
  else setTimeout(() => { if (document.body.dataset.connected === "false") setConn("reconnecting…", "warn"); }, 600);
  state.retryTimer = setTimeout(connect, delay);
}

function resendLater(ref, delayMs) {
  const pend = state.pending.get(ref);
  if (!pend) return;
  clearTimeout(pend.retryTimer);
  pend.retryTimer = setTimeout(() => {
    if (state.pending.get(ref) !== pend) return;
    pend.el.classList.remove("waiting");
    const tag = pend.el.querySelector(".tag-sending");
    if (tag) tag.textContent = "sending…";
    sendFrame(pend.frame); // the same id: stored once even if an earlier try got through
  }, delayMs);
}

function onErrorFrame(frame) {
  const message = frame.message || frame.code || "something went wrong";
  if (frame.code === "storage_unavailable" && frame.ref && state.pending.has(frame.ref)) {
    resendLater(frame.ref, 1000);
    return;
  }
  if (frame.code === "rate_limited") {
    const secs = Math.max(0.2, Number(frame.retry_after) || 1);
    const shown = Math.max(1, Math.ceil(secs));
    toast(`Slow down: you are sending faster than the room allows. Retrying in ${shown} s.`, "warn");
    const pend = frame.ref ? state.pending.get(frame.ref) : null;
    if (pend) {
      pend.el.classList.add("waiting");
      const tag = pend.el.querySelector(".tag-sending");
      if (tag) tag.textContent = `slow down — retry in ${shown} s`;
      resendLater(frame.ref, secs * 1000 + Math.random() * 200);
    }
    return;
  }
  if (frame.ref && failPending(frame.ref, message)) {
    toast(message);
    return;
  }
  toast(message);
}

// ---------------------------------------------------------------- leader, board, members

let standingsTimer = null;
function scheduleStandings() {
  clearTimeout(standingsTimer);
  standingsTimer = setTimeout(refreshStandings, 300);
}

async function refreshStandings() {
  if (!state.room) return;
  const room = encodeURIComponent(state.room);
  try {
    const [lead, board] = await Promise.all([api(`/rooms/${room}/leader`), api(`/rooms/${room}/ratings`)]);
    renderLeader(lead);
    renderBoard(board);
  } catch (err) {
    // transient (a replica restarting): the next refresh fixes it; a dead token does not heal
    if (err.status === 401) signedOut(`Your sign-in is no longer valid (${err.message}). Join again to sign in.`);
  }
}

function renderLeader(lead) {
  state.leader = lead.leader;
  const box = $("leader");
  box.hidden = false;
  $("leader-name").textContent = lead.leader || "none yet";
  $("leader-term").textContent = lead.leader ? `term ${lead.term}` : "";
  box.classList.toggle("none", !lead.leader);
  document.body.dataset.leader = lead.leader || "";
}

function renderBoard(board) {
  const body = $("board-body");
  const rows = [];
  board.standings.forEach((s, i) => {
    const tr = el("tr");
    tr.dataset.model = s.model;
    if (s.leader) tr.className = "is-leader";
    tr.append(el("td", "rank", i + 1));
    const cell = el("td", "model");
    const name = el("span", "model-cell");
    cell.append(name);
    const dot = el("span", s.healthy ? "dot up" : "dot down");
    dot.title = s.healthy ? "healthy" : "not answering";
    dot.setAttribute("role", "img");
    dot.setAttribute("aria-label", s.healthy ? "healthy" : "not answering");
    name.append(dot, el("span", "", s.model));
    if (s.leader) {
      const crown = $("crown-tpl").content.firstElementChild.cloneNode(true);
      const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
      title.textContent = "leader";
      crown.prepend(title);
      name.append(crown);
    }
    if (s.provisional) {
      const tag = el("span", "provisional", "provisional");
      tag.title = "Too few judged rounds for a settled rating";
      name.append(tag);
    }
    tr.append(cell);
    const rating = el("td", "num rating");
    const half = Math.round((s.high - s.low) / 2);
    rating.append(el("span", "", Math.round(s.rating)), el("span", "range", ` ±${half}`));
    rating.title = `between ${Math.round(s.low)} and ${Math.round(s.high)}: a model takes the lead `
      + "only when its lower bound is above the leader's upper bound";
    tr.append(rating);
    tr.append(el("td", "num", `${s.wins}–${s.losses}–${s.ties}`));
    tr.append(el("td", "num", s.rounds ? Number(s.mean_score).toFixed(1) : "–"));
    rows.push(tr);
  });
  body.replaceChildren(...rows);
}

async function refreshMembers() {
  if (!state.room) return;
  try {
    const room = encodeURIComponent(state.room);
    const [info, list] = await Promise.all([api(`/rooms/${room}`), api(`/rooms/${room}/members`)]);
    state.models = info.models.map((m) => m.name);
    for (const m of list.members) state.members.add(m.name);
    $("room-title").textContent = info.title ? `${info.name} — ${info.title}` : info.name;
    $("room-title").hidden = false;
    renderMembers();
  } catch (err) {
    // try again on the next welcome
    if (err.status === 401) signedOut(`Your sign-in is no longer valid (${err.message}). Join again to sign in.`);
  }
}

function renderMembers() {
  const items = [];
  for (const m of state.models) {
    const li = el("li", "member model");
    li.append(el("span", "tag tag-model", "model"), el("span", "", m));
    items.push(li);
  }
  for (const m of [...state.members].sort()) {
    const li = el("li", "member person", m);
    if (m === state.name) li.append(el("span", "you", " (you)"));
    items.push(li);
  }
  $("members").replaceChildren(...items);
}

// ---------------------------------------------------------------- @mention completion

const mention = { open: false, items: [], index: 0, start: 0 };

function mentionCandidates(prefix) {
  const p = prefix.toLowerCase();
  const names = [
    ...state.models.map((n) => ({ name: n, kind: "model" })),
    { name: "everyone", kind: "all models" },
    ...[...state.members].filter((n) => n !== state.name).map((n) => ({ name: n, kind: "person" })),
  ];
  return names.filter((c) => c.name.toLowerCase().startsWith(p)).slice(0, 8);
}

function updateMentions() {
  const ta = $("composer-text");
  const before = ta.value.slice(0, ta.selectionStart);
  const m = /(^|\s)@([\w.-]*)$/.exec(before);
  if (!m || ta.selectionStart !== ta.selectionEnd) return closeMentions();
  const items = mentionCandidates(m[2]);
  if (!items.length) return closeMentions();
  mention.open = true;
  mention.items = items;
  mention.start = before.length - m[2].length - 1;
  mention.index = Math.min(mention.index, items.length - 1);
  renderMentions();
}

function renderMentions() {
  const list = $("mention-list");
  const ta = $("composer-text");
  const opts = mention.items.map((c, i) => {
    const li = el("li", "option");
    li.id = `mention-${i}`;
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", String(i === mention.index));
    li.append(el("span", "opt-name", `@${c.name}`), el("span", "opt-kind", c.kind));
    li.addEventListener("mousedown", (ev) => {
      ev.preventDefault();
      mention.index = i;
      completeMention();
    });
    return li;
  });
  list.replaceChildren(...opts);
  list.hidden = false;
  ta.setAttribute("aria-expanded", "true");
  ta.setAttribute("aria-activedescendant", `mention-${mention.index}`);
}

function closeMentions() {
  mention.open = false;
  mention.index = 0;
  $("mention-list").hidden = true;
  const ta = $("composer-text");
  ta.setAttribute("aria-expanded", "false");
  ta.removeAttribute("aria-activedescendant");
}

function completeMention() {
  const ta = $("composer-text");
  const pick = mention.items[mention.index];
  if (!pick) return closeMentions();
  const after = ta.value.slice(ta.selectionStart);
  const head = ta.value.slice(0, mention.start) + `@${pick.name} `;
  ta.value = head + after.replace(/^\S*\s?/, "");
  ta.selectionStart = ta.selectionEnd = head.length;
  closeMentions();
  autosize();
}

function autosize() {
  const ta = $("composer-text");
  ta.style.height = "auto";
  ta.style.height = `${Math.min(ta.scrollHeight, 200)}px`;
}

// ---------------------------------------------------------------- signing in

// Keep a token the service gave us (sign-up, refresh, or a stored one it confirmed).
function remember(out) {
  auth.name = out.user;
  auth.token = out.token;
  auth.expiresAt = Number(out.expires_at) || 0;
  auth.lapsed = null;
  localStorage.setItem(store.token, out.token);
  localStorage.setItem(store.name, out.user);
  localStorage.setItem(store.expires, String(auth.expiresAt));
  scheduleRefresh();
  showSignedIn();
}

// Drop the token (it no longer works); the name stays, to fill the form next time.
function forget() {
  clearTimeout(auth.refreshTimer);
  if (auth.name) auth.lapsed = auth.name;
  Object.assign(auth, { name: null, token: null, expiresAt: 0, refreshTimer: null });
  localStorage.removeItem(store.token);
  localStorage.removeItem(store.expires);
  showSignedIn();
}

// Exchange the token for a fresh one at half its remaining life (at least every few hours).
function scheduleRefresh() {
  clearTimeout(auth.refreshTimer);
  if (!auth.token) return;
  const left = auth.expiresAt * 1000 - Date.now();
  auth.refreshTimer = setTimeout(refreshToken, Math.min(Math.max(left / 2, 1000), MAX_TIMER_MS));
}

async function refreshToken() {
  const token = auth.token;
  if (!token) return;
  try {
    const out = await api("/auth/refresh", { method: "POST", token });
    if (auth.token === token) {
      remember(out);
      // the open socket would close when the old token expires: hand it the fresh one
      if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({ type: "auth", token: out.token }));
    }
  } catch (err) {
    if (auth.token !== token) return; // signed in again meanwhile
    if (err.status === 401) {
      signedOut(`Your sign-in has expired (${err.message}). Join again to sign in.`);
      return;
    }
    // busy or unreachable: the token is still good for a while, so try again soon
    clearTimeout(auth.refreshTimer);
    auth.refreshTimer = setTimeout(refreshToken, (err.retryAfter || 10) * 1000);
  }
}

// The token stopped working (expired, or the service's key changed): back to the join screen.
function signedOut(message) {
  if (!state.stopped) closeRoom();
  forget();
  showJoinError(message);
}

function takenMessage(name, err, expired) {
  const why = /reserved/.test(err.message)
    ? `${err.message}: pick another name.`
    : `The name “${name}” is taken; pick another.`;
  return expired ? `Your sign-in as “${name}” has expired, and the name stays registered. ${why}` : why;
}

// Be `name`: with this browser's token for it if it still works, else by taking the name.
async function signIn(name) {
  if (auth.token && sameName(auth.name, name)) return;
  let expired = sameName(auth.lapsed, name);
  const saved = localStorage.getItem(store.token);
  if (saved && sameName(localStorage.getItem(store.name), name)) {
    try {
      const me = await api("/auth/me", { token: saved });
      if (me.user && sameName(me.user, name)) {
        remember({ token: saved, user: me.user, expires_at: me.expires_at });
        return;
      }
    } catch (err) {
      if (err.status !== 401) throw err; // unreachable or busy: keep the token, try again later
      expired = true; // a token cannot be refreshed once it has expired
    }
  }
  let out;
  try {
    out = await api("/auth/signup", { method: "POST", body: { name }, token: null });
  } catch (err) {
    if (err.code === "name_taken") throw new Error(takenMessage(name, err, expired));
    if (err.code === "signup_closed") throw new Error("Sign-up is closed here: ask the service's admin for a token.");
    if (err.status === 422) throw new Error(err.message.replace(/^body\.name: (Value error, )?/, "Name: "));
    throw err;
  }
  remember(out);
}

function showSignedIn() {
  const line = $("signed-in");
  if (!auth.token) {
    line.hidden = true;
    $("room-field").hidden = true;
    return;
  }
  const typed = $("join-name").value.trim();
  line.textContent = typed && !sameName(typed, auth.name)
    ? `Signed in as ${auth.name}. Joining as “${typed}” takes that name instead (this browser then forgets ${auth.name}).`
    : `Signed in as ${auth.name}.`;
  line.hidden = false;
}

// ---------------------------------------------------------------- join / leave

function showJoinError(msg) {
  $("join-error").textContent = msg;
  $("join-name").focus();
}

function preferredRoom() {
  return new URLSearchParams(location.search).get("room") || localStorage.getItem(store.room);
}

// The rooms this person may see (needs a token): fills the room picker and shows it.
async function loadRooms() {
  const select = $("join-room");
  const { rooms } = await api("/rooms");
  const wanted = $("room-field").hidden ? preferredRoom() : select.value || preferredRoom();
  select.replaceChildren(
    ...rooms.map((r) => {
      const o = el("option", "", r.title ? `${r.name} — ${r.title}` : r.name);
      o.value = r.name;
      if (r.name === wanted) o.selected = true;
      return o;
    }),
  );
  $("room-field").hidden = !auth.token || rooms.length === 0;
  return rooms.map((r) => r.name);
}

const NO_ROOMS = "There is no room you can join yet (rooms are made by the admin, e.g. by `llmchat up`).";

// The room a Join means: the picked one if the picker was shown, else the one the address asks
// for (?room=), else the last one, else the only one.
function chosenRoom(names, pickerShown) {
  const picked = $("join-room").value;
  if (pickerShown && names.includes(picked)) return picked;
  const asked = new URLSearchParams(location.search).get("room");
  if (asked && !names.includes(asked)) {
    throw new Error(`There is no room “${asked}” you can join (it does not exist, or it is invitation-only). Choose another.`);
  }
  const wanted = asked || localStorage.getItem(store.room);
  if (wanted && names.includes(wanted)) return wanted;
  return names.length === 1 ? names[0] : null;
}

let joining = false;
async function onJoin() {
  if (joining) return;
  const name = $("join-name").value.trim();
  if (!name) return showJoinError("Enter a name.");
  if (/\s/.test(name)) return showJoinError("A name cannot contain spaces (it is used for @mentions).");
  joining = true;
  $("join-error").textContent = "";
  $("join-button").disabled = true;
  const pickerShown = !$("room-field").hidden;
  try {
    await signIn(name);
    const names = await loadRooms();
    const room = chosenRoom(names, pickerShown);
    if (!room) {
      showJoinError(names.length ? "Choose a room." : NO_ROOMS);
      if (names.length) $("join-room").focus();
      return;
    }
    await enterRoom(room);
  } catch (err) {
    showJoinError(describe(err));
  } finally {
    joining = false;
    $("join-button").disabled = false;
  }
}

// Join `room` (REST, with the token), then open its WebSocket.
async function enterRoom(room) {
  try {
    await api(`/rooms/${encodeURIComponent(room)}/members`, { method: "POST" });
  } catch (err) {
    if (err.status === 401) {
      signedOut(`Your sign-in is no longer valid (${err.message}). Join again to sign in.`);
      return;
    }
    if (err.code === "not_invited") throw new Error(`“${room}” is invitation-only: ask one of its members to invite you.`);
    if (err.code === "room_not_found") throw new Error(`There is no room “${room}” (or you may not see it).`);
    throw err;
  }
  const name = auth.name;
  $("join-error").textContent = "";
  localStorage.setItem(store.room, room);
  sessionStorage.setItem("llmchat.joined", "1");
  for (const pend of state.pending.values()) clearTimeout(pend.retryTimer);
  Object.assign(state, { room, name, cursor: null, stopped: false, attempt: 0, lostAt: null });
  state.seen.clear();
  state.seenMsg.clear();
  state.answered.clear();
  state.pending.clear();
  state.live.clear();
  state.members = new Set([name]);
  for (const id of ["timeline", "live", "pending"]) $(id).replaceChildren();
  $("join-view").hidden = true;
  $("room-view").hidden = false;
  document.title = `${room} — LLM-In-The-Chat`;
  setConn("connecting…", "warn");
  connect();
  $("composer-text").focus();
}

// "Leave the room": out of its members (DELETE /rooms/{room}/members/{me}), then back to the
// picker. A public room, or one this person is still invited to, can be joined again.
function leaveRoom() {
  const room = state.room;
  if (room && auth.name && auth.token) {
    api(`/rooms/${encodeURIComponent(room)}/members/${encodeURIComponent(auth.name)}`, { method: "DELETE" }).catch(() => {
      // not a member any more, or unreachable: leaving the page's room view is what matters
    });
  }
  closeRoom();
}

// Close the room view and its socket (the membership stays).
function closeRoom() {
  state.stopped = true;
  clearTimeout(state.retryTimer);
  clearInterval(state.pingTimer);
  for (const pend of state.pending.values()) clearTimeout(pend.retryTimer);
  const ws = state.ws;
  state.ws = null;
  if (ws) ws.close(1000);
  sessionStorage.removeItem("llmchat.joined");
  document.body.dataset.connected = "false";
  $("room-view").hidden = true;
  $("join-view").hidden = false;
  $("leader").hidden = true;
  $("room-title").hidden = true;
  setConn("");
  document.title = "LLM-In-The-Chat";
}

// On load: a stored token that still works signs this tab in (and a reload rejoins its room).
async function restore() {
  const saved = localStorage.getItem(store.token);
  const name = localStorage.getItem(store.name);
  if (!saved || !name) return;
  try {
    const me = await api("/auth/me", { token: saved });
    if (!me.user) return;
    remember({ token: saved, user: me.user, expires_at: me.expires_at });
  } catch (err) {
    if (err.status === 401) auth.lapsed = name; // expired: Join signs in again if it can
    return;
  }
  let names;
  try {
    names = await loadRooms();
  } catch (err) {
    showJoinError(`Could not list the rooms: ${describe(err)}`);
    return;
  }
  if (!names.length) showJoinError(NO_ROOMS);
  const room = localStorage.getItem(store.room);
  if (sessionStorage.getItem("llmchat.joined") && room && names.includes(room)) {
    try {
      await enterRoom(room);
    } catch (err) {
      showJoinError(describe(err));
    }
  }
}

// ---------------------------------------------------------------- wiring

function init() {
  const nameInput = $("join-name");
  nameInput.value = localStorage.getItem(store.name) || "";
  nameInput.addEventListener("input", showSignedIn);
  $("join-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    onJoin();
  });
  $("leave").addEventListener("click", leaveRoom);

  const ta = $("composer-text");
  $("composer").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = ta.value;
    if (!text.trim()) return;
    post(text);
    ta.value = "";
    autosize();
    closeMentions();
  });
  ta.addEventListener("input", () => {
    autosize();
    updateMentions();
  });
  ta.addEventListener("click", updateMentions);
  ta.addEventListener("blur", () => setTimeout(closeMentions, 100));
  ta.addEventListener("keydown", (ev) => {
    if (mention.open) {
      if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
        ev.preventDefault();
        const n = mention.items.length;
        mention.index = (mention.index + (ev.key === "ArrowDown" ? 1 : n - 1)) % n;
        renderMentions();
        return;
      }
      if (ev.key === "Enter" || ev.key === "Tab") {
        ev.preventDefault();
        completeMention();
        return;
      }
      if (ev.key === "Escape") {
        ev.preventDefault();
        closeMentions();
        return;
      }
    }
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      $("composer").requestSubmit();
    }
  });

  setInterval(() => {
    if (!state.stopped && document.visibilityState === "visible") refreshStandings();
  }, 5000);

  restore().finally(() => {
    document.body.dataset.ready = "true"; // the form is ready (read by tests)
  });
}

init();
