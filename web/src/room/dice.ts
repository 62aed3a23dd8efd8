// Kind "dice": a tabletop session. Rolls show every die (kept, dropped, exploded,
// rerolled); rolls to the DM and hidden rolls show as a notice to those who may not see
// them, and the roller and the DM get the dice as hidden detail (seq 0) after it.
import { field, formatTime, h, replace } from "../dom.ts";
import type { DiceUpdate, Die, GameUpdate, GameView, HiddenRoll, RollResult, RollTerm, SeedRevealed } from "../proto.ts";
import { RollVisibility } from "../proto.ts";
import { fairnessBox, revealSeedButton } from "./fair.ts";
import { isOwner, isWatcher, num, type KindPanel, type RoomCtx } from "./kind.ts";

const MAX_LOG = 200;

const VIS_TEXT: Record<number, string> = {
  [RollVisibility.UNSPECIFIED]: "public",
  [RollVisibility.PUBLIC]: "public",
  [RollVisibility.TO_DM]: "to the DM",
  [RollVisibility.HIDDEN]: "hidden (DM only)",
};

function dieEl(d: Die, group: string): HTMLElement {
  const notes: string[] = [];
  if (d.dropped) notes.push("dropped");
  if (d.exploded) notes.push("exploded");
  if (d.fromExplosion) notes.push("from an explosion");
  if (d.rerolledFrom.length) notes.push(`rerolled from ${d.rerolledFrom.join(", ")}`);
  const cls = ["die", d.dropped ? "dropped" : "kept", d.exploded ? "exploded" : "", d.fromExplosion ? "from-explosion" : ""];
  return h(
    "span",
    {
      class: cls.filter(Boolean).join(" "),
      "data-testid": "die",
      "data-value": d.value,
      "data-sides": group,
      "data-dropped": String(d.dropped),
      "data-kept": String(!d.dropped),
      "data-exploded": String(d.exploded),
      title: notes.join(", ") || "kept",
    },
    String(d.value),
    d.rerolledFrom.length ? h("span", { class: "rerolled", "aria-hidden": "true" }, d.rerolledFrom.join(",")) : null,
    h("span", { class: "visually-hidden" }, notes.length ? ` (${notes.join(", ")})` : " (kept)"),
  );
}

function termEl(t: RollTerm, first: boolean): HTMLElement {
  const sign = t.negative ? "−" : first ? "" : "+";
  const signEl = sign ? h("span", { "aria-hidden": "true" }, sign) : null;
  const spokenSign = t.negative ? h("span", { class: "visually-hidden" }, "minus ") : null;
  switch (t.term.case) {
    case "dice": {
      const g = t.term.value;
      const label = `${g.count}d${g.sides}${g.modifiers}`;
      return h(
        "span",
        { class: "dice-group", "data-testid": "dice-group", "data-subtotal": num(g.subtotal) },
        signEl,
        spokenSign,
        h("span", { class: "group-label" }, `${label}:`),
        ...g.dice.map((d) => dieEl(d, String(g.sides))),
        h("span", { class: "group-label" }, `= ${num(g.subtotal)}`),
      );
    }
    case "constant":
      return h("span", { class: "dice-group", "data-testid": "dice-constant" }, signEl, spokenSign, String(num(t.term.value)));
    case "variable":
      return h(
        "span",
        { class: "dice-group", "data-testid": "dice-variable" },
        signEl,
        spokenSign,
        `@${t.term.value.name} (${num(t.term.value.value)})`,
      );
    default:
      return h("span", null, "?");
  }
}

export function rollEl(r: RollResult, name: (id: string) => string): HTMLElement {
  const vis = r.visibility;
  const secret = vis === RollVisibility.TO_DM || vis === RollVisibility.HIDDEN;
  return h(
    "li",
    {
      "data-testid": "roll",
      "data-nonce": String(r.nonce),
      "data-total": String(num(r.total)),
      "data-roller-id": r.rollerId,
      "data-visibility": VIS_TEXT[vis] ?? "public",
    },
    h(
      "div",
      { class: "roll-head" },
      h("strong", null, r.rollerName || name(r.rollerId)),
      h("span", null, r.label ? `${r.label}: ` : "rolled ", h("code", null, r.notation)),
      secret ? h("span", { class: "badge vis-tag" }, VIS_TEXT[vis]) : null,
      h("span", { class: "muted" }, formatTime(num(r.atMs))),
      h("span", { class: "visually-hidden" }, "total"),
      h("span", { class: "roll-total", "data-testid": "roll-total" }, String(num(r.total))),
    ),
    h("div", { class: "dice-terms" }, ...r.terms.map((t, i) => termEl(t, i === 0))),
  );
}

