// Sign in with the OAuth2 password form; the token stays in this origin's storage.
import { config, setToken, setupLanguage, t } from "./common.js";

setupLanguage();
if (config.demo) document.getElementById("demo-hint").classList.remove("hidden");
const form = document.getElementById("login-form");
form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const error = document.getElementById("login-error");
  error.textContent = "";
  const body = new URLSearchParams({ username: form.username.value.trim(), password: form.password.value });
  const r = await fetch("/api/auth/token", { method: "POST", body });
  if (!r.ok) { error.textContent = t("bad_login"); form.password.select(); return; }
  setToken((await r.json()).access_token);
  const next = new URLSearchParams(location.search).get("next") || "/wallboard";
  // Only paths of this site: a crafted ?next= pointing at another site must not carry the user away.
  location.href = /^\/(?![\/\\])/.test(next) ? next : "/wallboard";
});
