// The console's pages for every user: sign-up, sign-in (with the MFA step, the lock
// countdown and clock-sync help), the pages mailed links open, and the signed-in user's own
// account: MFA, sessions, login history, email and password (docs/console.md).
import {
  api, clearErrors, clock, field, form, h, loadMe, refreshNav, me, navigate, page, query, retryAfter, say,
  showProblem, signOutNow, start, statusLine, to, when,
} from "./core.js";

// ---------------------------------------------------------------------------------------
// Helpers.

const CLOCK_HELP =
  "Codes come from your phone's clock. If correct-looking codes keep failing, the clock is " +
  "probably off: turn on automatic date and time in the phone's settings (on Android, Google " +
  "Authenticator also has Settings → Time correction for codes), then try the newest code. " +
  "Lost the phone? Use one of your recovery codes instead.";

/**
 * Disables `button` for `secs` seconds: `message` is said once in the live status line, and
 * the time left ticks in `clockEl`, which is not a live region (a screen reader is not read
 * the clock every second). Then calls `done`.
 */
function countdown(statusEl, clockEl, button, secs, message, done) {
  let left = secs;
  button.disabled = true;
  button.dataset.locked = "1";
  say(statusEl, message, "error");
  const tick = () => {
    if (left <= 0) {
      clearInterval(timer);
      clockEl.textContent = "";
      button.disabled = false;
      delete button.dataset.locked;
      done();
      return;
    }
    clockEl.textContent = `Try again in ${clock(left)}.`;
    left -= 1;
  };
  const timer = setInterval(tick, 1000);
  tick();
}

/** Moves the focus to the first heading in `el`, after its content was replaced. */
function focusFirstHeading(el) {
  const heading = el.querySelector("h2");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  }
}

// ---------------------------------------------------------------------------------------
// Sign-in.

page("signin", (params) => {
  const status = statusLine();
  const notice = params.notice ? h("p", { class: "notice", role: "status" }, params.notice) : null;
  const [emailField, email] = field("Email", { type: "email", name: "email", autocomplete: "username", required: true, "data-pointer": "/email" });
  const [pwField, pw] = field("Password", { type: "password", name: "password", autocomplete: "current-password", required: true, "data-pointer": "/password" });
  const submit = h("button", { type: "submit" }, "Sign in");
  const wait = h("p", { class: "countdown", "data-testid": "countdown" });
  const step = h("div", {});
  const passwordForm = form({ "aria-label": "Sign in" }, [emailField, pwField, status, wait, h("div", { class: "actions" }, submit, to("forgot-password", "Forgot your password?"))], async (f) => {
    say(status, "");
    const r = await api("POST", "/v1/auth/login", { email: email.value, password: pw.value });
    if (r.ok && r.data.mfa_required) {
      pw.value = "";
      passwordForm.hidden = true;
      step.replaceChildren(...mfaStep(r.data.mfa_token));
      step.querySelector("input").focus();
      return;
    }
    if (r.ok) {
      await signedIn(r.data);
      return;
    }
    const code = r.problem.code;
    if (code === "account_locked" || code === "rate_limited") {
      const secs = retryAfter(r);
      countdown(status, wait, submit, secs,
        code === "account_locked"
          ? `Too many failed attempts: this account is locked for ${clock(secs)} (minutes:seconds). Wait, or reset your password.`
          : `Too many requests: wait ${clock(secs)} (minutes:seconds).`,
        () => say(status, "You can try again now.", "ok"));
      return;
    }
    if (code === "email_not_verified") {
      say(status, "Your address is not verified yet. We mailed you the link again: open it, then sign in.", "error");
      return;
    }
    if (code === "ip_not_allowed") {
      say(status, "Your organization does not allow sign-in from this network (its IP allowlist). Ask an admin.", "error");
      return;
    }
    showProblem(status, r.problem, f);
  });
  return [h("h1", {}, "Sign in"), notice, passwordForm, step, h("p", {}, "New here? ", to("signup", "Create an organization"), ".")];
}, { title: "Sign in" });

