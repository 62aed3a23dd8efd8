// Server-run kinds (docs/games.md): the room's game view kept up to date between the
// GameViews the pod sends (after every join and resume, which are authoritative), and
// builders for GameAction. int64 fields of these proto messages are bigint.
import { clone, create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  CardSchema,
  CardFlippedSchema,
  GameActionSchema,
  GameViewSchema,
  StandingSchema,
  TriviaView_Phase,
  BuzzedSchema,
  RollVisibility,
  type GameUpdate,
  type GameView,
  type GameAction,
  type Standing,
} from "./gen/parlor/v1/games_pb.js";

/** `GameAction.action` as an init object, e.g. `{ case: "dice", value: {...} }`. */
export type GameActionInit = MessageInitShape<typeof GameActionSchema>["action"];

/** The most rolls a dice view holds, as on the server. */
const DICE_HISTORY = 200;

export interface ApplyContext {
  /** The server clock as this client estimates it (ms). */
  serverNow(): number;
  /** The room owner (the cards master, who alone reveals the table). */
  ownerId: string;
}

/**
 * Applies one GameUpdate to a view and returns the new view (the old one is left as it
 * was, so a UI can compare references). Unknown kinds and opaque updates leave it as is.
 */
export function applyGameUpdate(view: GameView, u: GameUpdate, ctx: ApplyContext): GameView {
  const v = clone(GameViewSchema, view);
  const up = u.update;
  if (up.case === "seedRevealed") {
    if (v.fairness) v.fairness.seedCommitment = up.value.nextCommitment;
    return v;
  }
  if (up.case === "dice" && v.view.case === "dice") {
    const d = v.view.value;
    const x = up.value.update;
    if (x.case === "rolled" || x.case === "hiddenRoll") {
      bumpNonce(v, x.value.nonce);
      // The roller and the DM get the public HiddenRoll, then the dice as hidden detail.
      const i = d.history.findIndex((h) => {
        const w = h.update;
        return (w.case === "rolled" || w.case === "hiddenRoll") && w.value.nonce === x.value.nonce;
      });
      if (i >= 0) {
        if (x.case === "rolled") d.history[i] = up.value;
      } else {
        d.history.push(up.value);
        if (d.history.length > DICE_HISTORY) d.history.splice(0, d.history.length - DICE_HISTORY);
      }
    } else if (x.case === "variablesSet") {
      const i = d.variables.findIndex((s) => s.userId === x.value.userId);
      if (i >= 0) d.variables[i] = x.value;
      else d.variables.push(x.value);
    }
    return v;
  }
  if (up.case === "cards" && v.view.case === "cards") {
    const c = v.view.value;
    const x = up.value.update;
    const turnEnds = (user: string) =>
      c.turnTimeoutMs > 0 && user && c.cards.some((k) => !k.face) ? BigInt(Math.round(ctx.serverNow()) + c.turnTimeoutMs) : 0n;
    switch (x.case) {
      case "roundStarted":
        bumpNonce(v, x.value.nonce);
        c.round = x.value.round;
        c.cards = Array.from({ length: x.value.cards }, (_, index) => create(CardSchema, { index }));
        c.turnUserId = x.value.turnUserId;
        // This round's flips and the last round's.
        c.history = c.history.filter((f) => f.round + 1 === x.value.round);
        c.turnEndsAtMs = turnEnds(c.turnUserId);
        break;
      case "flipped": {
        const card = c.cards[x.value.index];
        if (card) {
          card.face = x.value.face;
          card.flippedBy = x.value.byUserId;
        }
        c.history.push(clone(CardFlippedSchema, x.value));
        c.turnUserId = x.value.turnUserId;
        c.turnEndsAtMs =
          c.turnTimeoutMs > 0 && c.turnUserId && c.cards.some((k) => !k.face)
            ? x.value.atMs + BigInt(c.turnTimeoutMs)
            : 0n;
        break;
      }
      case "allRevealed":
        x.value.faces.forEach((face, index) => {
          const card = c.cards[index] ?? (c.cards[index] = create(CardSchema, { index }));
          if (!card.face) {
            card.face = face;
            card.flippedBy = ctx.ownerId;
          }
        });
        c.turnEndsAtMs = 0n;
        break;
      case "reset":
        c.cards = [];
        c.turnEndsAtMs = 0n;
        break;
      case "deckSet":
        c.deckSize = x.value.cards;
        break;
      case "turnPassed":
        c.turnUserId = x.value.turnUserId;
        c.turnEndsAtMs = turnEnds(c.turnUserId);
        break;
    }
    return v;
  }
  if (up.case === "trivia" && v.view.case === "trivia") {
    const t = v.view.value;
    const x = up.value.update;
    switch (x.case) {
      case "started":
        t.questions = x.value.questions;
        t.revealed = [];
        t.queue = [];
        t.current = undefined;
        t.scores = x.value.players.map((userId) => create(StandingSchema, { userId, place: 1, score: 0n }));
        break;
      case "asked":
        t.phase = TriviaView_Phase.BUZZING;
        t.current = x.value;
        t.queue = [];
        break;
      case "buzzed": {
        const b = clone(BuzzedSchema, x.value);
        t.queue = t.queue.filter((q) => q.userId !== b.userId);
        if (b.answering) {
          t.phase = TriviaView_Phase.ANSWERING;
          t.queue.unshift(b);
        } else {
          t.queue.push(b);
        }
        break;
      }
      case "judged": {
        t.queue = t.queue.filter((q) => q.userId !== x.value.userId);
        const s = t.scores.find((e) => e.userId === x.value.userId);
        if (s) s.score = x.value.score;
        else t.scores.push(create(StandingSchema, { userId: x.value.userId, score: x.value.score }));
        placeScores(t.scores);
        if (!x.value.correct && !t.queue.some((q) => q.answering)) t.phase = TriviaView_Phase.BUZZING;
        break;
      }
      case "revealed":
        t.phase = TriviaView_Phase.REVEALED;
        t.queue = [];
        t.revealed.push(x.value);
        break;
      case "over":
        t.phase = TriviaView_Phase.OVER;
        t.queue = [];
        t.current = undefined;
        t.scores = x.value.standings;
        break;
    }
    return v;
  }
  if (up.case === "match" && v.view.case === "match") {
    const m = v.view.value;
    const x = up.value.update;
    switch (x.case) {
      case "seated":
        m.players = x.value.players;
        break;
      case "reported":
        m.reports = m.reports.filter((r) => r.byUserId !== x.value.byUserId);
        m.reports.push(x.value);
        break;
      case "disputed":
        m.disputed = true;
        m.reports = x.value.reports;
        break;
      case "settled":
        m.result = x.value;
        break;
    }
    return v;
  }
  return v;
}

