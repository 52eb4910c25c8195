// The console's organization pages, for owners, admins and auditors: users (invite, roles,
// deactivation, unlock, MFA reset, invitations), the security settings and the org-wide
// sign-out, API tokens (with the once-only secret), the IP allowlist (with its dry run and
// self-lockout warning) and the audit trail (docs/console.md). Auditors get read-only views:
// write controls are built only for owners and admins, and the server checks every call anyway.
// Actions the API guards with a step-up go through withStepUp(); every DOM node is built with
// h(), and a token's secret lives in a closure only while its panel is open.
import {
  api, clearErrors, field, forget, form, h, hasRole, id, me, navigate, page, say, seconds,
  showProblem, statusLine, when, withStepUp,
} from "./core.js";

// ---------------------------------------------------------------------------------------
// Helpers.

const ADMIN = { auth: true, roles: ["owner", "admin", "auditor"], group: "admin" };
const ROLES = ["member", "auditor", "admin", "owner"];
const SCOPES = ["users:read", "users:write", "settings:read", "audit:read"];

/** Whether the caller may change things (owners and admins). */
const canWrite = () => hasRole("owner", "admin");

/** Roles the caller may grant: admins never grant `owner`. */
const grantable = () => (hasRole("owner") ? ROLES : ROLES.filter((r) => r !== "owner"));

/** withStepUp around one JSON call (its body merged with the step-up proof). */
function stepUpCall(p, method, body, what) {
  return withStepUp((extra) => api(method, p, { ...body, ...extra }), what);
}

