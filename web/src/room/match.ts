// Kind "match": a reported 1v1 match. Each seated player reports the winner (or a draw);
// reports that disagree make a dispute that a moderator or the tournament's organizer
// decides. A match of a tournament shows the tournament's bracket.
import { bracketEl, type TournamentJson } from "../bracket.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { MatchActionSchema } from "../proto.ts";
import { field, formatTime, h, replace } from "../dom.ts";
import { applyGameUpdate } from "../sdk.ts";
import type { GameUpdate, GameView, MatchUpdate, MatchView } from "../proto.ts";
import { MatchSettled_How } from "../proto.ts";
import { num, type KindPanel, type RoomCtx } from "./kind.ts";

const HOW: Record<number, string> = {
  [MatchSettled_How.UNSPECIFIED]: "",
  [MatchSettled_How.AGREED]: "both players agreed",
  [MatchSettled_How.UNANSWERED]: "the report went unanswered",
  [MatchSettled_How.DECIDED]: "decided",
};

export interface MatchDeps {
  ownerId(): string;
  getTournament(id: string): Promise<TournamentJson>;
  roomHref(roomId: string, tournamentId: string): string;
}

export function matchPanel(ctx: RoomCtx, deps: MatchDeps): KindPanel {
  let view: GameView | undefined;
  let tournament: TournamentJson | undefined;
  let tournamentId = ctx.tournamentId();

  const seats = h("div", { class: "seats", "data-testid": "match-seats" });
  const state = h("p", { "data-testid": "match-state", "aria-live": "polite" });
  const reports = h("ul", { "data-testid": "match-reports" });
  const controls = h("div", { class: "row", role: "group", "aria-label": "Report the result" });
  const decide = h("div", { class: "row", role: "group", "aria-label": "Decide the dispute" });
  const result = h("p", { class: "ok", "data-testid": "match-result", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert", "data-testid": "match-error" });
  const bracketBox = h("div", { "data-testid": "match-bracket" });
  const bracketStatus = h("p", { class: "muted", "aria-live": "polite" });

  const mv = (): MatchView | undefined => (view?.view.case === "match" ? view.view.value : undefined);

  const act = async (value: MessageInitShape<typeof MatchActionSchema>["action"]) => {
    error.textContent = "";
    try {
      await ctx.action({ case: "match", value: { action: value } });
    } catch (e) {
      error.textContent = (e as Error).message;
    }
  };
  const report = (winner: string | null) =>
    act({ case: "report", value: winner ? { winnerUserId: winner } : { draw: true } });
  const decideFor = (winner: string | null) =>
    act({ case: "decide", value: winner ? { winnerUserId: winner } : { draw: true } });

  const render = () => {
    const m = mv();
    if (!m) {
      state.textContent = "Waiting for the match…";
      return;
    }
    const players = m.players;
    const settled = m.result;
    const winner = settled && !settled.draw ? settled.winnerUserId : "";
    replace(
      seats,
      ...(players.length ? players : ["", ""]).flatMap((p, i) => [
        i > 0 ? h("span", { "aria-hidden": "true" }, "vs") : null,
        h(
          "div",
          { class: `seat${p && p === winner ? " winner" : ""}`, "data-testid": "match-seat", "data-user-id": p || null },
          p ? ctx.name(p) : "Open seat",
          p === ctx.me ? " (you)" : "",
          p && p === winner ? " — winner" : "",
        ),
      ]),
    );
    if (players.length === 1) seats.appendChild(h("div", { class: "seat", "data-testid": "match-seat" }, "Open seat"));

    const seated = players.includes(ctx.me);
    const full = players.length === 2;
    const mine = m.reports.find((r) => r.byUserId === ctx.me);
    state.textContent = settled
      ? "The match is settled."
      : m.disputed
        ? "The reports disagree: the match is disputed, and a moderator or the organizer decides."
        : !full
          ? "Waiting for both players."
          : mine
            ? "Your report is in. Waiting for the other player."
            : seated
              ? "Report the result when you have played."
              : "The players report the result.";
    state.dataset.state = settled ? "settled" : m.disputed ? "disputed" : full ? "playing" : "waiting";

    replace(
      reports,
      ...m.reports.map((r) =>
        h(
          "li",
          { "data-testid": "match-report", "data-by": r.byUserId, "data-winner": r.winnerUserId || null, "data-draw": String(r.draw) },
          `${ctx.name(r.byUserId)} reports ${r.draw ? "a draw" : `${ctx.name(r.winnerUserId)} won`}`,
          num(r.finalAtMs) && !settled && !m.disputed ? ` (final at ${formatTime(num(r.finalAtMs))} unless answered)` : "",
          ".",
        ),
      ),
    );

    const canReport = seated && full && !settled && !m.disputed;
    const opponent = players.find((p) => p !== ctx.me) ?? "";
    replace(
      controls,
      ...(canReport
        ? [
            h("button", { type: "button", "data-testid": "match-report-win", onclick: () => void report(ctx.me) }, "I won"),
            h(
              "button",
              { type: "button", class: "secondary", "data-testid": "match-report-loss", onclick: () => void report(opponent) },
              `${ctx.name(opponent)} won`,
            ),
            h("button", { type: "button", class: "secondary", "data-testid": "match-report-draw", onclick: () => void report(null) }, "Draw"),
          ]
        : []),
    );

    // Moderators may decide at any time; the organizer only a dispute. Never a seated player.
    const organizer = tournament?.organizer === ctx.me;
    const canDecide = !seated && !settled && full && (ctx.staff || (organizer && m.disputed));
    replace(
      decide,
      ...(canDecide
        ? [
            h("span", { class: "muted" }, "Decide:"),
            ...players.map((p, i) =>
              h("button", { type: "button", class: "secondary", "data-testid": `match-decide-${i}`, onclick: () => void decideFor(p) }, `${ctx.name(p)} won`),
            ),
            h("button", { type: "button", class: "secondary", "data-testid": "match-decide-draw", onclick: () => void decideFor(null) }, "Draw"),
          ]
        : []),
    );

    result.textContent = settled
      ? `${settled.draw ? "A draw" : `${ctx.name(settled.winnerUserId)} won`}${HOW[settled.how] ? ` (${HOW[settled.how]}${settled.decidedBy ? ` by ${ctx.name(settled.decidedBy)}` : ""})` : ""}.`
      : "";
  };

  const renderBracket = () => {
    if (!tournament) {
      replace(bracketBox);
      return;
    }
    replace(
      bracketBox,
      h("p", null, h("a", { href: `#/tournament/${encodeURIComponent(tournament.id)}`, "data-testid": "tournament-link" }, tournament.name), ` · ${tournament.state}`),
      bracketEl(tournament, ctx.name, {
        currentRoom: ctx.roomId,
        roomHref: (rid) => deps.roomHref(rid, tournament!.id),
      }),
    );
  };

  const loadTournament = async (id: string) => {
    bracketStatus.textContent = "Loading the bracket…";
    try {
      tournament = await deps.getTournament(id);
      tournamentId = id;
      bracketStatus.textContent = "";
    } catch (e) {
      bracketStatus.textContent = `Could not load tournament ${id}: ${(e as Error).message}`;
    }
    renderBracket();
    render();
  };

  const tidInput = h("input", { type: "text", name: "tournament", autocomplete: "off", "data-testid": "match-tournament-id" });
  const tForm = h(
    "form",
    {
      class: "row",
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        const id = tidInput.value.trim();
        if (id) void loadTournament(id);
      },
    },
    field("Tournament id", tidInput),
    h("button", { type: "submit", class: "secondary", "data-testid": "match-tournament-load" }, "Show the bracket"),
  );

  const el = h(
    "section",
    { class: "panel", "aria-labelledby": "match-h" },
    h("h2", { id: "match-h" }, "Match"),
    seats,
    state,
    controls,
    decide,
    error,
    result,
    h("h3", null, "Reports"),
    reports,
    h(
      "section",
      { "aria-labelledby": "bracket-h" },
      h("h3", { id: "bracket-h" }, "Tournament"),
      tournamentId ? null : h("p", { class: "hint" }, "If this match belongs to a tournament, enter its id to see the bracket."),
      tournamentId ? null : tForm,
      bracketStatus,
      bracketBox,
    ),
  );
  render();
  if (tournamentId) void loadTournament(tournamentId);

  const narrate = (u: MatchUpdate) => {
    if (u.update.case === "settled") {
      const s = u.update.value;
      ctx.announce(s.draw ? "The match is a draw." : `${ctx.name(s.winnerUserId)} won the match.`);
      // The bracket moves on once the result is recorded.
      if (tournamentId) setTimeout(() => void loadTournament(tournamentId!), 1000);
    }
  };

  return {
    el,
    view(v: GameView) {
      view = v;
      render();
    },
    update(u: GameUpdate) {
      if (u.update.case === "tournament") {
        const id = u.update.value.tournamentId;
        if (id) void loadTournament(id);
        return;
      }
      if (!view || u.update.case !== "match") return;
      view = applyGameUpdate(view, u, { serverNow: () => ctx.serverNow(), ownerId: deps.ownerId() });
      render();
      narrate(u.update.value);
    },
    membersChanged() {
      render();
      renderBracket();
    },
    destroy() {},
  };
}
