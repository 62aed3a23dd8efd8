// A room's chat: the recent history from the snapshot, then live lines.
import { formatTime, h, replace } from "../dom.ts";
import type { ChatLine, Room } from "../sdk.ts";

const MAX_LINES = 300;

export function chatPanel(room: Room, me: () => string, describe: (e: unknown) => string) {
  const log = h("ol", {
    class: "chat-log",
    "aria-live": "polite",
    "aria-relevant": "additions",
    "aria-labelledby": "chat-h",
    "data-testid": "chat-log",
    tabindex: 0,
  });
  const input = h("input", {
    type: "text",
    name: "chat",
    autocomplete: "off",
    maxlength: 2000,
    "aria-label": "Message",
    placeholder: "Say something…",
    "data-testid": "chat-input",
  });
  const send = h("button", { type: "submit", "data-testid": "chat-send" }, "Send");
  const error = h("p", { class: "error", role: "alert", "data-testid": "chat-error" });

  const lineEl = (c: ChatLine) =>
    h(
      "li",
      {
        "data-testid": "chat-message",
        "data-user-id": c.fromUserId,
        "data-seq": c.seq || null,
        class: c.fromUserId === me() ? "mine" : null,
      },
      c.sentAtMs ? h("time", { class: "time", datetime: new Date(c.sentAtMs).toISOString() }, formatTime(c.sentAtMs)) : null,
      h("span", { class: "from" }, c.fromName || c.fromUserId),
      h("span", { class: "visually-hidden" }, " says"),
      ": ",
      h("span", { class: "text" }, c.text),
    );

  const atBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  const add = (node: HTMLElement) => {
    const stick = atBottom();
    log.appendChild(node);
    while (log.children.length > MAX_LINES) log.firstElementChild!.remove();
    if (stick) log.scrollTop = log.scrollHeight;
  };

  const redraw = () => {
    replace(log, ...room.chat.map(lineEl));
    if (room.settings.welcomeMessage) {
      log.prepend(h("li", { class: "system", "data-testid": "welcome-message" }, room.settings.welcomeMessage));
    }
    log.scrollTop = log.scrollHeight;
  };

  const form = h(
    "form",
    {
      class: "chat-form",
      "data-testid": "chat-form",
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        const text = input.value.trim();
        if (!text) return;
        error.textContent = "";
        send.disabled = true;
        try {
          input.value = "";
          await room.sendChat(text);
        } catch (e) {
          input.value = text;
          error.textContent = describe(e);
        } finally {
          send.disabled = false;
          input.focus();
        }
      },
    },
    input,
    send,
  );

  const el = h(
    "section",
    { class: "panel", "aria-labelledby": "chat-h", "data-testid": "chat" },
    h("h2", { id: "chat-h" }, "Chat"),
    log,
    form,
    error,
  );
  redraw();

  const offs = [room.on("chat", (c) => add(lineEl(c)))];
  return {
    el,
    redraw,
    /** A line from the room itself (joins, leaves, moderation). */
    system(text: string) {
      add(h("li", { class: "system", "data-testid": "chat-system" }, text));
    },
    destroy() {
      for (const off of offs) off();
    },
  };
}