/** A button that runs `fn` with itself disabled meanwhile. */
function button(label, cls, fn) {
  const b = h("button", { type: "button", class: cls || "secondary" }, label);
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      await fn();
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

/** A labelled <select>; `options` are [value, text] pairs. Returns [wrapper, select]. */
function selectField(label, attrs, options, hint) {
  const [wrap, sel] = field(label, { ...attrs, tag: "select", value: undefined }, hint);
  sel.append(...options.map(([v, t]) => h("option", { value: v }, t)));
  if (attrs.value !== undefined) sel.value = attrs.value;
  return [wrap, sel];
}

/** A labelled checkbox (box first, as people expect). Returns [wrapper, input]. */
function checkField(label, attrs, hint) {
  const inputId = id(attrs.name || "check");
  const hintId = hint ? `${inputId}-hint` : null;
  const input = h("input", { ...attrs, type: "checkbox", id: inputId, "aria-describedby": hintId });
  const wrap = h(
    "div",
    { class: "field check" },
    h("span", {}, input, " ", h("label", { for: inputId }, label)),
    hint ? h("small", { id: hintId, class: "hint" }, hint) : null,
    h("small", { class: "field-error", id: `${inputId}-error`, hidden: true }),
  );
  return [wrap, input];
}

/** A <section> headed by an <h2>. */
function section(title, ...children) {
  const hid = id("h");
  return h("section", { "aria-labelledby": hid }, h("h2", { id: hid }, title), children);
}

/** A table with a caption and column headers. */
function table(caption, columns, tbody) {
  return h(
    "table",
    {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    tbody,
  );
}

/**
 * A table filled page by page from `path?query`: `load(query)` shows the first page, the
 * "More" button appends the next one (same query plus `cursor`).
 */
function pagedTable(o) {
  const tbody = h("tbody");
  const empty = h("p", { class: "muted", hidden: true });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, o.more || "More");
  let query = new URLSearchParams();
  let cursor = null;
  async function fetchPage(append) {
    const q = new URLSearchParams(query);
    if (append && cursor) q.set("cursor", cursor);
    more.disabled = true;
    const r = await api("GET", `${o.path}?${q}`);
    more.disabled = false;
    if (!r.ok) {
      showProblem(o.status, r.problem, o.form && o.form());
      return false;
    }
    const rows = r.data[o.key].map(o.row);
    if (append) tbody.append(...rows);
    else tbody.replaceChildren(...rows);
    cursor = r.data.next_cursor || null;
    more.hidden = !cursor;
    empty.textContent = cursor && o.emptyMore ? o.emptyMore : o.empty;
    empty.hidden = tbody.children.length > 0;
    return true;
  }
  more.addEventListener("click", () => fetchPage(true));
  return {
    el: [table(o.caption, o.columns, tbody), empty, h("div", { class: "actions" }, more)],
    load(q) {
      query = q || new URLSearchParams();
      return fetchPage(false);
    },
    reload: () => fetchPage(false),
  };
}

const path = (...parts) => parts.map((p) => encodeURIComponent(p)).join("/");
const future = (iso) => !!iso && Date.parse(iso) > Date.now();
const yesNo = (b) => (b ? "Yes" : "No");
const none = () => h("span", { class: "muted" }, "none");
const party = (p) => (p ? h("span", { class: "mono" }, `${p.type}:${p.id}`) : none());

/** The page's heading and status line; a `notice` passed by navigate() lands in the status. */
function head(title, params, status) {
  if (params && params.notice) say(status, params.notice, "ok");
  return [h("h1", {}, title), status];
}

// ---------------------------------------------------------------------------------------
// Users.

page("users", async (params) => {
  const status = statusLine();
  const write = canWrite();
  const self = me() || {};

  /** Whether the caller may act on `u`: never on oneself, and admins never on owners. */
  const mayAct = (u) => write && u.id !== self.id && !(hasRole("admin") && u.role === "owner");

  function statusCell(u) {
    const parts = [u.status];
    if (future(u.locked_until)) parts.push(" · locked until ", when(u.locked_until));
    if (u.reset_required) parts.push(" · locked until they reset their password");
    return h("td", {}, parts);
  }

  function userRow(u) {
    const tr = h(
      "tr",
      {},
      h("td", {}, u.email, u.id === self.id ? h("span", { class: "muted" }, " (you)") : null),
      h("td", {}, u.role),
      statusCell(u),
      h("td", {}, u.mfa_enabled ? "On" : "Off"),
      h("td", {}, yesNo(u.email_verified)),
      h("td", {}, when(u.last_login_at)),
    );
    if (write) tr.append(h("td", {}, mayAct(u) ? userActions(u, tr) : null));
    return tr;
  }

  /** Replaces the row with the user as the server now has it. */
  async function refresh(tr, u, updated) {
    let fresh = updated;
    if (!fresh) {
      const r = await api("GET", `/v1/users/${path(u.id)}`);
      if (!r.ok) return;
      fresh = r.data;
    }
    if (tr.isConnected) tr.replaceWith(userRow(fresh));
  }

  function userActions(u, tr) {
    const post = (what) => api("POST", `/v1/users/${path(u.id, ...what)}`);
    const fail = (r) => showProblem(status, r.problem);
    const [roleField, role] = selectField(`New role for ${u.email}`, { name: "role", value: u.role },
      grantable().map((x) => [x, x]));
    const change = button("Change role", "secondary", async () => {
      const r = await stepUpCall(`/v1/users/${path(u.id)}`, "PATCH", { role: role.value },
        `Making ${u.email} ${role.value}`);
      if (!r.ok) return fail(r);
      say(status, `${u.email} is now ${r.data.role}.`, "ok");
      await refresh(tr, u, r.data);
    });
    const out = [roleField, change];
    if (u.status === "active") {
      out.push(button("Deactivate", "danger", async () => {
        if (!window.confirm(`Deactivate ${u.email}? Every session and API token of theirs stops at once.`)) return;
        const r = await post(["deactivate"]);
        if (!r.ok) return fail(r);
        say(status, `Deactivated ${u.email}: their sessions ended and their API tokens are refused.`, "ok");
        await refresh(tr, u, r.data);
      }));
    }
    if (u.status === "deactivated") {
      out.push(button("Reactivate", "secondary", async () => {
        const r = await post(["reactivate"]);
        if (!r.ok) return fail(r);
        say(status, `Reactivated ${u.email}.`, "ok");
        await refresh(tr, u, r.data);
      }));
    }
    if (u.status !== "invited") {
      out.push(button("Unlock", "secondary", async () => {
        const r = await post(["unlock"]);
        if (!r.ok) return fail(r);
        say(status, `Unlocked ${u.email}: they may sign in again.`, "ok");
        await refresh(tr, u);
      }));
    }
    if (u.mfa_enabled) {
      out.push(button("Reset MFA", "secondary", () => resetMfa(u, () => refresh(tr, u))));
    }
    if (u.status === "invited") {
      out.push(button("Resend invitation", "secondary", async () => {
        const r = await post(["invitation", "resend"]);
        if (!r.ok) return fail(r);
        say(status, `Sent the invitation to ${u.email} again.`, "ok");
      }));
      out.push(button("Revoke invitation", "danger", async () => {
        const r = await api("DELETE", `/v1/users/${path(u.id)}`);
        if (!r.ok) return fail(r);
        say(status, `Revoked the invitation of ${u.email}: the link no longer works.`, "ok");
        tr.remove();
      }));
    }
    return h("div", { class: "actions" }, out);
  }

  /** Asks for the reason in a dialog, then resets `u`'s MFA (step-up). */
  function resetMfa(u, done) {
    const dStatus = statusLine();
    const hid = id("h");
    const [reasonField, reason] = field("Reason", {
      name: "reason", required: true, maxlength: 500, autocomplete: "off", "data-pointer": "/reason",
    }, "Kept in the audit trail, e.g. “lost phone; identity checked on a video call”.");
    const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
    const f = form({}, [
      h("h2", { id: hid }, `Reset the MFA of ${u.email}`),
      h("p", {}, "Their authenticator and recovery codes are removed and every session of theirs ends. They are mailed and set MFA up again at their next sign-in."),
      reasonField, dStatus,
      h("div", { class: "actions" }, h("button", { type: "submit", class: "danger" }, "Reset MFA"), cancel),
    ], async () => {
      clearErrors(f);
      const r = await withStepUp(
        (extra) => api("POST", `/v1/users/${path(u.id)}/mfa/reset`, { reason: reason.value, ...extra }),
        `Resetting the MFA of ${u.email}`,
      );
      if (!r.ok) return showProblem(dStatus, r.problem, f);
      dialog.close();
      say(status, `Reset the MFA of ${u.email}; they were mailed.`, "ok");
      await done();
    });
    const dialog = h("dialog", { "aria-labelledby": hid }, f);
    cancel.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => dialog.remove());
    document.body.append(dialog);
    dialog.showModal();
    reason.focus();
  }

  // The list, with its filters.
  const [statusFilterField, statusFilter] = selectField("Status", { name: "status", "data-pointer": "/status" },
    [["", "Any"], ["active", "Active"], ["invited", "Invited"], ["deactivated", "Deactivated"]]);
  const [roleFilterField, roleFilter] = selectField("Role", { name: "role", "data-pointer": "/role" },
    [["", "Any"], ...ROLES.map((r) => [r, r])]);
  const list = pagedTable({
    path: "/v1/users", key: "users", row: userRow, status, form: () => filters,
    caption: "Users of the organization",
    columns: ["Email", "Role", "Status", "MFA", "Verified", "Last sign-in", ...(write ? ["Actions"] : [])],
    empty: "No users match.",
  });
  const filterQuery = () => {
    const q = new URLSearchParams({ limit: "50" });
    if (statusFilter.value) q.set("status", statusFilter.value);
    if (roleFilter.value) q.set("role", roleFilter.value);
    return q;
  };
  const filters = form({ class: "filters wide", "aria-label": "Filter users" },
    [statusFilterField, roleFilterField, h("button", { type: "submit", class: "secondary" }, "Filter")],
    () => list.load(filterQuery()));
  await list.load(filterQuery());

  // The invitation form.
  let invite = null;
  if (write) {
    const [emailField, email] = field("Email address", {
      type: "email", name: "email", required: true, maxlength: 254, autocomplete: "off", "data-pointer": "/email",
    });
    const [roleField, role] = selectField("Role", { name: "role", value: "member", "data-pointer": "/role" },
      grantable().map((r) => [r, r]), "Inviting an admin or owner asks for your password again.");
    const f = form({}, [emailField, roleField, h("div", { class: "actions" }, h("button", { type: "submit" }, "Send invitation"))],
      async () => {
        clearErrors(f);
        const body = { email: email.value.trim(), role: role.value };
        const r = await withStepUp((extra) => api("POST", "/v1/users", { ...body, ...extra }), `Inviting ${body.email} as ${body.role}`);
        if (!r.ok) return showProblem(status, r.problem, f);
        say(status, `Invitation sent to ${(r.data.user && r.data.user.email) || body.email}.`, "ok");
        email.value = "";
        await list.reload();
      });
    invite = section("Invite someone", f);
  }

  return [...head("Users", params, status), invite, section("Everyone in the organization", filters, list.el)];
}, { ...ADMIN, title: "Users", nav: "Users" });