function hiddenEl(x: HiddenRoll, name: (id: string) => string): HTMLElement {
  return h(
    "li",
    { "data-testid": "hidden-roll", "data-nonce": String(x.nonce), "data-roller-id": x.rollerId, class: "hidden-roll" },
    `${name(x.rollerId)} made a hidden roll${x.label ? ` (${x.label})` : ""}.`,
    " ",
    h("span", { class: "muted" }, formatTime(num(x.atMs))),
  );
}

function seedEl(s: SeedRevealed): HTMLElement {
  return h(
    "li",
    { "data-testid": "seed-revealed" },
    h("strong", null, "Seed revealed"),
    ` for draws ${num(s.firstNonce)} to ${Math.max(0, num(s.lastNonce) - 1)}: `,
    h("code", { class: "fairness" }, s.seed),
    h("div", { class: "fairness" }, `It answers commitment ${s.seedCommitment}; the next is ${s.nextCommitment}.`),
  );
}

/** "str=3, dex=-1" as a map; throws with a readable message. */
function parseVariables(text: string): Record<string, bigint> {
  const out: Record<string, bigint> = {};
  for (const part of text.split(/[,\n;]+/)) {
    const p = part.trim();
    if (!p) continue;
    const m = /^@?([A-Za-z_][A-Za-z0-9_]*)\s*[=:]\s*([+-]?\d+)$/.exec(p);
    if (!m) throw new Error(`"${p}" is not name=number`);
    out[m[1]!.toLowerCase()] = BigInt(m[2]!);
  }
  return out;
}