/** The second step of a sign-in: a code from the app, or a recovery code. */
function mfaStep(mfaToken) {
  const status = statusLine();
  let recovery = false;
  const [codeField, code] = field("Code from your authenticator app", { name: "code", inputmode: "numeric", autocomplete: "one-time-code", required: true, pattern: "[0-9 ]{6,7}", "data-pointer": "/code" }, "6 digits; a new one every 30 seconds.");
  const [recField, rec] = field("Recovery code", { name: "recovery_code", autocomplete: "off", required: true, "data-pointer": "/recovery_code" }, "One of the codes you saved when you turned on two-step verification; each works once.");
  recField.hidden = true;
  rec.disabled = true;
  const help = h("p", { class: "notice", hidden: true, "data-testid": "clock-help" }, CLOCK_HELP);
  const toggle = h("button", { type: "button", class: "link" }, "Use a recovery code instead");
  toggle.addEventListener("click", () => {
    recovery = !recovery;
    codeField.hidden = recovery;
    code.disabled = recovery;
    recField.hidden = !recovery;
    rec.disabled = !recovery;
    toggle.textContent = recovery ? "Use a code from the app instead" : "Use a recovery code instead";
    (recovery ? rec : code).focus();
  });
  const f = form({ "aria-label": "Two-step verification" }, [codeField, recField, help, status, h("div", { class: "actions" }, h("button", { type: "submit" }, "Verify"), toggle)], async () => {
    clearErrors(f);
    const body = recovery ? { mfa_token: mfaToken, recovery_code: rec.value } : { mfa_token: mfaToken, code: code.value };
    const r = await api("POST", "/v1/auth/mfa/verify", body);
    if (r.ok) {
      await signedIn(r.data);
      return;
    }
    if (r.problem.code === "invalid_mfa_code") {
      say(status, recovery ? "That recovery code did not work (each works once)." : "That code did not work.", "error");
      help.hidden = recovery;
      (recovery ? rec : code).select();
      return;
    }
    if (r.problem.code === "mfa_token_invalid") {
      navigate("signin", { notice: "The verification step expired or had too many wrong codes. Sign in again." });
      return;
    }
    showProblem(status, r.problem, f);
  });
  return [h("h2", {}, "Two-step verification"), f];
}

async function signedIn(tokens) {
  await start(tokens);
  if (tokens.mfa_enrollment_required) {
    navigate("mfa", { notice: "Your organization requires two-step verification: set it up to continue." });
  } else {
    navigate("account");
  }
}

// ---------------------------------------------------------------------------------------
// Sign-up and the pages mailed links open.

page("signup", () => {
  const status = statusLine();
  const [orgField, org] = field("Organization name", { name: "org_name", required: true, maxlength: 100, autocomplete: "organization", "data-pointer": "/org_name" });
  const [emailField, email] = field("Your email", { type: "email", name: "email", required: true, autocomplete: "email", "data-pointer": "/email" }, "You will be the organization's owner. We mail you a link to confirm the address.");
  const [pwField, pw] = field("Password", { type: "password", name: "password", required: true, minlength: 8, maxlength: 128, autocomplete: "new-password", "data-pointer": "/password" }, "At least 12 characters, and not one known from a breach.");
  const done = h("div", {});
  const f = form({ "aria-label": "Create an organization" }, [orgField, emailField, pwField, status, h("div", { class: "actions" }, h("button", { type: "submit" }, "Create the organization"))], async () => {
    const r = await api("POST", "/v1/orgs", { org_name: org.value, email: email.value, password: pw.value });
    if (r.ok) {
      f.hidden = true;
      done.replaceChildren(h("p", { class: "status ok", role: "status" }, `Almost there: we mailed a link to ${r.data.user.email}. Open it to confirm the address, then sign in.`));
      return;
    }
    showProblem(status, r.problem, f);
  });
  return [h("h1", {}, "Create an organization"), f, done];
}, { title: "Create an organization" });