// ---------------------------------------------------------------------------------------
// Security settings.

/** The settings as edited: `unit` seconds per unit typed (1 for plain numbers). */
const SETTINGS = [
  { key: "password_min_length", label: "Password size", unit: 1, min: 8, max: 128,
    hint: "Minimum number of characters for every password set from now on (8–128)" },
  { key: "lockout_threshold", label: "Failed sign-ins before a lock", unit: 1, min: 3, max: 20,
    hint: "Wrong passwords in a row that lock an address (3–20). A value other than the deployment's default lets an outsider tell your addresses from unknown ones." },
  { key: "lockout_duration_seconds", label: "Lock duration (minutes)", unit: 60, min: 300, max: 86400,
    hint: "How long the first lock lasts: 5 to 1440 minutes (24 hours). Each further lock lasts twice as long." },
  { key: "session_idle_timeout_seconds", label: "Idle timeout (minutes)", unit: 60, min: 300, max: 2592000,
    hint: "A session unused this long ends: 5 to 43200 minutes (30 days). Existing sessions follow at their next refresh." },
  { key: "session_absolute_lifetime_seconds", label: "Session lifetime (hours)", unit: 3600, min: 3600, max: 7776000,
    hint: "A session ends this long after sign-in, used or not: 1 to 2160 hours (90 days), and not shorter than the idle timeout." },
];

