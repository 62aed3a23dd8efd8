// Kind "trivia": a live quiz. The host (owner) starts; players buzz, and the one who holds
// the answer picks it before their timer runs out.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { TriviaActionSchema } from "../proto.ts";
import { h, replace } from "../dom.ts";
import { applyGameUpdate } from "../sdk.ts";
import type { GameUpdate, GameView, TriviaUpdate, TriviaView } from "../proto.ts";
import { TriviaView_Phase } from "../proto.ts";
import { isOwner, isWatcher, num, type KindPanel, type RoomCtx } from "./kind.ts";

const PHASE: Record<number, string> = {
  [TriviaView_Phase.UNSPECIFIED]: "waiting",
  [TriviaView_Phase.LOBBY]: "lobby",
  [TriviaView_Phase.BUZZING]: "buzzing",
  [TriviaView_Phase.ANSWERING]: "answering",
  [TriviaView_Phase.REVEALED]: "revealed",
  [TriviaView_Phase.OVER]: "over",
};

export function triviaPanel(ctx: RoomCtx, ownerId: () => string): KindPanel {
  let view: GameView | undefined;
  /** Who has buzzed on the current question (they may not buzz again). */
  let buzzedOn = new Set<string>();
  let buzzedFor = -1;
  /** The open buzz window, from the question (buzzes are taken until it closes). */
  let windowClosesAt = 0;

  const host = isOwner(ctx);
  const watcher = isWatcher(ctx);
  const phaseEl = h("p", { "data-testid": "trivia-phase" });
  const progress = h("p", { class: "muted", "data-testid": "trivia-progress" });
  const question = h("p", { class: "question", "data-testid": "trivia-question", "aria-live": "polite" });
  const answers = h("div", { class: "answers", role: "group", "aria-label": "Answers", "data-testid": "trivia-answers" });
  const timerText = h("span", { class: "timer", "data-testid": "trivia-timer" });
  const timerBar = h("span");
  const timerWrap = h("div", { class: "timer-bar", "aria-hidden": "true" }, timerBar);
  const queue = h("ol", { class: "muted", "data-testid": "trivia-queue", "aria-label": "Buzz order" });
  const scores = h("ol", { class: "scores", "data-testid": "trivia-scores", "aria-label": "Scores" });
  const log = h("ol", { class: "game-log", tabindex: 0, "aria-live": "polite", "aria-label": "What happened, newest last", "data-testid": "trivia-log" });
  const error = h("p", { class: "error", role: "alert", "data-testid": "trivia-error" });

  const act = async (value: MessageInitShape<typeof TriviaActionSchema>["action"]) => {
    error.textContent = "";
    try {
      await ctx.action({ case: "trivia", value: { action: value } });
    } catch (e) {
      error.textContent = (e as Error).message;
    }
  };

  const hostHint = h("p", { class: "hint" }, "You are the host: you start the game and do not play.");
  const buzz = h(
    "button",
    {
      type: "button",
      "data-testid": "trivia-buzz",
      onclick: () => {
        const t = tv();
        if (t?.current) void act({ case: "buzz", value: { question: t.current.index } });
      },
    },
    "Buzz",
  );
  const start = h(
    "button",
    { type: "button", "data-testid": "trivia-start", onclick: () => void act({ case: "start", value: {} }) },
    "Start the game",
  );

  const tv = (): TriviaView | undefined => (view?.view.case === "trivia" ? view.view.value : undefined);
  const answering = (t: TriviaView) => t.queue.find((q) => q.answering);

  const say = (text: string, attrs: Record<string, string> = {}) => {
    log.appendChild(h("li", attrs, text));
    while (log.children.length > 100) log.firstElementChild!.remove();
    log.scrollTop = log.scrollHeight;
  };

  const render = () => {
    const t = tv();
    if (!t) {
      phaseEl.textContent = "Waiting for the game…";
      return;
    }
    const phase = t.phase;
    const holder = answering(t);
    const iHold = holder?.userId === ctx.me;
    phaseEl.dataset.phase = PHASE[phase] ?? "waiting";
    phaseEl.textContent =
      phase === TriviaView_Phase.LOBBY || phase === TriviaView_Phase.UNSPECIFIED
        ? t.autoStartPlayers
          ? `Waiting for ${t.autoStartPlayers} players to start.`
          : host
            ? "Start the game when the players are in."
            : "Waiting for the host to start."
        : phase === TriviaView_Phase.BUZZING
          ? "Buzz if you know the answer!"
          : phase === TriviaView_Phase.ANSWERING
            ? iHold
              ? "You hold the answer: choose one."
              : `${ctx.name(holder?.userId ?? "")} is answering.`
            : phase === TriviaView_Phase.REVEALED
              ? "The answer is revealed. Next question soon."
              : "Game over.";

    const q = t.current;
    if (q && q.index !== buzzedFor) {
      buzzedFor = q.index;
      buzzedOn = new Set(t.queue.map((b) => b.userId));
      windowClosesAt = num(q.buzzClosesAtMs);
    }
    progress.textContent = q
      ? `Question ${q.index + 1} of ${t.questions}${q.category ? ` · ${q.category}` : ""}${q.difficulty ? ` · difficulty ${q.difficulty} of 5` : ""}`
      : t.questions
        ? `${t.questions} questions`
        : "";
    question.textContent = q ? q.text : phase === TriviaView_Phase.OVER ? "Thanks for playing." : "";
    question.dataset.index = q ? String(q.index) : "";
    const revealed = q ? t.revealed.find((r) => r.question === q.index) : undefined;
    replace(
      answers,
      ...(q?.answers ?? []).map((a, i) => {
        const right = revealed && revealed.correct === i;
        return h(
          "button",
          {
            type: "button",
            class: right ? "correct" : "",
            "data-testid": `trivia-answer-${i}`,
            "data-correct": revealed ? String(right) : null,
            disabled: !(iHold && phase === TriviaView_Phase.ANSWERING),
            onclick: () => void act({ case: "answer", value: { question: q!.index, choice: i } }),
          },
          `${String.fromCharCode(65 + i)}. ${a}`,
          right ? h("span", { class: "visually-hidden" }, " (correct)") : null,
        );
      }),
    );
    const canBuzz =
      !watcher &&
      (!host || isPlayerSeat(t)) &&
      !!q &&
      (phase === TriviaView_Phase.BUZZING || phase === TriviaView_Phase.ANSWERING) &&
      !buzzedOn.has(ctx.me) &&
      (windowClosesAt === 0 || ctx.serverNow() < windowClosesAt);
    buzz.disabled = !canBuzz;
    buzz.hidden = watcher || (host && !isPlayerSeat(t));
    hostHint.textContent = isPlayerSeat(t)
      ? "You are the host: you start the game, and you play too."
      : "You are the host: you start the game and do not play.";
    start.hidden = !host || !(phase === TriviaView_Phase.LOBBY || phase === TriviaView_Phase.UNSPECIFIED || phase === TriviaView_Phase.OVER);
    start.textContent = phase === TriviaView_Phase.OVER ? "Play again" : "Start the game";

    replace(
      queue,
      ...t.queue.map((b) =>
        h("li", { "data-user-id": b.userId }, ctx.name(b.userId), b.answering ? " (answering)" : ""),
      ),
    );
    const ordered = [...t.scores].sort((a, b) => a.place - b.place || Number(b.score - a.score));
    replace(
      scores,
      ...(ordered.length
        ? ordered.map((s) =>
            h(
              "li",
              { "data-user-id": s.userId, "data-score": String(num(s.score)), "data-place": s.place },
              h("span", null, phase === TriviaView_Phase.OVER ? `${s.place}.` : ""),
              h("span", null, ctx.name(s.userId), s.userId === ctx.me ? " (you)" : "", s.left ? " (left)" : ""),
              h("span", { class: "score" }, String(num(s.score))),
            ),
          )
        : [h("li", { class: "empty" }, "No scores yet.")]),
    );
    tickTimer();
  };

  /** The host plays only when the seats name them (a matchmade arena). */
  const isPlayerSeat = (t: TriviaView) => t.scores.some((s) => s.userId === ctx.me);

  const tickTimer = () => {
    const t = tv();
    let ends = 0;
    let total: number;
    let what = "";
    if (t?.phase === TriviaView_Phase.ANSWERING) {
      const hld = answering(t);
      ends = num(hld?.answerClosesAtMs);
      what = hld?.userId === ctx.me ? "to answer" : "for their answer";
    } else if (t?.phase === TriviaView_Phase.BUZZING && t.current) {
      ends = num(t.current.buzzClosesAtMs);
      what = "to buzz";
    }
    const left = ends ? Math.max(0, ends - ctx.serverNow()) : 0;
    // The window's length is not in the view: take it from when we first saw the deadline.
    if (ends && !timerTotals.has(ends)) timerTotals.set(ends, Math.max(left, 1));
    total = timerTotals.get(ends) ?? 1;
    timerText.textContent = ends ? `${Math.ceil(left / 1000)} s ${what}` : "";
    timerText.dataset.msLeft = String(Math.round(left));
    timerBar.style.setProperty("--left", String(ends ? Math.min(1, left / total) : 0));
    if (t?.phase === TriviaView_Phase.BUZZING && ends && left === 0) buzz.disabled = true;
  };
  /** Each deadline's length: the time left when it was first seen. */
  const timerTotals = new Map<number, number>();
  const ticker = setInterval(tickTimer, 200);

  const narrate = (u: TriviaUpdate) => {
    const x = u.update;
    switch (x.case) {
      case "started":
        replace(log);
        say(`The game starts: ${x.value.questions} questions, ${x.value.players.length} players.`);
        break;
      case "asked":
        say(`Question ${x.value.index + 1}: ${x.value.text}`);
        break;
      case "buzzed":
        if (x.value.answering) say(`${ctx.name(x.value.userId)} buzzed and answers.`, { "data-testid": "trivia-buzzed", "data-user-id": x.value.userId });
        else say(`${ctx.name(x.value.userId)} buzzed (${x.value.position}).`, { "data-testid": "trivia-buzzed", "data-user-id": x.value.userId });
        break;
      case "judged": {
        const j = x.value;
        const pts = num(j.points);
        say(
          `${ctx.name(j.userId)} ${j.correct ? "is right" : j.timedOut ? "ran out of time" : "is wrong"} (${pts > 0 ? "+" : ""}${pts}), score ${num(j.score)}.`,
          { "data-testid": "trivia-judged", "data-user-id": j.userId, "data-correct": String(j.correct) },
        );
        break;
      }
      case "revealed": {
        const t = tv();
        const q = t?.current && t.current.index === x.value.question ? t.current : undefined;
        const answer = q?.answers[x.value.correct] ?? `answer ${x.value.correct + 1}`;
        say(
          `The answer was ${answer}.${x.value.wonBy ? ` ${ctx.name(x.value.wonBy)} takes it.` : " Nobody got it."}`,
          { "data-testid": "trivia-revealed" },
        );
        break;
      }
      case "over": {
        const first = x.value.standings.filter((s) => s.place === 1).map((s) => ctx.name(s.userId));
        say(`Game over. ${first.length ? `Winner: ${first.join(" and ")}.` : ""}`, { "data-testid": "trivia-over" });
        break;
      }
      default:
        break;
    }
  };

  const el = h(
    "section",
    { class: "panel", "aria-labelledby": "trivia-h" },
    h("h2", { id: "trivia-h" }, "Trivia"),
    host ? hostHint : null,
    watcher ? h("p", { class: "hint" }, "You are watching.") : null,
    phaseEl,
    h("div", { class: "row" }, start, buzz, timerText),
    timerWrap,
    progress,
    question,
    answers,
    error,
    h("div", { class: "grid-2" },
      h("div", null, h("h3", null, "Scores"), scores),
      h("div", null, h("h3", null, "Buzzers"), queue),
    ),
    h("h3", null, "Game log"),
    log,
  );
  render();

  return {
    el,
    view(v: GameView) {
      view = v;
      buzzedFor = -1;
      render();
    },
    update(u: GameUpdate) {
      if (!view || u.update.case !== "trivia") return;
      view = applyGameUpdate(view, u, { serverNow: () => ctx.serverNow(), ownerId: ownerId() });
      const x = u.update.value.update;
      if (x.case === "asked") buzzedFor = -1;
      if (x.case === "buzzed") buzzedOn.add(x.value.userId);
      render();
      narrate(u.update.value);
    },
    membersChanged() {
      render();
    },
    destroy() {
      clearInterval(ticker);
    },
  };
}