/** A page for a mailed link: reads `token` from the link, posts it with `fields`. */
function linkPage(title, intro, fieldsOf, submitLabel, post, doneText) {
  return () => {
    const token = query("token") || "";
    // The token is in the URL: take it out of the address bar and history at once.
    window.history.replaceState({}, "", window.location.pathname);
    const status = statusLine();
    if (!token) {
      return [h("h1", {}, title), h("p", { class: "status error" }, "This link has no token. Open the link from the mail again.")];
    }
    const [fields, values] = fieldsOf();
    const f = form({ "aria-label": title }, [h("p", {}, intro), fields, status, h("div", { class: "actions" }, h("button", { type: "submit" }, submitLabel))], async () => {
      const r = await post(token, values());
      if (r.ok) {
        f.replaceChildren(h("p", { class: "status ok", role: "status" }, doneText), h("p", {}, to("signin", "Sign in")));
        return;
      }
      if (r.problem.code === "invalid_token") {
        say(status, "This link is no longer valid: it was used already, it expired, or a newer one was sent. Ask for a new one.", "error");
        return;
      }
      showProblem(status, r.problem, f);
    });
    return [h("h1", {}, title), f];
  };
}

function newPassword(label) {
  const [pwField, pw] = field(label, { type: "password", name: "new_password", required: true, minlength: 8, maxlength: 128, autocomplete: "new-password", "data-pointer": "/new_password" }, "Your organization sets the minimum length (12 unless changed). Passwords known from breaches are refused.");
  return [pwField, pw];
}

page("verify-email", linkPage("Confirm your email address", "Confirm that this address is yours.", () => [null, () => ({})], "Confirm my address",
  (token) => api("POST", "/v1/auth/email/verify", { token }),
  "Your address is confirmed. You can sign in now."), { title: "Confirm your email" });

page("reset-password", linkPage("Choose a new password", "Every device signed in to your account is signed out when you set it.", () => {
  const [f, pw] = newPassword("New password");
  return [f, () => ({ new_password: pw.value })];
}, "Set the password", (token, v) => api("POST", "/v1/auth/password/reset", { token, ...v }),
"Your password is set and every device was signed out. Sign in with the new one."), { title: "Choose a new password" });

page("accept-invite", linkPage("Join your organization", "Choose a password for your new account.", () => {
  const [f, pw] = field("Choose a password", { type: "password", name: "password", required: true, minlength: 8, maxlength: 128, autocomplete: "new-password", "data-pointer": "/password" }, "Your organization sets the minimum length. Passwords known from breaches are refused.");
  return [f, () => ({ password: pw.value })];
}, "Join", (token, v) => api("POST", "/v1/invitations/accept", { token, ...v }),
"Welcome! Your password is set and your address confirmed. You can sign in now."), { title: "Join your organization" });

page("forgot-password", () => {
  const status = statusLine();
  const [emailField, email] = field("Email", { type: "email", name: "email", required: true, autocomplete: "email", "data-pointer": "/email" });
  const f = form({ "aria-label": "Forgot your password" }, [h("p", {}, "We mail a link to set a new password, if the address belongs to a confirmed account."), emailField, status, h("div", { class: "actions" }, h("button", { type: "submit" }, "Mail me a link"))], async () => {
    const r = await api("POST", "/v1/auth/password/forgot", { email: email.value });
    if (r.ok) {
      f.replaceChildren(h("p", { class: "status ok", role: "status" }, "If an account has this address, a link is on its way. It works once, for a short time."));
      return;
    }
    showProblem(status, r.problem, f);
  });
  return [h("h1", {}, "Forgot your password"), f];
}, { title: "Forgot your password" });

// ---------------------------------------------------------------------------------------
// The signed-in user's account.

page("account", async () => {
  const u = me() || (await loadMe());
  if (!u) return [h("h1", {}, "Your account"), h("p", { class: "status error" }, "Your account could not be read. Reload to try again.")];
  const status = statusLine();
  const verify = u.email_verified ? null : h("p", { class: "notice" }, "Your address is not confirmed yet. ",
    h("button", { type: "button", class: "link", onclick: async () => {
      const r = await api("POST", "/v1/auth/email/verify/resend");
      if (r.ok) say(status, "We mailed you a new link.", "ok"); else showProblem(status, r.problem);
    } }, "Mail me the link again"));
  return [
    h("h1", {}, "Your account"),
    verify,
    h("dl", { class: "facts" },
      h("dt", {}, "Email"), h("dd", {}, u.email),
      h("dt", {}, "Role"), h("dd", {}, u.role),
      h("dt", {}, "Two-step verification"), h("dd", {}, u.mfa_enabled ? "On" : "Off", " (", to("mfa", u.mfa_enabled ? "manage" : "turn it on"), ")")),
    status,
    passwordSection(),
    emailSection(),
  ];
}, { auth: true, title: "Your account", nav: "Account" });