page("settings", async (params) => {
  const status = statusLine();
  const write = canWrite();
  const orgBox = h("div");
  const settingsBox = h("div");

  async function loadOrg() {
    const r = await api("GET", "/v1/org");
    if (!r.ok) return showProblem(status, r.problem);
    const org = r.data;
    if (!write) {
      orgBox.replaceChildren(h("dl", { class: "facts" }, h("dt", {}, "Name"), h("dd", {}, org.name),
        h("dt", {}, "Created"), h("dd", {}, when(org.created_at))));
      return;
    }
    const [nameField, name] = field("Organization name", {
      name: "name", required: true, maxlength: 100, value: org.name, autocomplete: "organization", "data-pointer": "/name",
    });
    const f = form({}, [nameField, h("div", { class: "actions" }, h("button", { type: "submit" }, "Rename"))], async () => {
      clearErrors(f);
      const r2 = await api("PATCH", "/v1/org", { name: name.value });
      if (!r2.ok) return showProblem(status, r2.problem, f);
      say(status, `Renamed the organization to ${r2.data.name}.`, "ok");
    });
    orgBox.replaceChildren(f);
  }

  async function loadSettings() {
    const r = await api("GET", "/v1/org/settings");
    if (!r.ok) return showProblem(status, r.problem);
    const s = r.data;
    const changed = h("p", { class: "muted" }, s.updated_at
      ? ["Last changed ", when(s.updated_at), " by ", h("code", {}, s.updated_by || "unknown"), "."]
      : "Never changed: these are the defaults.");
    if (!write) {
      settingsBox.replaceChildren(h("dl", { class: "facts" }, SETTINGS.map((d) => [
        h("dt", {}, d.label.replace(/ \(.*\)$/, "")),
        h("dd", {}, d.unit === 1 ? String(s[d.key]) : seconds(s[d.key])),
      ]), h("dt", {}, "MFA required"), h("dd", {}, yesNo(s.mfa_required))), changed);
      return;
    }
    const inputs = SETTINGS.map((d) => field(d.label, {
      type: "number", name: d.key, required: true, inputmode: "numeric", min: d.min / d.unit, max: d.max / d.unit,
      step: d.unit === 1 ? 1 : "any", value: s[d.key] / d.unit, "data-pointer": `/${d.key}`,
    }, d.hint));
    const [mfaField, mfa] = checkField("Require MFA for everyone", { name: "mfa_required", checked: s.mfa_required, "data-pointer": "/mfa_required" },
      "Users without MFA then get sessions that can only set it up. Turning this off asks for your password again.");
    const f = form({}, [...inputs.map(([w]) => w), mfaField,
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Save settings"))], async () => {
      clearErrors(f);
      const body = {};
      SETTINGS.forEach((d, i) => {
        const v = Math.round(Number(inputs[i][1].value) * d.unit);
        if (v !== s[d.key]) body[d.key] = v;
      });
      if (mfa.checked !== s.mfa_required) body.mfa_required = mfa.checked;
      if (Object.keys(body).length === 0) return say(status, "Nothing changed.", "");
      body.expected_version = s.version;
      const r2 = await stepUpCall("/v1/org/settings", "PATCH", body, "Changing the security settings");
      if (r2.status === 409 && r2.problem && r2.problem.code === "version_conflict") {
        await loadSettings();
        return say(status, "Someone else changed the settings; reloaded the current values.", "error");
      }
      if (!r2.ok) return showProblem(status, r2.problem, f);
      await loadSettings();
      say(status, "Saved the settings.", "ok");
    });
    settingsBox.replaceChildren(f, changed);
  }

  await Promise.all([loadOrg(), loadSettings()]);

  let danger = null;
  if (write) {
    const dStatus = statusLine();
    danger = section("Danger zone",
      h("p", {}, "For an incident: every session of every user of the organization ends at once, yours too. API tokens are not affected."),
      h("div", { class: "actions" }, button("Sign out everyone in the organization", "danger", async () => {
        if (!window.confirm("Sign out everyone in the organization, you included?")) return;
        const r = await withStepUp((extra) => api("POST", "/v1/org/sessions/revoke-all", { ...extra }), "Signing out everyone");
        if (!r.ok) return showProblem(dStatus, r.problem);
        forget();
        navigate("signin", { notice: "Every session of the organization was revoked, yours too." });
      })), dStatus);
  }

  return [...head("Security settings", params, status), section("Organization", orgBox),
    section("Sign-in and sessions", settingsBox), danger];
}, { ...ADMIN, title: "Security settings", nav: "Security settings" });

