// farm dashboard: the little JavaScript the pages use (no build step, no library).
//  - [data-live] parts are re-fetched from the server every second or two until final,
//    so a build's graph turns green without a reload;
//  - #log[data-log] reads on from the JSON API's log cursor and renders ANSI colours;
//  - button[data-post] calls the JSON API (the cookie authenticates; the custom header
//    is the API's CSRF guard for cookie-authenticated changes).
"use strict";

const FINAL_JOB = new Set(["success", "failed", "canceled", "skipped"]);
const lives = [];

function flash(text, bad) {
  const el = document.getElementById("flash");
  if (!el) return;
  el.textContent = text;
  el.className = bad ? "bad" : "";
}

// --- live fragments -------------------------------------------------------------------

function Live(el) {
  this.el = el;
  this.url = el.dataset.live;
  this.interval = parseInt(el.dataset.interval || "1000", 10);
  this.timer = null;
  this.busy = false;
}
Live.prototype.isFinal = function () {
  const body = this.el.querySelector(".live-body");
  return body !== null && body.dataset.final === "true";
};
Live.prototype.schedule = function () {
  clearTimeout(this.timer);
  if (!this.isFinal()) this.timer = setTimeout(() => this.refresh(), this.interval);
};
Live.prototype.refresh = async function () {
  if (this.busy) return;
  if (document.hidden) { this.schedule(); return; }  // no polling in a background tab
  this.busy = true;
  try {
    const resp = await fetch(this.url, { credentials: "same-origin", cache: "no-store" });
    if (resp.status === 401) { flash("Your sign-in expired: reload the page to sign in again.", true); return; }
    if (resp.ok) this.swap(await resp.text());
  } catch (err) {
    // The API restarting is no reason to stop watching: try again on the next tick.
  } finally {
    this.busy = false;
  }
  this.schedule();
};
Live.prototype.swap = function (html) {
  const focused = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.post : null;
  this.el.innerHTML = html;
  if (focused) {  // keep keyboard focus on the same button across the swap
    const again = this.el.querySelector('[data-post="' + CSS.escape(focused) + '"]');
    if (again) again.focus();
  }
};

function refreshAll() {
  for (const live of lives) live.refresh();
}

// --- buttons ----------------------------------------------------------------------------

async function post(button) {
  const confirmText = button.dataset.confirm;
  if (confirmText && !window.confirm(confirmText)) return;
  button.disabled = true;
  const label = button.textContent.trim();
  try {
    const resp = await fetch(button.dataset.post, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Requested-With": "farm" },
      body: button.dataset.body || "{}",
    });
    if (resp.ok) {
      flash(label + ": done.", false);
    } else {
      let detail = resp.statusText;
      try { detail = (await resp.json()).detail || detail; } catch (e) { /* not JSON */ }
      flash(label + " refused (" + resp.status + "): " + detail, true);
    }
  } catch (err) {
    flash(label + " failed: the farm did not answer.", true);
  } finally {
    button.disabled = false;
  }
  refreshAll();
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-post]");
  if (button) { event.preventDefault(); post(button); }
});

// --- ANSI SGR colours (the same subset as farm/api/dashboard/ansi.py) -------------------

function Sgr() { this.fg = null; this.bg = null; this.flags = new Set(); }
Sgr.prototype.apply = function (params) {
  const codes = params === "" ? [0] : params.split(";").map((p) => (/^\d+$/.test(p) ? +p : 0));
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) { this.fg = null; this.bg = null; this.flags = new Set(); }
    else if (c >= 1 && c <= 4) this.flags.add(["b", "f", "i", "u"][c - 1]);
    else if (c === 22) { this.flags.delete("b"); this.flags.delete("f"); }
    else if (c === 23) this.flags.delete("i");
    else if (c === 24) this.flags.delete("u");
    else if (c >= 30 && c <= 37) this.fg = c - 30;
    else if (c >= 90 && c <= 97) this.fg = c - 90 + 8;
    else if (c >= 40 && c <= 47) this.bg = c - 40;
    else if (c >= 100 && c <= 107) this.bg = c - 100 + 8;
    else if (c === 39) this.fg = null;
    else if (c === 49) this.bg = null;
    else if (c === 38 || c === 48) i += codes[i + 1] === 5 ? 2 : 4;
  }
};
Sgr.prototype.classes = function () {
  const out = [];
  if (this.fg !== null) out.push("a-fg" + this.fg);
  if (this.bg !== null) out.push("a-bg" + this.bg);
  for (const f of [...this.flags].sort()) out.push("a-" + f);
  return out.join(" ");
};

