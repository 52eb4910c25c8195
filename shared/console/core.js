// The console's core: building DOM safely, the API client with the session held in memory,
// the router, step-up and the rendering of problem+json errors (docs/console.md).
//
// Nothing here writes to localStorage, sessionStorage or cookies: the access and refresh
// tokens live in this module's variables only, so a reload signs the user out.
"use strict";

/** The console's base path, e.g. "/console/" (where this module is served from). */
export const BASE = new URL(".", import.meta.url).pathname;

// ---------------------------------------------------------------------------------------
// DOM. Every text goes in as a text node: no server string ever reaches innerHTML.

/**
 * h("button", {class: "primary", onclick: f}, "Save") builds an element. Attributes that
 * start with "on" become listeners; `false`/`null` attributes are left out; children may be
 * strings, nodes, arrays or null.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2), v);
    } else if (k === "value") {
      el.value = v;
    } else if (k === "checked") {
      el.checked = !!v;
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

let uid = 0;
/** A fresh id for pairing a label with its input. */
export function id(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled input; `attrs` go on the input. Returns [wrapper, input]. */
export function field(label, attrs, hint) {
  const inputId = attrs.id || id(attrs.name || "f");
  const hintId = hint ? `${inputId}-hint` : null;
  const describedBy = [hintId, `${inputId}-error`].filter(Boolean).join(" ");
  const input = h(attrs.tag || "input", { ...attrs, tag: null, id: inputId, "aria-describedby": describedBy });
  const wrap = h(
    "div",
    { class: "field" },
    h("label", { for: inputId }, label),
    input,
    hint ? h("small", { id: hintId, class: "hint" }, hint) : null,
    h("small", { class: "field-error", id: `${inputId}-error`, hidden: true }),
  );
  return [wrap, input];
}

/** A form whose submit runs `onSubmit(form)` with the submit button disabled meanwhile. */
export function form(attrs, children, onSubmit) {
  const el = h("form", { novalidate: true, ...attrs }, children);
  el.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!el.reportValidity()) return;
    const buttons = el.querySelectorAll("button[type=submit]");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await onSubmit(el);
    } finally {
      buttons.forEach((b) => { if (!b.dataset.locked) b.disabled = false; });
    }
  });
  return el;
}

/** A status line that screen readers announce. */
export function statusLine() {
  return h("p", { class: "status", role: "status", "aria-live": "polite" });
}

export function say(el, text, kind) {
  el.textContent = text || "";
  el.className = `status ${kind || ""}`;
}

/** Formats an RFC 3339 time as the reader's local date and time, with UTC in the title. */
export function when(iso) {
  if (!iso) return h("span", { class: "muted" }, "never");
  const d = new Date(iso);
  return h("time", { datetime: iso, title: `${iso} (UTC)` }, d.toLocaleString());
}

export function seconds(n) {
  if (n % 86400 === 0) return `${n / 86400} day${n === 86400 ? "" : "s"}`;
  if (n % 3600 === 0) return `${n / 3600} hour${n === 3600 ? "" : "s"}`;
  if (n % 60 === 0) return `${n / 60} minute${n === 60 ? "" : "s"}`;
  return `${n} seconds`;
}

/** "14:07" for a countdown of 847 seconds. */
export function clock(total) {
  const m = Math.floor(total / 60);
  const s = total % 60;
  return `${m}:${String(s).padStart(2, "0")}`;
}

// ---------------------------------------------------------------------------------------
// The API client.

// `generation` grows at every sign-in and sign-out, so a refresh that answers after the
// session it belonged to has ended cannot bring it back.
const session = { access: null, refresh: null, me: null, timer: null, generation: 0 };

export function signedIn() {
  return session.access !== null;
}

export function me() {
  return session.me;
}

/** Starts a session from a login or MFA-verify response, and reads who signed in. */
export async function start(tokens) {
  session.generation += 1;
  hold(tokens);
  await loadMe();
}

/** Holds a token response in memory and schedules the next refresh. */
function hold(tokens) {
  session.access = tokens.access_token;
  session.refresh = tokens.refresh_token;
  // Refresh a minute before the access token expires (it lives at most 15 minutes).
  scheduleRefresh(Math.max(30, (tokens.expires_in || 900) - 60) * 1000);
}

