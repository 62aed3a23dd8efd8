// Kind "cards": a table of face-down cards. The master (owner) deals, reveals and resets;
// players flip on their turn (round-robin) or at will (free). Every member's cursor over
// the table is their presence cursor.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CardsActionSchema } from "../proto.ts";
import { field, formatTime, h, replace, throttle } from "../dom.ts";
import type { CardFlipped, CardsUpdate, CardsView, GameUpdate, GameView } from "../proto.ts";
import { TurnOrder } from "../proto.ts";
import { fairnessBox, revealSeedButton } from "./fair.ts";
import { isOwner, isWatcher, num, type KindPanel, type RoomCtx } from "./kind.ts";

interface CardState {
  face: string;
  by: string;
}

const red = (face: string) => /^(10|[2-9AJQK])[HD]$|[♥♦]/.test(face);

export function cardsPanel(ctx: RoomCtx): KindPanel {
  let round = 0;
  let cards: CardState[] = [];
  let turnOrder = TurnOrder.FREE;
  let turnUser = "";
  let deckSize = 52;
  let turnTimeoutMs = 0;
  let turnEndsAt = 0;

  const owner = isOwner(ctx);
  const watcher = isWatcher(ctx);
  const status = h("p", { "data-testid": "cards-status" });
  const turn = h("p", { "data-testid": "cards-turn", "aria-live": "polite" });
  const timer = h("span", { class: "timer", "data-testid": "cards-timer" });
  const grid = h("div", { class: "card-grid", role: "group", "aria-label": "Cards on the table", "data-testid": "cards-grid" });
  const cursors = h("div", { "aria-hidden": "true" });
  const table = h(
    "div",
    { class: "table-area", "data-testid": "cards-table" },
    grid,
    cursors,
  );
  const log = h("ol", { class: "game-log", tabindex: 0, "aria-live": "polite", "aria-label": "Flips, newest last", "data-testid": "cards-log" });
  const error = h("p", { class: "error", role: "alert", "data-testid": "cards-error" });
  const fair = fairnessBox();

  const act = async (value: MessageInitShape<typeof CardsActionSchema>["action"]) => {
    error.textContent = "";
    try {
      await ctx.action({ case: "cards", value: { action: value } });
    } catch (e) {
      error.textContent = (e as Error).message;
    }
  };

  const myTurn = () => owner || (!watcher && (turnOrder !== TurnOrder.ROUND_ROBIN || turnUser === ctx.me));

  const renderStatus = () => {
    const down = cards.filter((c) => !c.face).length;
    status.textContent =
      round === 0
        ? `No round yet. The deck has ${deckSize} cards.`
        : `Round ${round}: ${cards.length} cards, ${down} face down. ${turnOrder === TurnOrder.ROUND_ROBIN ? "Turns go round." : "Anyone may flip."}`;
    if (turnOrder === TurnOrder.ROUND_ROBIN && round > 0 && turnUser) {
      turn.textContent = turnUser === ctx.me ? "Your turn: flip a card." : `${ctx.name(turnUser)}'s turn.`;
      turn.dataset.userId = turnUser;
    } else {
      turn.textContent = "";
      delete turn.dataset.userId;
    }
  };

  const cardLabel = (i: number, c: CardState) =>
    c.face ? `Card ${i + 1}: ${c.face}${c.by ? `, flipped by ${ctx.name(c.by)}` : ""}` : `Card ${i + 1}, face down`;

  const renderCards = () => {
    // Keep the keyboard where it was across the redraw.
    const focused = (document.activeElement as HTMLElement | null)?.closest?.<HTMLElement>("[data-testid=card]");
    const focusIndex = focused && grid.contains(focused) ? focused.dataset.index : undefined;
    if (cards.length === 0) {
      replace(grid, h("p", { class: "empty" }, owner ? "Start a round to deal the cards." : "Waiting for the master to deal."));
    } else {
      const can = myTurn();
      replace(
        grid,
        ...cards.map((c, i) =>
          h(
            "button",
            {
              type: "button",
              class: `card ${c.face ? "up" : "down"}${c.face && red(c.face) ? " red" : ""}`,
              "data-testid": "card",
              "data-index": i,
              "data-face": c.face || null,
              "aria-label": cardLabel(i, c),
              // aria-disabled, not disabled: a card keeps its focus when it turns up.
              "aria-disabled": !!c.face || !can ? "true" : null,
              onclick: () => {
                if (!cards[i]?.face && myTurn()) void act({ case: "flip", value: { index: i } });
              },
            },
            c.face ? c.face : h("span", { "aria-hidden": "true" }, "🂠"),
          ),
        ),
      );
      if (focusIndex !== undefined) grid.querySelector<HTMLButtonElement>(`[data-index="${focusIndex}"]`)?.focus();
    }
    renderStatus();
  };

  const logFlip = (f: CardFlipped) => {
    log.appendChild(
      h(
        "li",
        { "data-testid": "flip", "data-index": f.index, "data-face": f.face },
        `${ctx.name(f.byUserId)} flipped card ${f.index + 1}: `,
        h("strong", null, f.face),
        " ",
        h("span", { class: "muted" }, formatTime(num(f.atMs))),
      ),
    );
    while (log.children.length > 120) log.firstElementChild!.remove();
    log.scrollTop = log.scrollHeight;
  };
  const note = (text: string) => {
    log.appendChild(h("li", { class: "muted" }, text));
    log.scrollTop = log.scrollHeight;
  };

  const armTimer = (endsAt?: number) => {
    turnEndsAt = endsAt ?? (turnOrder === TurnOrder.ROUND_ROBIN && turnTimeoutMs > 0 && round > 0 ? ctx.serverNow() + turnTimeoutMs : 0);
  };
  const tick = setInterval(() => {
    if (!turnEndsAt) {
      timer.textContent = "";
      return;
    }
    const left = Math.max(0, turnEndsAt - ctx.serverNow());
    timer.textContent = `${Math.ceil(left / 1000)} s left on this turn`;
  }, 250);

  const apply = (u: CardsUpdate) => {
    switch (u.update.case) {
      case "roundStarted": {
        const r = u.update.value;
        round = r.round;
        cards = Array.from({ length: r.cards }, () => ({ face: "", by: "" }));
        turnUser = r.turnUserId;
        fair.drew(r.nonce);
        armTimer();
        note(`Round ${r.round} dealt: ${r.cards} cards face down.`);
        break;
      }
      case "flipped": {
        const f = u.update.value;
        if (cards[f.index]) cards[f.index] = { face: f.face, by: f.byUserId };
        turnUser = f.turnUserId;
        armTimer();
        logFlip(f);
        ctx.announce(`${ctx.name(f.byUserId)} flipped ${f.face}`);
        break;
      }
      case "allRevealed": {
        const r = u.update.value;
        cards = r.faces.map((face, i) => ({ face, by: cards[i]?.by ?? "" }));
        turnUser = "";
        armTimer(0);
        note(`Round ${r.round}: every card revealed.`);
        break;
      }
      case "reset":
        round = 0;
        cards = [];
        turnUser = "";
        armTimer(0);
        note("The table was reset.");
        break;
      case "deckSet":
        deckSize = u.update.value.cards;
        note(`New deck: ${deckSize} cards.`);
        break;
      case "turnPassed": {
        const t = u.update.value;
        turnUser = t.turnUserId;
        armTimer();
        note(`${ctx.name(t.skippedUserId)} let the turn pass.`);
        break;
      }
      default:
        break;
    }
    renderCards();
  };

  const applyView = (v: CardsView) => {
    round = v.round;
    turnOrder = v.turnOrder === TurnOrder.ROUND_ROBIN ? TurnOrder.ROUND_ROBIN : TurnOrder.FREE;
    turnUser = v.turnUserId;
    deckSize = v.deckSize;
    turnTimeoutMs = v.turnTimeoutMs;
    const n = v.cards.reduce((m, c) => Math.max(m, c.index + 1), 0);
    cards = Array.from({ length: n }, () => ({ face: "", by: "" }));
    for (const c of v.cards) cards[c.index] = { face: c.face, by: c.flippedBy };
    replace(log);
    for (const f of v.history) logFlip(f);
    armTimer(num(v.turnEndsAtMs) || 0);
    renderCards();
  };

  // Cursors: mine goes out as presence; the others' are drawn over the table.
  const sendCursor = throttle(50, (x: number, y: number) => ctx.setCursor(x, y));
  table.addEventListener("pointermove", (ev) => {
    const r = table.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return;
    const x = Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width));
    const y = Math.min(1, Math.max(0, (ev.clientY - r.top) / r.height));
    sendCursor(x, y);
  });
  const renderCursors = () => {
    const marks: HTMLElement[] = [];
    for (const m of ctx.members().values()) {
      if (m.userId === ctx.me) continue;
      const { x, y } = m.cursor;
      if (!x && !y) continue;
      const mark = h("span", { class: "cursor", "data-testid": "cursor", "data-user-id": m.userId }, m.name);
      mark.style.setProperty("--x", String(Math.min(1, Math.max(0, x))));
      mark.style.setProperty("--y", String(Math.min(1, Math.max(0, y))));
      marks.push(mark);
    }
    replace(cursors, ...marks);
  };

  const deckInput = h("input", { type: "text", name: "deck", placeholder: "A, B, C (empty: 52 cards)", "data-testid": "cards-deck" });
  const master = owner
    ? h(
        "div",
        { class: "stack" },
        h(
          "div",
          { class: "row", role: "group", "aria-label": "Master's controls" },
          h("button", { type: "button", "data-testid": "cards-start", onclick: () => void act({ case: "startRound", value: {} }) }, "Deal a round"),
          h("button", { type: "button", class: "secondary", "data-testid": "cards-reveal-all", onclick: () => void act({ case: "revealAll", value: {} }) }, "Reveal all"),
          h("button", { type: "button", class: "secondary", "data-testid": "cards-reset", onclick: () => void act({ case: "reset", value: {} }) }, "Reset the table"),
        ),
        h(
          "form",
          {
            class: "row",
            onsubmit: (ev: Event) => {
              ev.preventDefault();
              const faces = deckInput.value.split(",").map((s) => s.trim()).filter(Boolean);
              void act({ case: "setDeck", value: { faces } });
            },
          },
          field("Deck faces, comma separated", deckInput),
          h("button", { type: "submit", class: "secondary", "data-testid": "cards-set-deck" }, "Set the deck"),
        ),
      )
    : null;

  const el = h(
    "section",
    { class: "panel", "aria-labelledby": "cards-h" },
    h("h2", { id: "cards-h" }, "Card table"),
    owner ? h("p", { class: "hint" }, "You are the master: you deal, and may flip any card at any time.") : null,
    watcher ? h("p", { class: "hint" }, "You are watching.") : null,
    status,
    h("div", { class: "row" }, turn, timer),
    master,
    error,
    table,
    h("h3", null, "Flips"),
    log,
    h("h3", null, "Fairness"),
    fair.el,
    owner ? revealSeedButton(ctx) : null,
  );
  renderCards();

  return {
    el,
    view(v: GameView) {
      fair.set(v.fairness);
      if (v.view.case === "cards") applyView(v.view.value);
    },
    update(u: GameUpdate) {
      if (u.update.case === "cards") apply(u.update.value);
      else if (u.update.case === "seedRevealed") {
        fair.revealed(u.update.value);
        note("The seed was revealed: this room's shuffles can now be checked.");
      }
    },
    membersChanged() {
      renderCursors();
      renderStatus();
    },
    destroy() {
      clearInterval(tick);
    },
  };
}