// ---------------------------------------------------------------------------------------
// API tokens.

const GRACE = [["0", "None"], ["3600", "1 hour"], ["86400", "1 day"], ["604800", "7 days"]];

/**
 * The panel that shows a new secret once: masked until "Show", copied on "Copy". The secret
 * is held in this closure and dropped when the panel is dismissed.
 */
function secretPanel(data, intro) {
  let secret = data.secret;
  let shown = false;
  const hid = id("h");
  const codeId = id("secret");
  const masked = (data.token && data.token.masked) || "gth_…";
  const code = h("code", { class: "secret", id: codeId, "data-testid": "secret-value" });
  const toggle = h("button", { type: "button", class: "secondary", "aria-pressed": "false", "aria-controls": codeId });
  const pStatus = statusLine();
  const paint = () => {
    code.textContent = shown && secret ? secret : masked;
    toggle.textContent = shown ? "Hide" : "Show";
    toggle.className = `secondary eye${shown ? " open" : ""}`;
    toggle.setAttribute("aria-pressed", String(shown));
  };
  toggle.addEventListener("click", () => {
    shown = !shown;
    paint();
  });
  const copy = h("button", { type: "button", class: "secondary" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(secret);
      say(pStatus, "Copied", "ok");
    } catch (_) {
      say(pStatus, "Copying failed: show the secret and copy it by hand.", "error");
    }
  });
  const panel = h("section", { "aria-labelledby": hid, "data-testid": "new-secret" },
    h("h2", { id: hid, tabindex: "-1" }, `Secret of “${data.token ? data.token.name : "the token"}”`),
    h("p", {}, intro),
    h("p", { class: "notice" }, "This is the only time the secret is shown. Store it now."),
    h("p", {}, code),
    h("div", { class: "actions" }, toggle, copy, button("Done", "", () => {
      secret = null;
      panel.remove();
    })),
    pStatus);
  paint();
  return panel;
}

