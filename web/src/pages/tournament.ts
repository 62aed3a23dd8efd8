// #/tournament/<id>: a tournament over REST: its players, registration, start, and the
// bracket with a link to each pairing's match room.
import { client, describe, nameOf, onNames, rest, state } from "../app.ts";
import { bracketEl, type TournamentJson } from "../bracket.ts";
import { formatTime, h, replace } from "../dom.ts";
import type { Page } from "../router.ts";
import { roomHref } from "./room.ts";

const POLL_MS = 5000;

export function tournamentPage(root: HTMLElement, id: string): Page {
  let t: TournamentJson | undefined;
  let disposed = false;
  const title = h("h1", { "data-testid": "tournament-title" }, "Tournament");
  const info = h("p", { class: "muted", "data-testid": "tournament-state" });
  const players = h("ul", { "data-testid": "tournament-players" });
  const actions = h("div", { class: "row" });
  const error = h("p", { class: "error", role: "alert", "data-testid": "tournament-error" });
  const bracket = h("div");
  const status = h("p", { class: "visually-hidden", "aria-live": "polite" });

  const call = async (path: string) => {
    error.textContent = "";
    try {
      t = await rest<TournamentJson>("POST", `/api/v1/tournaments/${encodeURIComponent(id)}/${path}`);
      render();
      status.textContent = path === "register" ? "You are registered." : "The tournament has started.";
    } catch (e) {
      error.textContent = describe(e);
    }
  };

  const render = () => {
    if (!t) return;
    for (const r of t.rounds) for (const p of r.pairings) if (p.room_id) state.tournamentOfRoom.set(p.room_id, t.id);
    if (t.room_id) state.tournamentOfRoom.set(t.room_id, t.id);
    title.textContent = t.name;
    document.title = `${t.name} · Parlor`;
    const me = client.user?.id ?? "";
    info.dataset.state = t.state;
    info.textContent = [
      t.state === "registering" ? "Registration open" : t.state === "running" ? "Running" : "Done",
      `${t.players.length} of ${t.max_players} players`,
      t.state === "registering" && t.registration_closes_at_ms ? `registration closes at ${formatTime(t.registration_closes_at_ms)}` : "",
      `organizer ${nameOf(t.organizer)}`,
      `id ${t.id}`,
    ]
      .filter(Boolean)
      .join(" · ");
    replace(
      players,
      ...(t.players.length
        ? t.players.map((p) => h("li", { "data-user-id": p }, nameOf(p), p === me ? " (you)" : ""))
        : [h("li", { class: "empty" }, "Nobody has registered yet.")]),
    );
    const registered = t.players.includes(me);
    const guest = client.user?.role === "guest";
    replace(
      actions,
      t.state === "registering" && !registered && !guest
        ? h("button", { type: "button", "data-testid": "tournament-register", onclick: () => void call("register") }, "Register")
        : null,
      registered && t.state === "registering" ? h("span", { class: "ok" }, "You are registered.") : null,
      t.organizer === me && t.state !== "done"
        ? h(
            "button",
            { type: "button", class: "secondary", "data-testid": "tournament-start", onclick: () => void call("start") },
            t.state === "running" ? "Open waiting pairings" : "Start the tournament",
          )
        : null,
      t.room_id
        ? h("a", { class: "button secondary", href: roomHref(t.room_id, t.id), "data-testid": "tournament-room-link" }, "Watch in the tournament room")
        : null,
    );
    replace(bracket, bracketEl(t, nameOf, { roomHref: (rid) => roomHref(rid, t!.id) }));
  };

  const load = async () => {
    try {
      t = await rest<TournamentJson>("GET", `/api/v1/tournaments/${encodeURIComponent(id)}`);
      if (!disposed) {
        error.textContent = "";
        render();
      }
    } catch (e) {
      if (!disposed) error.textContent = describe(e);
    }
  };

  replace(
    root,
    h(
      "section",
      { class: "panel", "aria-labelledby": "t-title" },
      h("p", null, h("a", { href: "#/lobby" }, "← Lobby")),
      title,
      info,
      actions,
      error,
      status,
      h("h2", null, "Players"),
      players,
      h("h2", null, "Bracket"),
      bracket,
    ),
  );
  title.id = "t-title";
  void load();
  const timer = setInterval(() => {
    if (document.visibilityState === "visible" && t?.state !== "done") void load();
  }, POLL_MS);
  const offName = onNames(render);
  const onFocus = () => void load();
  window.addEventListener("focus", onFocus);
  return {
    title: "Tournament",
    destroy() {
      disposed = true;
      clearInterval(timer);
      offName();
      window.removeEventListener("focus", onFocus);
    },
  };
}
