// A room's members with their roles and presence, my own presence, and the owner's
// (and staff's) moderation buttons.
import { field, h, replace } from "../dom.ts";
import type { Member, PresenceStatus, Room } from "../sdk.ts";

const ROLE_TEXT = { owner: "owner", player: "player", watcher: "watcher" } as const;

export function membersPanel(
  room: Room,
  opts: {
    me: () => string;
    staff: boolean;
    kindRoleName: (role: Member["role"]) => string;
    describe: (e: unknown) => string;
  },
) {
  const list = h("ul", { class: "member-list", "data-testid": "member-list", "aria-labelledby": "members-h" });
  const count = h("span", { class: "muted", "data-testid": "member-count" });
  const error = h("p", { class: "error", role: "alert" });

  const status = h(
    "select",
    {
      "data-testid": "presence-status",
      onchange: () => {
        room.setPresence(status.value as PresenceStatus).catch((e: unknown) => (error.textContent = opts.describe(e)));
      },
    },
    h("option", { value: "online" }, "Online"),
    h("option", { value: "away" }, "Away"),
    h("option", { value: "busy" }, "Busy"),
  );

  const moderate = async (m: Member, action: "kick" | "ban" | "mute" | "unmute") => {
    error.textContent = "";
    try {
      await room.moderate(m.userId, action);
    } catch (e) {
      error.textContent = opts.describe(e);
    }
  };

  const render = () => {
    const me = opts.me();
    const mine = room.members.get(me);
    if (mine && document.activeElement !== status) status.value = mine.status;
    const canModerate = room.yourRole === "owner" || opts.staff;
    const order = { owner: 0, player: 1, watcher: 2 } as const;
    const members = [...room.members.values()].sort(
      (a, b) => order[a.role] - order[b.role] || a.name.localeCompare(b.name),
    );
    count.textContent = `${members.length} of ${room.info.maxMembers || "?"}`;
    replace(
      list,
      ...members.map((m) =>
        h(
          "li",
          {
            "data-testid": "member",
            "data-user-id": m.userId,
            "data-role": m.role,
            "data-status": m.status,
            "data-muted": String(m.muted),
          },
          h("span", { class: "presence-dot", "data-status": m.status, "aria-hidden": "true" }),
          h("span", { class: "member-name" }, m.name || m.userId),
          m.userId === me ? h("span", { class: "muted" }, "(you)") : null,
          h("span", { class: `badge ${m.role}`, title: `room role: ${ROLE_TEXT[m.role]}` }, opts.kindRoleName(m.role)),
          h("span", { class: "visually-hidden" }, `, ${m.status}`),
          m.status !== "online" ? h("span", { class: "badge", "aria-hidden": "true" }, m.status) : null,
          m.muted ? h("span", { class: "badge muted-badge" }, "muted") : null,
          canModerate && m.userId !== me && m.role !== "owner"
            ? h(
                "span",
                { class: "member-actions" },
                h(
                  "button",
                  {
                    type: "button",
                    class: "secondary small",
                    "data-testid": "member-mute",
                    "aria-label": `${m.muted ? "Unmute" : "Mute"} ${m.name}`,
                    onclick: () => void moderate(m, m.muted ? "unmute" : "mute"),
                  },
                  m.muted ? "Unmute" : "Mute",
                ),
                h(
                  "button",
                  {
                    type: "button",
                    class: "danger small",
                    "data-testid": "member-kick",
                    "aria-label": `Kick ${m.name}`,
                    onclick: () => void moderate(m, "kick"),
                  },
                  "Kick",
                ),
              )
            : null,
        ),
      ),
    );
  };

  const el = h(
    "section",
    { class: "panel", "aria-labelledby": "members-h" },
    h("h2", { id: "members-h" }, "Members ", count),
    list,
    field("My status", status),
    error,
  );
  render();
  return { el, render };
}
