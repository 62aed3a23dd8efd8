// Kind "tournament": a tournament's watchers' room. Each advance arrives as a
// TournamentUpdate; the bracket itself is read over REST.
import { bracketEl, type TournamentJson } from "../bracket.ts";
import { h, replace } from "../dom.ts";
import type { GameUpdate } from "../proto.ts";
import type { KindPanel, RoomCtx } from "./kind.ts";

export function tournamentRoomPanel(
  ctx: RoomCtx,
  deps: { getTournament(id: string): Promise<TournamentJson>; roomHref(roomId: string, tid: string): string },
): KindPanel {
  let tid = ctx.tournamentId();
  let t: TournamentJson | undefined;
  const box = h("div", { "data-testid": "tournament-room-bracket" });
  const status = h("p", { class: "muted", "aria-live": "polite" });
  const news = h("ol", { class: "game-log", tabindex: 0, "aria-live": "polite", "aria-label": "Announcements", "data-testid": "tournament-news" });

  const render = () => {
    if (!t) {
      replace(box, h("p", { class: "empty" }, tid ? "Loading the bracket…" : "The bracket shows here once the tournament starts."));
      return;
    }
    replace(
      box,
      h("p", null, h("a", { href: `#/tournament/${encodeURIComponent(t.id)}`, "data-testid": "tournament-link" }, t.name), ` · ${t.state}`),
      bracketEl(t, ctx.name, { roomHref: (rid) => deps.roomHref(rid, t!.id) }),
    );
  };
  const load = async () => {
    if (!tid) return render();
    try {
      t = await deps.getTournament(tid);
      status.textContent = "";
    } catch (e) {
      status.textContent = `Could not load the tournament: ${(e as Error).message}`;
    }
    render();
  };
  const el = h(
    "section",
    { class: "panel", "aria-labelledby": "tr-h" },
    h("h2", { id: "tr-h" }, "Tournament"),
    status,
    box,
    h("h3", null, "Announcements"),
    news,
  );
  void load();
  return {
    el,
    update(u: GameUpdate) {
      if (u.update.case !== "tournament") return;
      const x = u.update.value;
      tid = x.tournamentId || tid;
      const text = x.championUserId
        ? `${ctx.name(x.championUserId)} is the champion!`
        : x.round
          ? `Round ${x.round}, pairing ${x.index}: ${ctx.name(x.winnerUserId)} goes through.`
          : "The tournament has started.";
      news.appendChild(h("li", { "data-testid": "tournament-announcement" }, text, x.opened.length ? ` ${x.opened.length} match room(s) opened.` : ""));
      void load();
    },
    membersChanged() {
      render();
    },
    destroy() {},
  };
}