/**
 * Refreshes in `ms`. A failure that kept the refresh token (the network, a 503) is tried again
 * in 30 seconds; a refused token ends the session. A timer of a session that has since ended
 * (signed out, or another sign-in) does nothing.
 */
function scheduleRefresh(ms) {
  clearTimeout(session.timer);
  session.timer = setTimeout(async () => {
    const generation = session.generation;
    if (await refresh()) return;
    if (generation !== session.generation) return;
    if (session.refresh) scheduleRefresh(30_000);
    else ended();
  }, ms);
}

export async function loadMe() {
  const r = await api("GET", "/v1/me");
  session.me = r.ok ? r.data : null;
  return session.me;
}

export function forget() {
  clearTimeout(session.timer);
  session.generation += 1;
  session.access = null;
  session.refresh = null;
  session.me = null;
}

// Why the session ended, when a refresh said so (shown on the sign-in page).
let endedBecause = null;

/** The session is over: back to the sign-in page, saying why. */
function ended() {
  const notice = endedBecause || "Your session ended. Sign in again.";
  endedBecause = null;
  forget();
  navigate("signin", { notice });
}

let refreshing = null;
/**
 * Exchanges the refresh token for new tokens; one exchange at a time (the token is single
 * use). True when the session goes on. The session is dropped only when the server says the
 * refresh token is no good (401); a network failure, a 503 or a 403 `ip_not_allowed` (the
 * token is not consumed then) keep it, and the call that needed the refresh fails.
 */
