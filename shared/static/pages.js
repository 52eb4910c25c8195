// The local server's pages for mailed links (/verify-email, /reset-password, /accept-invite)
// and the page
// security mails point to (/forgot-password): they post to the API. A deployment's own web
// app replaces them.
"use strict";

const token = new URLSearchParams(window.location.search).get("token") || "";
const out = document.getElementById("result");

function show(text, ok) {
  out.textContent = text;
  out.className = ok ? "ok" : "error";
}

async function post(path, body) {
  const r = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  let problem = null;
  if (!r.ok) {
    try {
      problem = await r.json();
    } catch (_) {
      problem = { detail: "The server answered " + r.status + "." };
    }
  }
  return { ok: r.ok, problem };
}

function explain(problem) {
  const lines = [problem.detail || problem.title || "Something went wrong."];
  for (const e of problem.errors || []) {
    lines.push("• " + e.message);
  }
  return lines.join("\n");
}

const form = document.getElementById("form");
const needsToken = document.body.dataset.page !== "forgot-password";
if (needsToken && !token) {
  show("This link has no token. Open the link from the mail again.", false);
  form.hidden = true;
}
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const page = document.body.dataset.page;
  let r;
  if (page === "verify-email") {
    r = await post("/v1/auth/email/verify", { token });
    if (r.ok) {
      show("Your address is verified. You can sign in now.", true);
      form.hidden = true;
    }
  } else if (page === "reset-password") {
    const pw = document.getElementById("password").value;
    r = await post("/v1/auth/password/reset", { token, new_password: pw });
    if (r.ok) {
      show("Your password is set. Every device was signed out; sign in with the new one.", true);
      form.hidden = true;
    }
  } else if (page === "accept-invite") {
    const pw = document.getElementById("password").value;
    r = await post("/v1/invitations/accept", { token, password: pw });
    if (r.ok) {
      show("Welcome! Your password is set and your address verified. You can sign in now.", true);
      form.hidden = true;
    }
  } else if (page === "forgot-password") {
    const email = document.getElementById("email").value;
    r = await post("/v1/auth/password/forgot", { email });
    if (r.ok) {
      show("If an account has this address, a link is on its way. It works once, for a short time.", true);
      form.hidden = true;
    }
  }
  if (r && !r.ok) {
    show(explain(r.problem), false);
  }
});
