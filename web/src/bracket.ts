// A single-elimination bracket, drawn as a tree: one column per round, each pairing a box
// joined to the next round's. Read from GET /api/v1/tournaments/{id}.
import { h } from "./dom.ts";

export interface TournamentJson {
  id: string;
  name: string;
  kind: string;
  organizer: string;
  state: "registering" | "running" | "done" | string;
  max_players: number;
  registration_closes_at_ms: number;
  players: string[];
  rounds: { round: number; pairings: { players: (string | null)[]; winner: string | null; room_id: string | null }[] }[];
  champion: string | null;
  room_id: string | null;
}

const roundName = (r: number, of: number) =>
  r === of ? "Final" : r === of - 1 ? "Semi-finals" : r === of - 2 ? "Quarter-finals" : `Round ${r}`;

export function bracketEl(
  t: TournamentJson,
  name: (id: string) => string,
  opts: { currentRoom?: string; roomHref?: (roomId: string) => string } = {},
): HTMLElement {
  if (t.rounds.length === 0) {
    return h(
      "p",
      { class: "empty", "data-testid": "tournament-bracket" },
      t.state === "registering" ? `Registration is open: ${t.players.length} of ${t.max_players} players.` : "No bracket yet.",
    );
  }
  const of = t.rounds.length;
  return h(
    "div",
    { class: "bracket-wrap" },
    h(
      "ol",
      { class: "bracket", tabindex: 0, "data-testid": "tournament-bracket", "aria-label": `${t.name} bracket` },
      ...t.rounds.map((r) =>
        h(
          "li",
          { class: "bracket-round", "data-round": r.round },
          h("h3", { id: `round-${t.id}-${r.round}` }, roundName(r.round, of)),
          h(
            "ol",
            { "aria-labelledby": `round-${t.id}-${r.round}` },
            ...r.pairings.map((p, i) => {
              const slot = (s: string | null) => {
                const label = s === null ? "to be decided" : s === "bye" ? "bye" : name(s);
                const won = !!s && s !== "bye" && p.winner === s;
                return h(
                  "span",
                  {
                    class: `slot${won ? " won" : ""}${s === "bye" ? " bye" : ""}${s === null ? " waiting" : ""}`,
                    "data-user-id": s && s !== "bye" ? s : null,
                  },
                  label,
                  won ? h("span", { class: "visually-hidden" }, " (winner)") : null,
                  won ? h("span", { "aria-hidden": "true" }, " ✓") : null,
                );
              };
              const current = !!p.room_id && p.room_id === opts.currentRoom;
              return h("li", { class: "slot-wrap" }, h(
                "div",
                {
                  class: `pairing${current ? " current" : ""}`,
                  "data-testid": "pairing",
                  "data-round": r.round,
                  "data-index": i + 1,
                  "data-winner": p.winner ?? null,
                  "aria-current": current ? "true" : null,
                },
                h("span", { class: "visually-hidden" }, `Pairing ${i + 1}: `),
                slot(p.players[0] ?? null),
                h("span", { class: "visually-hidden" }, " versus "),
                slot(p.players[1] ?? null),
                p.room_id && opts.roomHref && !current
                  ? h("a", { class: "room-link", href: opts.roomHref(p.room_id), "data-testid": "pairing-room-link" }, "Open the match room")
                  : current
                    ? h("span", { class: "room-link muted" }, "This room")
                    : null,
              ));
            }),
          ),
        ),
      ),
    ),
    t.champion
      ? h("p", { class: "champion", "data-testid": "tournament-champion", "data-user-id": t.champion }, `Champion: ${name(t.champion)}`)
      : null,
  );
}