page("tokens", async (params) => {
  const status = statusLine();
  const write = canWrite();
  const secretBox = h("div");

  function showSecret(data, intro) {
    const panel = secretPanel(data, intro);
    secretBox.replaceChildren(panel);
    panel.querySelector("h2").focus();
  }

  function tokenRow(t) {
    const used = t.last_used_at ? [when(t.last_used_at), t.last_used_ip ? ` from ${t.last_used_ip}` : ""] : when(null);
    const tr = h("tr", {},
      h("td", {}, t.name),
      h("td", {}, h("code", {}, t.masked)),
      h("td", {}, t.scopes.map((s, i) => [i ? ", " : "", h("code", {}, s)])),
      h("td", {}, when(t.created_at)),
      h("td", {}, when(t.expires_at), future(t.expires_at) ? null : " (expired)"),
      h("td", {}, used),
      h("td", {}, t.rotated_at ? when(t.rotated_at) : none()),
      h("td", {}, future(t.previous_secret_expires_at) ? when(t.previous_secret_expires_at) : none()));
    if (write) tr.append(h("td", {}, tokenActions(t, tr)));
    return tr;
  }

  function tokenActions(t, tr) {
    const [graceField, grace] = selectField(`Grace period for the old secret of “${t.name}”`, { name: "grace", value: "0" }, GRACE);
    const rotate = button("Generate new token", "secondary", async () => {
      const g = Number(grace.value);
      const r = await stepUpCall(`/v1/tokens/${path(t.id)}/rotate`, "POST", { grace_period_seconds: g }, `Generating a new secret for “${t.name}”`);
      if (!r.ok) return showProblem(status, r.problem);
      say(status, `New secret for “${t.name}”. The old one ${g ? `keeps working for ${seconds(g)}` : "stopped working"}.`, "ok");
      if (tr.isConnected) tr.replaceWith(tokenRow(r.data.token));
      showSecret(r.data, `The new secret of “${t.name}” works now.`);
    });
    const del = button("Delete", "danger", async () => {
      if (!window.confirm(`Delete the token “${t.name}”? Every secret of it stops working at once.`)) return;
      const r = await api("DELETE", `/v1/tokens/${path(t.id)}`);
      if (!r.ok) return showProblem(status, r.problem);
      say(status, `Deleted the token “${t.name}”.`, "ok");
      tr.remove();
    });
    return h("div", { class: "actions" }, graceField, rotate, del);
  }

  const list = pagedTable({
    path: "/v1/tokens", key: "tokens", row: tokenRow, status,
    caption: "API tokens of the organization",
    columns: ["Name", "Secret", "Scopes", "Created", "Expires", "Last used", "Rotated", "Previous secret works until",
      ...(write ? ["Actions"] : [])],
    empty: "No API tokens yet.",
  });
  await list.load(new URLSearchParams({ limit: "100" }));

  let create = null;
  if (write) {
    const [nameField, name] = field("Name", { name: "name", required: true, maxlength: 100, autocomplete: "off", "data-pointer": "/name" },
      "What it is for, e.g. “nightly HR sync”.");
    const fsId = id("scopes");
    const boxes = SCOPES.map((s) => checkField(s, { name: "scopes", value: s }));
    const [otherField, other] = field("Other scopes", { name: "other_scopes", autocomplete: "off" },
      "Your deployment's own scopes, separated by spaces (e.g. orders:read). Optional.");
    const scopes = h("fieldset", { id: fsId, "data-pointer": "/scopes" }, h("legend", {}, "Scopes"),
      boxes.map(([w]) => w), otherField, h("small", { class: "field-error", id: `${fsId}-error`, hidden: true }));
    const [daysField, days] = field("Expires in (days)", {
      type: "number", name: "expires_in_days", required: true, min: 1, max: 365, step: 1, value: 90, "data-pointer": "/expires_in_days",
    }, "1 to 365 days.");
    const f = form({}, [nameField, scopes, daysField, h("div", { class: "actions" }, h("button", { type: "submit" }, "Create token"))],
      async () => {
        clearErrors(f);
        const chosen = boxes.filter(([, b]) => b.checked).map(([, b]) => b.value)
          .concat(other.value.split(/\s+/).filter(Boolean));
        const body = { name: name.value, scopes: chosen, expires_in_days: Number(days.value) };
        const r = await stepUpCall("/v1/tokens", "POST", body, "Creating a token");
        if (!r.ok) return showProblem(status, r.problem, f);
        say(status, `Created the token “${r.data.token.name}”.`, "ok");
        name.value = "";
        other.value = "";
        days.value = "90";
        boxes.forEach(([, b]) => { b.checked = false; });
        // The secret first: it is shown once, whatever happens to the list's reload.
        showSecret(r.data, "Send it as Authorization: Bearer <secret>. It acts for you, within its scopes.");
        await list.reload();
      });
    create = section("Create a token", f);
  }

  return [...head("API tokens", params, status), secretBox, create, section("Tokens", list.el)];
}, { ...ADMIN, title: "API tokens", nav: "API tokens" });

// ---------------------------------------------------------------------------------------
// IP allowlist.

const ALLOWLIST_HINT =
  "One address or network per line, optionally followed by a label (203.0.113.0/24 Office). " +
  "IPv4: four numbers 0–255 separated by three dots, no leading zeros or spaces, optionally /0–/32 " +
  "(a bare address means /32). IPv6 with /0–/128. Up to 200 entries.";

/** The textarea's lines as entries, with each entry's line number and text. */
function parseLines(text) {
  const entries = [];
  const rows = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (!t) return;
    const m = /^(\S+)(?:\s+(.*))?$/.exec(t);
    entries.push(m[2] ? { cidr: m[1], label: m[2].trim() } : { cidr: m[1] });
    rows.push({ line: i + 1, text: t });
  });
  return { entries, rows };
}

/** What a dry run found, for people. */
function dryRunView(d) {
  const days = d.window_days || 30;
  const users = d.blocked_users || [];
  const tokens = d.blocked_tokens || [];
  const ips = d.blocked_ips || [];
  const out = [h("h3", {}, "Preview: who this list would block, enforced")];
  if (!users.length && !tokens.length && !ips.length) {
    out.push(h("p", {}, `Nobody who used the organization in the last ${days} days would be blocked.`));
  } else {
    out.push(h("p", { class: "notice" }, `Over the last ${days} days, this list would have refused these:`));
    if (users.length) {
      out.push(table("Users who would be blocked", ["Email", "Last address", "Last seen"], h("tbody", {},
        users.map((u) => h("tr", {}, h("td", {}, u.email || h("code", {}, u.id)), h("td", {}, h("code", {}, u.last_ip)), h("td", {}, when(u.last_seen)))))));
    }
    if (tokens.length) {
      out.push(table("API tokens that would be blocked", ["Name", "Last address", "Last seen"], h("tbody", {},
        tokens.map((t) => h("tr", {}, h("td", {}, t.name || h("span", { class: "muted" }, `deleted (${t.id})`)),
          h("td", {}, h("code", {}, t.last_ip)), h("td", {}, when(t.last_seen)))))));
    }
    if (ips.length) {
      out.push(h("p", {}, "Addresses that would be blocked:"), h("ul", {}, ips.map((ip) => h("li", {}, h("code", {}, ip)))));
    }
  }
  if (d.complete === false) out.push(h("p", { class: "muted" }, "The window held more events than one preview reads: there may be more."));
  return out;
}