export function dicePanel(ctx: RoomCtx): KindPanel {
  const log = h("ol", {
    class: "game-log",
    tabindex: 0,
    "aria-live": "polite",
    "aria-relevant": "additions",
    "aria-label": "Rolls, newest last",
    "data-testid": "dice-log",
  });
  const byNonce = new Map<string, HTMLElement>();
  const variables = new Map<string, Record<string, bigint>>();
  const varsList = h("ul", { class: "muted", "data-testid": "dice-variables-list" });
  const fair = fairnessBox();
  const error = h("p", { class: "error", role: "alert", "data-testid": "dice-error" });

  const watcher = isWatcher(ctx);
  const notation = h("input", {
    type: "text",
    name: "notation",
    value: "1d20",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    maxlength: 200,
    "data-testid": "dice-notation",
  });
  const label = h("input", { type: "text", name: "label", maxlength: 64, "data-testid": "dice-label" });
  const visibility = h(
    "select",
    { name: "visibility", "data-testid": "dice-visibility" },
    h("option", { value: String(RollVisibility.PUBLIC) }, "Public"),
    h("option", { value: String(RollVisibility.TO_DM) }, "To the DM"),
    // Only the DM rolls hidden (the server refuses anyone else).
    isOwner(ctx) ? h("option", { value: String(RollVisibility.HIDDEN) }, "Hidden (DM only)") : null,
  );
  const rollBtn = h("button", { type: "submit", "data-testid": "dice-roll", disabled: watcher }, "Roll");

  const roll = async (n: string) => {
    error.textContent = "";
    try {
      await ctx.action({
        case: "dice",
        value: {
          action: {
            case: "roll",
            value: { notation: n, label: label.value.trim(), visibility: Number(visibility.value) },
          },
        },
      });
    } catch (e) {
      error.textContent = (e as Error).message;
    }
  };
  const form = h(
    "form",
    {
      class: "stack",
      "data-testid": "dice-form",
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        const n = notation.value.trim();
        if (n) void roll(n);
      },
    },
    h(
      "div",
      { class: "row" },
      field("Notation", notation, "e.g. 2d20kh1+5, 4d6dl1, 3d6!, 1d20+@str"),
      field("Label", label),
      field("Visibility", visibility),
      rollBtn,
    ),
  );
  const quick = h(
    "div",
    { class: "row", role: "group", "aria-label": "Quick rolls" },
    ...[4, 6, 8, 10, 12, 20, 100].map((s) =>
      h(
        "button",
        {
          type: "button",
          class: "secondary small",
          "data-testid": `dice-quick-d${s}`,
          disabled: watcher,
          onclick: () => void roll(`1d${s}`),
        },
        `d${s}`,
      ),
    ),
  );

  const varsInput = h("input", { type: "text", name: "variables", placeholder: "str=3, dex=-1", "data-testid": "dice-variables" });
  const varsForm = h(
    "form",
    {
      class: "row",
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        error.textContent = "";
        try {
          const values = parseVariables(varsInput.value);
          await ctx.action({ case: "dice", value: { action: { case: "setVariables", value: { values } } } });
        } catch (e) {
          error.textContent = (e as Error).message;
        }
      },
    },
    field("My values (for @name)", varsInput),
    h("button", { type: "submit", class: "secondary", "data-testid": "dice-set-variables", disabled: watcher }, "Set values"),
  );

  const renderVars = () => {
    replace(
      varsList,
      ...[...variables].map(([u, vals]) => {
        const entries = Object.entries(vals);
        return h(
          "li",
          { "data-user-id": u },
          `${ctx.name(u)}: `,
          entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(", ") : "none",
        );
      }),
    );
    const mine = variables.get(ctx.me);
    if (mine && document.activeElement !== varsInput) {
      varsInput.value = Object.entries(mine).map(([k, v]) => `${k}=${v}`).join(", ");
    }
  };

  const add = (u: DiceUpdate, announce: boolean) => {
    switch (u.update.case) {
      case "rolled": {
        const r = u.update.value;
        const el = rollEl(r, ctx.name);
        const key = String(r.nonce);
        const old = byNonce.get(key);
        if (old) old.replaceWith(el);
        else log.appendChild(el);
        byNonce.set(key, el);
        if (announce && old) ctx.announce(`${r.rollerName} rolled ${r.notation}: ${num(r.total)}`);
        break;
      }
      case "hiddenRoll": {
        const key = String(u.update.value.nonce);
        if (byNonce.has(key)) break; // we have the dice already
        const el = hiddenEl(u.update.value, ctx.name);
        log.appendChild(el);
        byNonce.set(key, el);
        break;
      }
      case "variablesSet":
        variables.set(u.update.value.userId, { ...u.update.value.values });
        renderVars();
        break;
      default:
        break;
    }
    while (log.children.length > MAX_LOG) {
      const first = log.firstElementChild as HTMLElement;
      if (first.dataset.nonce) byNonce.delete(first.dataset.nonce);
      first.remove();
    }
    log.scrollTop = log.scrollHeight;
  };

  const owner = isOwner(ctx);
  const el = h(
    "section",
    { class: "panel", "aria-labelledby": "dice-h" },
    h("h2", { id: "dice-h" }, "Dice"),
    watcher ? h("p", { class: "hint" }, "You are watching: watchers neither roll nor set values.") : null,
    owner ? h("p", { class: "hint" }, "You are the DM: you see every roll, hidden ones included.") : null,
    form,
    quick,
    varsForm,
    error,
    h("h3", null, "Rolls"),
    log,
    h("h3", null, "Values"),
    varsList,
    h("h3", null, "Fairness"),
    fair.el,
    owner ? revealSeedButton(ctx) : null,
  );

  return {
    el,
    view(v: GameView) {
      fair.set(v.fairness);
      if (v.view.case !== "dice") return;
      replace(log);
      byNonce.clear();
      variables.clear();
      for (const vs of v.view.value.variables) variables.set(vs.userId, { ...vs.values });
      for (const u of v.view.value.history) add(u, false);
      renderVars();
    },
    update(u: GameUpdate) {
      if (u.update.case === "dice") add(u.update.value, true);
      else if (u.update.case === "seedRevealed") {
        log.appendChild(seedEl(u.update.value));
        fair.revealed(u.update.value);
      }
      if (u.update.case === "dice" && u.update.value.update.case === "rolled") fair.drew(u.update.value.update.value.nonce);
      if (u.update.case === "dice" && u.update.value.update.case === "hiddenRoll") fair.drew(u.update.value.update.value.nonce);
    },
    membersChanged() {
      renderVars();
    },
    destroy() {},
  };
}