function passwordSection() {
  const status = statusLine();
  const [curField, cur] = field("Current password", { type: "password", name: "current_password", required: true, autocomplete: "current-password", "data-pointer": "/current_password" });
  const [newField, nw] = newPassword("New password");
  const f = form({ "aria-label": "Change your password" }, [curField, newField, status, h("div", { class: "actions" }, h("button", { type: "submit" }, "Change the password"))], async () => {
    const r = await api("POST", "/v1/auth/password/change", { current_password: cur.value, new_password: nw.value });
    if (r.ok) {
      f.reset();
      say(status, "Your password is changed. Your other devices were signed out.", "ok");
      return;
    }
    showProblem(status, r.problem, f);
  });
  return h("section", {}, h("h2", {}, "Change your password"), f);
}

function emailSection() {
  const status = statusLine();
  const [newField, nw] = field("New email", { type: "email", name: "new_email", required: true, autocomplete: "email", "data-pointer": "/new_email" });
  const [pwField, pw] = field("Your password", { type: "password", name: "password", required: true, autocomplete: "current-password", "data-pointer": "/password" });
  const f = form({ "aria-label": "Change your email" }, [newField, pwField, status, h("div", { class: "actions" }, h("button", { type: "submit" }, "Send a link to the new address"))], async () => {
    const r = await api("POST", "/v1/me/email", { new_email: nw.value, password: pw.value });
    if (r.ok) {
      f.reset();
      say(status, "A link is on its way to the new address; nothing changes until it is opened. Your current address was told.", "ok");
      return;
    }
    showProblem(status, r.problem, f);
  });
  return h("section", {}, h("h2", {}, "Change your email"), f);
}

// ---------------------------------------------------------------------------------------
// MFA.

page("mfa", async (params) => {
  const u = await loadMe();
  if (!u) return [h("h1", {}, "Two-step verification"), h("p", { class: "status error" }, "Your account could not be read. Reload to try again.")];
  const notice = params.notice ? h("p", { class: "notice", role: "status" }, params.notice) : null;
  const body = u.mfa_enabled ? mfaManage() : mfaEnroll();
  return [h("h1", {}, "Two-step verification"), notice, body];
}, { auth: true, title: "Two-step verification", nav: "Two-step verification" });

function mfaEnroll() {
  const box = h("section", {});
  const status = statusLine();
  const [pwField, pw] = field("Your password", { type: "password", name: "password", required: true, autocomplete: "current-password", "data-pointer": "/password" });
  const f = form({ "aria-label": "Start setting up two-step verification" }, [
    h("p", {}, "After your password, sign-in will ask for a 6-digit code from an authenticator app on your phone (Google Authenticator, Microsoft Authenticator, 1Password, Authy…)."),
    pwField, status, h("div", { class: "actions" }, h("button", { type: "submit" }, "Set it up")),
  ], async () => {
    const r = await api("POST", "/v1/mfa/totp/enroll", { password: pw.value });
    if (!r.ok) {
      showProblem(status, r.problem, f);
      return;
    }
    box.replaceChildren(...scanStep(r.data));
    focusFirstHeading(box);
  });
  box.append(f);
  return box;
}