page("allowlist", async (params) => {
  const status = statusLine();
  const write = canWrite();
  const box = h("div");

  function facts(list) {
    return h("dl", { class: "facts" },
      h("dt", {}, "Enforced"), h("dd", {}, yesNo(list.enabled)),
      h("dt", {}, "Entries"), h("dd", {}, String(list.entries.length)),
      h("dt", {}, "Last changed"), h("dd", {}, list.updated_at
        ? [when(list.updated_at), " by ", h("code", {}, list.updated_by || "unknown")] : "never"));
  }

  function readOnly(list) {
    return [facts(list), list.entries.length
      ? table("Allowed networks", ["Network", "Label"], h("tbody", {},
        list.entries.map((e) => h("tr", {}, h("td", {}, h("code", {}, e.cidr)), h("td", {}, e.label || none())))))
      : h("p", { class: "muted" }, "The list is empty.")];
  }

  function editor(list) {
    const [enField, enabled] = checkField("Enforce the allowlist", { name: "enabled", checked: list.enabled, "data-pointer": "/enabled" },
      "Off, the entries are kept but nobody is refused.");
    const text = list.entries.map((e) => (e.label ? `${e.cidr} ${e.label}` : e.cidr)).join("\n");
    const [taField, ta] = field("Allowed IP addresses, one per line", {
      tag: "textarea", name: "entries", rows: 10, spellcheck: "false", autocomplete: "off", value: text, "data-pointer": "/entries",
    }, ALLOWLIST_HINT);
    const badId = id("bad-lines");
    ta.setAttribute("aria-describedby", `${ta.id}-hint ${badId}`);
    const bad = h("ul", { class: "bad-lines", id: badId, "data-testid": "bad-lines", hidden: true });
    const warn = h("div");
    const dry = h("div", { "data-testid": "dry-run", "aria-live": "polite" });
    const reset = () => {
      clearErrors(f);
      bad.replaceChildren();
      bad.hidden = true;
      warn.replaceChildren();
    };

    /** Shows entry errors as "Line L: text — message", the rest beside inputs or in the status. */
    function showEntryProblem(problem, rows) {
      const lines = [];
      const rest = [];
      for (const e of problem.errors || []) {
        const m = /^\/entries\/(\d+)\/(cidr|label)$/.exec(e.field || "");
        const row = m && rows[Number(m[1])];
        if (row) lines.push(h("li", {}, `Line ${row.line}: `, h("code", {}, row.text), ` — ${e.message}`));
        else rest.push(e);
      }
      showProblem(status, { ...problem, errors: rest }, f);
      bad.replaceChildren(...lines);
      bad.hidden = lines.length === 0;
      if (lines.length) ta.setAttribute("aria-invalid", "true");
    }

    async function save(parsed, confirmSelfLockout) {
      const body = { enabled: enabled.checked, entries: parsed.entries, expected_version: list.version, confirm_self_lockout: confirmSelfLockout };
      const r = await stepUpCall("/v1/org/allowlist", "PUT", body, "Changing the IP allowlist");
      const code = r.problem && r.problem.code;
      if (r.ok) {
        await load();
        return say(status, "Saved. It applies everywhere within 60 seconds.", "ok");
      }
      if (r.status === 409 && code === "version_conflict") {
        await load();
        return say(status, "Someone else changed the allowlist; reloaded the current list. Make your change again.", "error");
      }
      if (r.status === 409 && code === "self_lockout") {
        say(status, "");
        warn.replaceChildren(h("div", { class: "notice", role: "alert" },
          h("p", {}, h("strong", {}, "Warning: this list would block your own address. "),
            "Enforced, it refuses the address you are using now: your next request would fail and you could not sign in again from here. " +
            "Only someone on an allowed address, or the operator's break-glass command, could undo it."),
          h("div", { class: "actions" },
            button("Save anyway", "danger", () => save(parsed, true)),
            h("button", { type: "button", class: "secondary", onclick: () => warn.replaceChildren() }, "Cancel"))));
        return;
      }
      showEntryProblem(r.problem, parsed.rows);
    }

    const preview = button("Preview", "secondary", async () => {
      reset();
      const parsed = parseLines(ta.value);
      const r = await api("POST", "/v1/org/allowlist/check", { entries: parsed.entries });
      if (!r.ok) {
        dry.replaceChildren();
        return showEntryProblem(r.problem, parsed.rows);
      }
      say(status, "");
      dry.replaceChildren(...dryRunView(r.data));
    });
    const f = form({ class: "wide" }, [enField, taField, bad, warn,
      h("div", { class: "actions" }, preview, h("button", { type: "submit" }, "Save"))], async () => {
      reset();
      await save(parseLines(ta.value), false);
    });
    ta.addEventListener("input", () => warn.replaceChildren());
    enabled.addEventListener("change", () => warn.replaceChildren());
    return [facts(list), f, dry];
  }

  async function load() {
    const r = await api("GET", "/v1/org/allowlist");
    if (!r.ok) {
      box.replaceChildren();
      return showProblem(status, r.problem);
    }
    box.replaceChildren(...(write ? editor(r.data) : readOnly(r.data)));
  }
  await load();

  return [...head("IP allowlist", params, status),
    h("p", {}, "While enforced, sign-ins, sessions and API tokens of the organization work only from these addresses."),
    section("Allowed addresses", box)];
}, { ...ADMIN, title: "IP allowlist", nav: "IP allowlist" });