async function refresh() {
  if (!session.refresh) return false;
  if (!refreshing) {
    const generation = session.generation;
    refreshing = (async () => {
      const r = await raw("POST", "/v1/auth/refresh", { refresh_token: session.refresh }, false);
      if (generation !== session.generation) return false;
      if (r.ok) {
        hold(r.data);
        return true;
      }
      if (r.status === 401) {
        endedBecause = r.problem && r.problem.code === "refresh_token_reused"
          ? "Your session was signed out because an old copy of it was used again. Sign in again, and change your password if this was not you."
          : "Your session expired. Sign in again.";
        session.refresh = null;
      }
      return false;
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

async function raw(method, path, body, auth) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (auth && session.access) headers.authorization = `Bearer ${session.access}`;
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (_) {
    return {
      ok: false,
      status: 0,
      problem: { title: "The server could not be reached.", detail: "Check your connection and try again." },
      headers: new Headers(),
    };
  }
  let data = null;
  const text = await resp.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (_) {
      data = null;
    }
  }
  const out = { ok: resp.ok, status: resp.status, headers: resp.headers, data: resp.ok ? data : null };
  if (!resp.ok) {
    out.problem = data || { title: `The server answered ${resp.status}.` };
  }
  return out;
}

/**
 * Calls the API. With a session, sends the access token; an expired one is refreshed once
 * and the call repeated. Returns {ok, status, data, problem, headers}.
 */
export async function api(method, path, body) {
  const had = signedIn();
  let r = await raw(method, path, body, true);
  if (had && r.status === 401 && r.problem && r.problem.code === "unauthenticated") {
    if (await refresh()) {
      r = await raw(method, path, body, true);
    }
    if (r.status === 401 && r.problem && r.problem.code === "unauthenticated" && !session.refresh) {
      ended();
    }
  }
  if (had && r.status === 403 && r.problem && r.problem.code === "mfa_enrollment_required" && session.me) {
    // The org requires MFA and this user has none: the session reaches only enrollment.
    session.me.mfa_enrollment_required = true;
    navigate("mfa", { notice: "Your organization requires two-step verification: set it up to continue." });
  }
  return r;
}

// ---------------------------------------------------------------------------------------
// Problems.

/** The lines a person reads for a problem+json body. */
export function problemText(problem) {
  const lines = [problem.detail || problem.title || "Something went wrong."];
  for (const e of problem.errors || []) {
    lines.push(e.message);
  }
  return lines.join("\n");
}

/**
 * Shows a problem: each error whose field names an input of `form` (by `data-pointer`) is
 * shown beside that input and marks it invalid; the rest go to the status line.
 */
export function showProblem(statusEl, problem, form) {
  clearErrors(form);
  const loose = [];
  for (const e of problem.errors || []) {
    const input = form && form.querySelector(`[data-pointer="${CSS.escape(e.field)}"]`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      const out = document.getElementById(`${input.id}-error`);
      if (out) {
        out.textContent = e.message;
        out.hidden = false;
        continue;
      }
    }
    loose.push(e.message);
  }
  const head = problem.detail || problem.title || "Something went wrong.";
  say(statusEl, [head, ...loose].join("\n"), "error");
}

export function clearErrors(form) {
  if (!form) return;
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const el of form.querySelectorAll(".field-error")) {
    el.textContent = "";
    el.hidden = true;
  }
}

/** The seconds of a 423/429's Retry-After (header, else the body's `retry_after`). */
export function retryAfter(r) {
  const header = Number(r.headers.get("retry-after"));
  if (Number.isFinite(header) && header > 0) return Math.ceil(header);
  const body = r.problem && Number(r.problem.retry_after);
  return Number.isFinite(body) && body > 0 ? Math.ceil(body) : 0;
}

// ---------------------------------------------------------------------------------------
// Step-up: actions that need the caller's password (and code) again.

/**
 * Runs `call(extra)`; when the server answers 403 `step_up_required`, asks for the password
 * (and a code when the caller has MFA) in a dialog and calls again with them. A wrong
 * password or code is shown in the dialog, which stays open.
 */
export async function withStepUp(call, what) {
  const r = await call({});
  if (!(r.status === 403 && r.problem && r.problem.code === "step_up_required")) return r;
  return new Promise((resolve) => {
    const status = statusLine();
    const [pwField, pw] = field("Your password", { type: "password", name: "password", autocomplete: "current-password", required: true, "data-pointer": "/password" });
    const hasMfa = me() && me().mfa_enabled;
    const [codeField, code] = hasMfa
      ? field("Code from your authenticator app", { name: "code", inputmode: "numeric", autocomplete: "one-time-code", pattern: "[0-9 ]{6,7}", required: true, "data-pointer": "/code" })
      : [null, null];
    const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
    const confirm = h("button", { type: "submit" }, "Confirm");
    const form = h(
      "form",
      {},
      h("h2", {}, "Confirm it is you"),
      h("p", {}, `${what || "This action"} needs your password${hasMfa ? " and a code" : ""} again: you signed in more than 5 minutes ago.`),
      pwField,
      codeField,
      status,
      h("div", { class: "actions" }, confirm, cancel),
    );
    const dialog = h("dialog", { "aria-label": "Confirm it is you" }, form);
    document.body.append(dialog);
    const opener = document.activeElement;
    const cancelled = {
      ok: false, status: 0, cancelled: true, headers: new Headers(),
      problem: { title: "Cancelled: nothing was changed." },
    };
    let finished = false;
    // Once, however the dialog ends (Confirm, Cancel, Escape): the typed password and code
    // are cleared and the dialog leaves the page.
    const done = (result) => {
      if (finished) return;
      finished = true;
      pw.value = "";
      if (code) code.value = "";
      if (dialog.open) dialog.close();
      dialog.remove();
      if (opener && opener.isConnected) opener.focus();
      resolve(result);
    };
    cancel.addEventListener("click", () => done(cancelled));
    dialog.addEventListener("close", () => done(cancelled));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (confirm.disabled || !form.reportValidity()) return;
      confirm.disabled = true;
      const extra = { password: pw.value };
      if (code) extra.code = code.value;
      try {
        const again = await call(extra);
        // A wrong password or code (400), a bad one (422) or a lock (423) stays here.
        if ([400, 422, 423].includes(again.status) && again.problem) {
          showProblem(status, again.problem, form);
          if (again.status === 423) {
            say(status, `${again.problem.detail || "Too many failed attempts."} Try again in ${clock(retryAfter(again))}.`, "error");
            return;
          }
          (again.problem.code === "invalid_mfa_code" && code ? code : pw).select();
          return;
        }
        done(again);
      } finally {
        if (!finished) confirm.disabled = false;
      }
    });
    dialog.showModal();
    pw.focus();
  });
}

// ---------------------------------------------------------------------------------------
// Routing: /console/<page>?query, with history.pushState; every page is a function that
// returns the main element's content.

const pages = new Map();