function scanStep(enrolled) {
  const status = statusLine();
  const grouped = enrolled.secret.replace(/(.{4})/g, "$1 ").trim();
  const [codeField, code] = field("Code shown by the app", { name: "code", inputmode: "numeric", autocomplete: "one-time-code", required: true, pattern: "[0-9 ]{6,7}", "data-pointer": "/code" });
  const help = h("p", { class: "notice", hidden: true, "data-testid": "clock-help" }, CLOCK_HELP);
  const result = h("div", {});
  const f = form({ "aria-label": "Confirm two-step verification" }, [codeField, help, status, h("div", { class: "actions" }, h("button", { type: "submit" }, "Turn it on"))], async () => {
    const r = await api("POST", "/v1/mfa/totp/confirm", { code: code.value });
    if (r.ok) {
      await loadMe();
      refreshNav();
      f.hidden = true;
      result.replaceChildren(...recoveryCodes(r.data.recovery_codes, true));
      focusFirstHeading(result);
      return;
    }
    if (r.problem.code === "invalid_mfa_code") {
      say(status, "That code did not work.", "error");
      help.hidden = false;
      return;
    }
    showProblem(status, r.problem, f);
  });
  return [
    h("h2", {}, "1. Scan the QR code"),
    h("p", {}, "Open your authenticator app, add an account, and scan:"),
    h("img", { class: "qr", src: enrolled.qr_png, alt: "QR code for your authenticator app (the same key as the setup key below)" }),
    h("p", {}, "Can't scan? Enter this setup key by hand (time-based, 6 digits, every 30 seconds):"),
    h("p", {}, h("code", { class: "secret", "data-testid": "manual-secret" }, grouped)),
    h("h2", {}, "2. Enter the code it shows"),
    f,
    result,
  ];
}

function recoveryCodes(codes, fresh) {
  const copied = statusLine();
  return [
    h("h2", {}, "Your recovery codes"),
    h("p", { class: "notice" }, fresh ? "Two-step verification is on. " : "", "Keep these codes somewhere safe: each signs you in once if you lose your phone. They are shown only now; new ones replace them all."),
    h("ol", { class: "codes", "data-testid": "recovery-codes" }, codes.map((c) => h("li", {}, c))),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: () => window.print() }, "Print"),
      h("button", { type: "button", class: "secondary", onclick: async () => {
        try {
          await navigator.clipboard.writeText(codes.join("\n"));
          say(copied, "Copied.", "ok");
        } catch (_) {
          say(copied, "Copying was refused by the browser: select the codes instead.", "error");
        }
      } }, "Copy"),
      to("account", "Done")),
    copied,
  ];
}

function mfaManage() {
  const box = h("div", {});
  const codesStatus = statusLine();
  const [cField, c] = field("Current code from your app", { name: "code", inputmode: "numeric", autocomplete: "one-time-code", required: true, "data-pointer": "/code" });
  const codesOut = h("div", {});
  const codesForm = form({ "aria-label": "New recovery codes" }, [h("p", {}, "New codes replace every old one."), cField, codesStatus, h("div", { class: "actions" }, h("button", { type: "submit", class: "secondary" }, "Get new recovery codes"))], async () => {
    const r = await api("POST", "/v1/mfa/recovery-codes", { code: c.value });
    if (r.ok) {
      codesForm.reset();
      codesOut.replaceChildren(...recoveryCodes(r.data.recovery_codes, false));
      focusFirstHeading(codesOut);
      return;
    }
    showProblem(codesStatus, r.problem, codesForm);
  });
  const offStatus = statusLine();
  const [pField, p] = field("Your password", { type: "password", name: "password", required: true, autocomplete: "current-password", "data-pointer": "/password" });
  const [oField, o] = field("Current code from your app", { name: "code", inputmode: "numeric", autocomplete: "one-time-code", required: true, "data-pointer": "/code" });
  const offForm = form({ "aria-label": "Turn off two-step verification" }, [pField, oField, offStatus, h("div", { class: "actions" }, h("button", { type: "submit", class: "danger" }, "Turn it off"))], async () => {
    const r = await api("POST", "/v1/mfa/totp/disable", { password: p.value, code: o.value });
    if (r.ok) {
      await loadMe();
      navigate("mfa", { notice: "Two-step verification is off." });
      return;
    }
    showProblem(offStatus, r.problem, offForm);
  });
  box.append(
    h("p", { class: "status ok" }, "Two-step verification is on."),
    h("section", {}, h("h2", {}, "Recovery codes"), codesForm, codesOut),
    h("section", {}, h("h2", {}, "Turn it off"), offForm),
  );
  return box;
}