const ESCAPE = /\x1b\[([0-9;?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b/g;
const CAP = /^\[farm\] log truncated:.*$/;

// Append ``text`` to ``pre`` as text nodes and spans (never as HTML: a log is data).
function appendAnsi(pre, text, sgr) {
  let pos = 0;
  const emit = (chunk) => {
    if (!chunk) return;
    const css = sgr.classes();
    const lines = chunk.split(/(\n)/);
    for (const part of lines) {
      if (!part) continue;
      let node;
      if (CAP.test(part)) { node = document.createElement("mark"); node.className = "log-cap"; node.textContent = part; }
      else if (css) { node = document.createElement("span"); node.className = css; node.textContent = part; }
      else node = document.createTextNode(part);
      pre.appendChild(node);
    }
  };
  ESCAPE.lastIndex = 0;
  let m;
  while ((m = ESCAPE.exec(text)) !== null) {
    emit(text.slice(pos, m.index));
    if (m[2] === "m") sgr.apply(m[1]);
    pos = ESCAPE.lastIndex;
  }
  emit(text.slice(pos));
}

// --- the log ----------------------------------------------------------------------------

function followLog(pre) {
  let cursor = parseInt(pre.dataset.cursor || "0", 10);
  let attempt = pre.dataset.attempt;
  let carry = "";  // an escape sequence cut in two by a chunk boundary
  let sgr = new Sgr();
  const state = document.getElementById("log-state");
  if (pre.dataset.final === "true") return;

  async function tick() {
    let status = null;
    try {
      if (!document.hidden) {
        const resp = await fetch(pre.dataset.log + "?after=" + cursor, { credentials: "same-origin", cache: "no-store" });
        if (resp.status === 401) { flash("Your sign-in expired: reload the page to sign in again.", true); return; }
        if (resp.ok) {
          status = resp.headers.get("X-Farm-Job-Status");
          const now = resp.headers.get("X-Farm-Job-Attempt");
          if (now && attempt && now !== attempt) {  // a new attempt: its log starts afresh
            attempt = now; cursor = 0; carry = ""; sgr = new Sgr(); pre.textContent = "";
            if (state) state.textContent = "Attempt " + now + " started; following its log…";
            setTimeout(tick, 0);
            return;
          }
          const text = carry + (await resp.text());
          cursor = parseInt(resp.headers.get("X-Farm-Log-Cursor") || String(cursor), 10);
          const cut = text.lastIndexOf("\x1b");
          carry = cut >= 0 && !/^\x1b(\[[0-9;?]*[@-~]|\][^\x07]*\x07)/.test(text.slice(cut)) ? text.slice(cut) : "";
          const body = carry ? text.slice(0, text.length - carry.length) : text;
          if (body) {
            const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 24;
            appendAnsi(pre, body, sgr);
            if (atBottom) pre.scrollTop = pre.scrollHeight;
          }
          if (status && FINAL_JOB.has(status) && !body) {
            if (state) state.textContent = "The job is " + status + "; the log is complete.";
            return;  // nothing more will come
          }
        }
      }
    } catch (err) {
      // keep following: the API may be restarting
    }
    setTimeout(tick, 1000);
  }
  setTimeout(tick, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("[data-live]")) {
    const live = new Live(el);
    lives.push(live);
    live.schedule();
  }
  const pre = document.getElementById("log");
  if (pre) followLog(pre);
});