/**
 * Registers a page. `opts.auth`: needs a session; `opts.roles`: only these roles see it in
 * the navigation and may open it; `opts.title`: the document title; `opts.nav`: its label in
 * the navigation ("user" or "admin" group).
 */
export function page(name, render, opts) {
  pages.set(name, { render, ...(opts || {}) });
}

let state = {};

/** Opens `name` (e.g. "account"), passing `params` to it. */
export function navigate(name, params) {
  state = params || {};
  const url = BASE + name;
  if (window.location.pathname + window.location.search !== url) {
    window.history.pushState({}, "", url);
  }
  render();
}

/** The current page's name, from the path. */
function current() {
  const rest = window.location.pathname.slice(BASE.length).replace(/\/+$/, "");
  return rest || (signedIn() ? "account" : "signin");
}

export function query(name) {
  return new URLSearchParams(window.location.search).get(name);
}

/** Whether the signed-in user's role is one of `roles`. */
export function hasRole(...roles) {
  return !!me() && roles.includes(me().role);
}

let rendering = 0;

export async function render() {
  rendering += 1;
  const mine = rendering;
  let name = current();
  let p = pages.get(name);
  if (!p) {
    name = "not-found";
    p = pages.get(name);
  }
  if (p.auth && !signedIn()) {
    state = { notice: "Sign in to continue." };
    window.history.replaceState({}, "", BASE + "signin");
    name = "signin";
    p = pages.get(name);
  }
  if (p.auth && me() && me().mfa_enrollment_required && name !== "mfa") {
    // An enrollment-only session reaches nothing else (the server answers 403 there).
    state = { notice: "Your organization requires two-step verification: set it up to continue." };
    window.history.replaceState({}, "", BASE + "mfa");
    name = "mfa";
    p = pages.get(name);
  }
  if (p.roles && !hasRole(...p.roles)) {
    name = "forbidden";
    p = pages.get(name);
  }
  renderNav(name);
  const main = document.getElementById("main");
  const params = state;
  state = {};
  document.title = `${p.title || name} · Gatehouse`;
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  let content;
  try {
    content = await p.render(params);
  } catch (err) {
    content = [h("h1", {}, "Something went wrong"), h("p", { class: "status error" }, "This page could not be shown. Reload to try again.")];
    console.error(err);
  }
  // A slower page started earlier does not replace the one the user has moved on to.
  if (mine !== rendering) return;
  main.replaceChildren(...[].concat(content).flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  const heading = main.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

function link(name, label, active) {
  return h(
    "a",
    {
      href: BASE + name,
      "aria-current": active ? "page" : null,
      onclick: (ev) => {
        if (ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
        ev.preventDefault();
        navigate(name);
      },
    },
    label,
  );
}

/** A link to another console page that navigates without a reload. */
export function to(name, label) {
  return link(name, label, false);
}

/** Draws the navigation again, e.g. after the user's role or MFA state changed. */
export function refreshNav() {
  renderNav(current());
}

function renderNav(active) {
  const nav = document.getElementById("nav");
  if (!signedIn()) {
    nav.replaceChildren(
      h("ul", {}, h("li", {}, link("signin", "Sign in", active === "signin")), h("li", {}, link("signup", "Create an organization", active === "signup"))),
    );
    return;
  }
  const groups = { user: [], admin: [] };
  for (const [name, p] of pages) {
    if (!p.nav || (p.roles && !hasRole(...p.roles))) continue;
    if (me() && me().mfa_enrollment_required && name !== "mfa") continue;
    groups[p.group || "user"].push(h("li", {}, link(name, p.nav, name === active)));
  }
  const signOut = h("button", { type: "button", class: "link", onclick: signOutNow }, "Sign out");
  nav.replaceChildren(
    h("ul", { "aria-label": "Your account" }, groups.user),
    groups.admin.length ? h("ul", { "aria-label": "Organization" }, groups.admin) : null,
    h("p", { class: "who" }, me() ? `${me().email} · ${me().role}` : "", " ", signOut),
  );
}

export async function signOutNow() {
  await api("POST", "/v1/auth/logout");
  forget();
  navigate("signin", { notice: "You are signed out." });
}

export function boot() {
  window.addEventListener("popstate", () => render());
  render();
}
