// Parlor's web client: boots the session from the refresh cookie, then routes by hash.
import "./styles.css";
import { client, describe, state } from "./app.ts";
import { bannerConnecting, connectionBanner } from "./conn.ts";
import { announce, h, replace } from "./dom.ts";
import { lobbyPage } from "./pages/lobby.ts";
import { roomPage } from "./pages/room.ts";
import { signinPage } from "./pages/signin.ts";
import { tournamentPage } from "./pages/tournament.ts";
import { navigate, parse, type Page } from "./router.ts";

const main = document.getElementById("main") as HTMLElement;
const account = document.getElementById("account") as HTMLElement;
const conn = document.getElementById("conn") as HTMLElement;

let page: Page | undefined;
let booted = false;
/** Where to go once signed in, when a page asked for a session. */
let after = "";

const signedIn = () => !!client.user;

function renderAccount(): void {
  const u = client.user;
  if (!u) {
    replace(account);
    return;
  }
  replace(
    account,
    h("span", { class: "who", "data-testid": "current-user", "data-user-id": u.id, "data-role": u.role }, u.name, ` (${u.role})`),
    h(
      "button",
      {
        type: "button",
        class: "small",
        "data-testid": "sign-out",
        onclick: async () => {
          try {
            await state.room?.leave();
          } catch {
            /* signing out anyway */
          }
          state.room = undefined;
          try {
            await client.logout();
          } catch {
            /* the cookie may already be gone */
          }
          renderAccount();
          navigate("#/signin");
        },
      },
      "Sign out",
    ),
  );
}

/** Opens the socket (once signed in); errors show in the banner. */
async function connect(): Promise<void> {
  if (client.state === "open" || client.state === "connecting" || client.state === "reconnecting") {
    await client.connect();
    return;
  }
  bannerConnecting();
  await client.connect();
}

function route(): void {
  if (!booted) return;
  const next = location.hash || "#/lobby";
  page?.destroy(next);
  page = undefined;
  const r = parse(next);
  if (r.name !== "signin" && !signedIn()) {
    after = next;
    if (location.hash !== "#/signin") {
      history.replaceState(null, "", "#/signin");
    }
    return show(signinPage(main, onSignedIn));
  }
  if (r.name === "signin" && signedIn()) {
    history.replaceState(null, "", "#/lobby");
    return show(lobbyPage(main));
  }
  switch (r.name) {
    case "signin":
      return show(signinPage(main, onSignedIn));
    case "lobby":
      return show(lobbyPage(main));
    case "room":
      return show(roomPage(main, r.id, r.params));
    case "tournament":
      return show(tournamentPage(main, r.id));
  }
}

function show(p: Page): void {
  page = p;
  if (p.title !== "Room" && p.title !== "Tournament") document.title = `${p.title} · Parlor`;
  // Move focus to the new page so keyboard and screen-reader users start at its top.
  if (document.activeElement === document.body || !main.contains(document.activeElement)) {
    main.focus({ preventScroll: true });
  }
}

async function onSignedIn(): Promise<void> {
  renderAccount();
  await connect();
  const target = after && parse(after).name !== "signin" ? after : "#/lobby";
  after = "";
  navigate(target);
}

// Whether this browser signed in before: a flag, never a token (the refresh token is an
// HttpOnly cookie the page cannot see). Without it the page skips the refresh a fresh
// visitor would fail, which would spend the address's sign-in budget for nothing.
const HINT = "parlor.signed-in";
function sessionHint(): boolean {
  try {
    return localStorage.getItem(HINT) === "1";
  } catch {
    return true; // storage blocked: try the cookie anyway
  }
}
function setSessionHint(on: boolean): void {
  try {
    if (on) localStorage.setItem(HINT, "1");
    else localStorage.removeItem(HINT);
  } catch {
    /* storage blocked */
  }
}

async function boot(): Promise<void> {
  connectionBanner(conn, () => {
    void connect().catch(() => undefined);
  });
  client.on("auth", (c) => {
    renderAccount();
    if (!c.user && booted) {
      // The session ended (refresh refused, account deleted): back to sign-in.
      state.room = undefined;
      after = location.hash;
      navigate("#/signin");
      if (c.error) setTimeout(() => {
        const err = document.querySelector("[data-testid=auth-error]");
        if (err) err.textContent = `Your session ended: ${describe(c.error)}`;
      }, 0);
    }
  });
  client.on("connected", renderAccount);
  // Refusals of requests that have no answer of their own (presence, cursor moves).
  client.on("error", (e) => announce(describe(e)));
  client.on("auth", (c) => setSessionHint(!!c.user));
  if (sessionHint()) {
    try {
      // A reload: the refresh cookie gives the session back.
      await client.refresh();
      await connect();
    } catch {
      /* no session any more, or the pod is unreachable: the sign-in page says more */
    }
  }
  renderAccount();
  booted = true;
  window.addEventListener("hashchange", route);
  route();
}

void boot();