// ---------------------------------------------------------------------------------------
// Audit trail.

function eventRow(e) {
  const details = Object.entries(e.details || {});
  return h("tr", {},
    h("td", {}, when(e.time)),
    h("td", {}, h("code", {}, e.type)),
    h("td", {}, h("span", { class: `badge ${e.outcome === "success" ? "success" : "failure"}` }, e.outcome)),
    h("td", {}, party(e.actor)),
    h("td", {}, party(e.target)),
    h("td", {}, e.ip ? h("code", {}, e.ip) : none()),
    h("td", {}, e.email || none()),
    h("td", {}, e.reason ? h("code", {}, e.reason) : none()),
    h("td", {}, details.length ? details.map(([k, v], i) => [i ? h("br", {}) : null, `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`]) : none()));
}

page("audit", async (params) => {
  const status = statusLine();
  const [typeField, type] = field("Type", { name: "type", autocomplete: "off", "data-pointer": "/type" },
    "Exact, or a prefix ending in \".\" like \"login.\"");
  const [outcomeField, outcome] = selectField("Outcome", { name: "outcome", "data-pointer": "/outcome" },
    [["", "Any"], ["success", "Success"], ["failure", "Failure"]]);
  const [userField, user] = field("User id", { name: "user", autocomplete: "off", "data-pointer": "/user" }, "Who acted or was acted on.");
  const [ipField, ip] = field("IP address", { name: "ip", autocomplete: "off", "data-pointer": "/ip" });
  const [fromField, from] = field("From", { type: "datetime-local", name: "from", "data-pointer": "/from" }, "Your local time.");
  const [toField, until] = field("To", { type: "datetime-local", name: "to", "data-pointer": "/to" }, "Your local time.");

  const list = pagedTable({
    path: "/v1/audit", key: "events", row: eventRow, status, form: () => filters, more: "Older events",
    caption: "Audit events, newest first",
    columns: ["Time", "Type", "Outcome", "Actor", "Target", "IP", "Email", "Reason", "Details"],
    empty: "No events match.",
    emptyMore: "No events match among the newest ones read; “Older events” searches further back.",
  });

  /** The filters as a query, leaving out empty values; times become RFC 3339 UTC. */
  function filterQuery() {
    const q = new URLSearchParams();
    const set = (k, v) => { if (v) q.set(k, v); };
    set("type", type.value.trim());
    set("outcome", outcome.value);
    set("user", user.value.trim());
    set("ip", ip.value.trim());
    for (const [k, input] of [["from", from], ["to", until]]) {
      if (!input.value) continue;
      const d = new Date(input.value);
      if (!Number.isNaN(d.getTime())) q.set(k, d.toISOString());
    }
    q.set("limit", "50");
    return q;
  }

  const search = async () => {
    clearErrors(filters);
    say(status, "");
    await list.load(filterQuery());
  };
  const clear = h("button", { type: "button", class: "secondary" }, "Clear");
  const filters = form({ class: "filters wide", "aria-label": "Filter events" },
    [typeField, outcomeField, userField, ipField, fromField, toField,
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Search"), clear)], search);
  clear.addEventListener("click", () => {
    for (const input of [type, user, ip, from, until]) input.value = "";
    outcome.value = "";
    search();
  });
  await list.load(filterQuery());

  return [...head("Audit trail", params, status), filters, section("Events", list.el)];
}, { ...ADMIN, title: "Audit trail", nav: "Audit trail" });
