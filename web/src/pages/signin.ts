// #/signin: play as a guest, or register, or log in.
import { client, describe } from "../app.ts";
import { field, h, replace } from "../dom.ts";
import type { Page } from "../router.ts";

export function signinPage(root: HTMLElement, signedIn: () => Promise<void>): Page {
  const error = h("p", { class: "error", role: "alert", "data-testid": "auth-error", id: "auth-error" });

  const run = async (form: HTMLFormElement, fn: () => Promise<unknown>) => {
    error.textContent = "";
    const buttons = [...form.querySelectorAll("button")];
    for (const b of buttons) b.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      await fn();
      await signedIn();
    } catch (e) {
      error.textContent = describe(e);
      form.querySelector<HTMLInputElement>("input")?.focus();
    } finally {
      form.removeAttribute("aria-busy");
      for (const b of buttons) b.disabled = false;
    }
  };

  const text = (name: string, testid: string, extra: Record<string, string | number | boolean> = {}) =>
    h("input", { type: "text", name, required: true, "data-testid": testid, "aria-describedby": "auth-error", ...extra });

  // Guest
  const guestName = text("name", "guest-name", { maxlength: 64, autocomplete: "nickname" });
  const guest = h(
    "form",
    {
      "data-testid": "guest-form",
      "aria-labelledby": "guest-h",
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        void run(guest, () => client.guest(guestName.value.trim()));
      },
    },
    h("h2", { id: "guest-h" }, "Play as a guest"),
    h("p", { class: "hint" }, "No account: pick a name and play. Guests are not rated."),
    field("Your name", guestName),
    h("button", { type: "submit", "data-testid": "guest-submit" }, "Play as a guest"),
  );

  // Log in
  const loginLogin = text("login", "login-login", { autocomplete: "username" });
  const loginPassword = h("input", {
    type: "password",
    name: "password",
    required: true,
    autocomplete: "current-password",
    "data-testid": "login-password",
    "aria-describedby": "auth-error",
  });
  const login = h(
    "form",
    {
      "data-testid": "login-form",
      "aria-labelledby": "login-h",
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        void run(login, () => client.login(loginLogin.value.trim(), loginPassword.value));
      },
    },
    h("h2", { id: "login-h" }, "Log in"),
    field("Login", loginLogin),
    field("Password", loginPassword),
    h("button", { type: "submit", "data-testid": "login-submit" }, "Log in"),
  );

  // Register
  const regLogin = text("login", "register-login", { autocomplete: "username" });
  const regPassword = h("input", {
    type: "password",
    name: "password",
    required: true,
    autocomplete: "new-password",
    "data-testid": "register-password",
    "aria-describedby": "auth-error",
  });
  const regName = text("name", "register-name", { maxlength: 64, autocomplete: "nickname" });
  const register = h(
    "form",
    {
      "data-testid": "register-form",
      "aria-labelledby": "register-h",
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        void run(register, () => client.register(regLogin.value.trim(), regPassword.value, regName.value.trim()));
      },
    },
    h("h2", { id: "register-h" }, "Register"),
    h("p", { class: "hint" }, "An account keeps your ratings, and may join tournaments."),
    field("Login", regLogin),
    field("Password", regPassword),
    field("Display name", regName),
    h("button", { type: "submit", "data-testid": "register-submit" }, "Register"),
  );

  replace(
    root,
    h(
      "div",
      { class: "signin" },
      h("h1", { class: "intro" }, "Welcome to Parlor"),
      error,
      h(
        "div",
        { class: "grid-2" },
        h("div", { class: "panel" }, guest),
        h("div", { class: "panel" }, login),
        h("div", { class: "panel" }, register),
      ),
    ),
  );
  guestName.focus();
  return { title: "Sign in", destroy() {} };
}