function bumpNonce(v: GameView, nonce: bigint): void {
  if (v.fairness && nonce + 1n > v.fairness.nextNonce) v.fairness.nextNonce = nonce + 1n;
}

/** Places of those who stayed, by score (equal scores share a place); leavers after. */
function placeScores(scores: Standing[]): void {
  const stayed = scores.filter((s) => !s.left).sort((a, b) => (a.score === b.score ? 0 : a.score > b.score ? -1 : 1));
  const gone = scores.filter((s) => s.left);
  let place = 0;
  let last: bigint | undefined;
  stayed.forEach((s, i) => {
    if (s.score !== last) {
      place = i + 1;
      last = s.score;
    }
    s.place = place;
  });
  gone.forEach((s, i) => (s.place = stayed.length + i + 1));
  scores.splice(0, scores.length, ...stayed, ...gone);
}

/** Builders for `room.gameAction(...)`, one per built-in action. */
export const actions = {
  dice: {
    roll: (notation: string, opts: { label?: string; visibility?: "public" | "to_dm" | "hidden" } = {}): GameActionInit => ({
      case: "dice",
      value: {
        action: {
          case: "roll",
          value: {
            notation,
            label: opts.label ?? "",
            visibility:
              opts.visibility === "to_dm"
                ? RollVisibility.TO_DM
                : opts.visibility === "hidden"
                  ? RollVisibility.HIDDEN
                  : RollVisibility.PUBLIC,
          },
        },
      },
    }),
    setVariables: (values: Record<string, number | bigint>): GameActionInit => ({
      case: "dice",
      value: {
        action: {
          case: "setVariables",
          value: { values: Object.fromEntries(Object.entries(values).map(([k, n]) => [k, BigInt(n)])) },
        },
      },
    }),
  },
  cards: {
    startRound: (): GameActionInit => ({ case: "cards", value: { action: { case: "startRound", value: {} } } }),
    flip: (index: number): GameActionInit => ({ case: "cards", value: { action: { case: "flip", value: { index } } } }),
    revealAll: (): GameActionInit => ({ case: "cards", value: { action: { case: "revealAll", value: {} } } }),
    reset: (): GameActionInit => ({ case: "cards", value: { action: { case: "reset", value: {} } } }),
    setDeck: (faces: string[]): GameActionInit => ({ case: "cards", value: { action: { case: "setDeck", value: { faces } } } }),
  },
  trivia: {
    start: (): GameActionInit => ({ case: "trivia", value: { action: { case: "start", value: {} } } }),
    buzz: (question: number): GameActionInit => ({ case: "trivia", value: { action: { case: "buzz", value: { question } } } }),
    answer: (question: number, choice: number): GameActionInit => ({
      case: "trivia",
      value: { action: { case: "answer", value: { question, choice } } },
    }),
  },
  match: {
    report: (winner: string | { draw: true }): GameActionInit => ({
      case: "match",
      value: { action: { case: "report", value: typeof winner === "string" ? { winnerUserId: winner } : { draw: true } } },
    }),
    decide: (winner: string | { draw: true }): GameActionInit => ({
      case: "match",
      value: { action: { case: "decide", value: typeof winner === "string" ? { winnerUserId: winner } : { draw: true } } },
    }),
  },
  /** Owner only: reveal the room's seed and commit to a fresh one. */
  revealSeed: (): GameActionInit => ({ case: "revealSeed", value: {} }),
  /** For a kind added outside the repo: its own encoding. */
  opaque: (type: string, payload: Uint8Array): GameActionInit => ({ case: "opaque", value: { type, payload } }),
} as const;

export type { GameUpdate, GameView, GameAction };
