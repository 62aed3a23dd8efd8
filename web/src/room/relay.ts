// Any other relay kind ("table", ...): the room passes opaque game events on. Shows them,
// and sends one as text.
import { field, formatTime, h } from "../dom.ts";
import type { GameEventMessage } from "../sdk.ts";
import { isWatcher, type KindPanel, type RoomCtx } from "./kind.ts";

const decoder = new TextDecoder("utf-8", { fatal: true });
const show = (p: Uint8Array): string => {
  if (p.length === 0) return "(empty)";
  try {
    const t = decoder.decode(p);
    if (/^[\P{Cc}\n\t]*$/u.test(t)) return t.length > 200 ? `${t.slice(0, 200)}…` : t;
  } catch {
    /* not text */
  }
  return [...p.slice(0, 64)].map((b) => b.toString(16).padStart(2, "0")).join(" ") + (p.length > 64 ? " …" : "");
};

export function relayPanel(ctx: RoomCtx): KindPanel {
  const log = h("ol", { class: "game-log", tabindex: 0, "aria-live": "polite", "aria-label": "Game events, newest last", "data-testid": "event-log" });
  const type = h("input", { type: "text", name: "type", value: "message", required: true, maxlength: 64, "data-testid": "event-type" });
  const payload = h("input", { type: "text", name: "payload", "data-testid": "event-payload" });
  const watcher = isWatcher(ctx);
  const el = h(
    "section",
    { class: "panel", "aria-labelledby": "relay-h" },
    h("h2", { id: "relay-h" }, `Game events (${ctx.kind})`),
    h("p", { class: "hint" }, "This kind of room relays its members' game events as they are."),
    h(
      "form",
      {
        class: "row",
        onsubmit: (ev: Event) => {
          ev.preventDefault();
          if (type.value.trim()) ctx.sendEvent(type.value.trim(), new TextEncoder().encode(payload.value));
        },
      },
      field("Event type", type),
      field("Payload (text)", payload),
      h("button", { type: "submit", "data-testid": "event-send", disabled: watcher }, "Send event"),
    ),
    log,
  );
  return {
    el,
    event(e: GameEventMessage) {
      log.appendChild(
        h(
          "li",
          { "data-testid": "game-event", "data-type": e.type, "data-user-id": e.senderId },
          h("span", { class: "muted" }, formatTime(e.sentAtMs), " "),
          h("strong", null, ctx.name(e.senderId)),
          " ",
          h("code", null, e.type),
          ": ",
          show(e.payload),
        ),
      );
      while (log.children.length > 200) log.firstElementChild!.remove();
      log.scrollTop = log.scrollHeight;
    },
    destroy() {},
  };
}