// ---------------------------------------------------------------------------------------
// Sessions and login history.

page("sessions", async () => {
  const status = statusLine();
  const r = await api("GET", "/v1/sessions");
  if (!r.ok) return [h("h1", {}, "Where you are signed in"), h("p", { class: "status error" }, r.problem.detail || r.problem.title)];
  const rows = r.data.sessions.map((s) => h("tr", {},
    h("td", {}, s.user_agent || h("span", { class: "muted" }, "unknown"), s.current ? h("span", { class: "badge success" }, " this device") : null),
    h("td", { class: "mono" }, s.ip),
    h("td", {}, when(s.created_at)),
    h("td", {}, when(s.last_used_at)),
    h("td", {}, s.current ? h("span", { class: "muted" }, "—") : h("button", { type: "button", class: "secondary", "aria-label": `Sign out the session from ${s.ip}`, onclick: async () => {
      const d = await api("DELETE", `/v1/sessions/${encodeURIComponent(s.id)}`);
      if (d.ok) navigate("sessions"); else showProblem(status, d.problem);
    } }, "Sign out"))));
  return [
    h("h1", {}, "Where you are signed in"),
    h("table", {}, h("caption", { class: "muted" }, "Your sessions, newest first"),
      h("thead", {}, h("tr", {}, ["Device", "IP address", "Signed in", "Last active", ""].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows)),
    status,
    h("div", { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: async () => {
        const d = await api("POST", "/v1/sessions/revoke-others");
        if (d.ok) navigate("sessions"); else showProblem(status, d.problem);
      } }, "Sign out everywhere else"),
      h("button", { type: "button", class: "secondary", onclick: signOutNow }, "Sign out here")),
  ];
}, { auth: true, title: "Sessions", nav: "Sessions" });

page("history", async () => {
  const tbody = h("tbody", {});
  const status = statusLine();
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Older attempts");
  let cursor = null;
  const load = async () => {
    const q = new URLSearchParams({ limit: "50" });
    if (cursor) q.set("cursor", cursor);
    const r = await api("GET", `/v1/me/login-history?${q}`);
    if (!r.ok) {
      showProblem(status, r.problem);
      return;
    }
    for (const a of r.data.attempts) {
      tbody.append(h("tr", {},
        h("td", {}, when(a.time)),
        h("td", {}, h("span", { class: `badge ${a.outcome}` }, a.outcome === "success" ? "signed in" : "failed")),
        h("td", {}, a.reason ? a.reason.replaceAll("_", " ") : ""),
        h("td", { class: "mono" }, a.ip),
        h("td", {}, a.user_agent || ""),
        h("td", {}, a.mfa ? "yes" : "no")));
    }
    if (!tbody.children.length) say(status, "No sign-in attempts yet.");
    cursor = r.data.next_cursor;
    more.hidden = !cursor;
  };
  more.addEventListener("click", load);
  await load();
  return [
    h("h1", {}, "Your sign-in history"),
    h("p", {}, "Every attempt to sign in to your account, successful or not. Don't recognize one? Change your password and sign out everywhere else."),
    h("table", {}, h("caption", { class: "muted" }, "Sign-in attempts, newest first"),
      h("thead", {}, h("tr", {}, ["Date and time", "Outcome", "Why", "IP address", "Device", "Second step"].map((t) => h("th", { scope: "col" }, t)))),
      tbody),
    status,
    h("div", { class: "actions" }, more),
  ];
}, { auth: true, title: "Sign-in history", nav: "Sign-in history" });

// ---------------------------------------------------------------------------------------

page("not-found", () => [h("h1", {}, "Not found"), h("p", {}, "There is no such page. ", to("account", "Go to your account"), ".")], { title: "Not found" });
page("forbidden", () => [h("h1", {}, "Not for your role"), h("p", {}, "Your role does not open this page. ", to("account", "Go to your account"), ".")], { title: "Not for your role" });
