// #/room/<id>: one room. The kind's panel, the chat and the member list, kept live from
// the room's events.
import { client, describe, errorCode, isStaff, nameOf, onNames, rememberName, rest, state } from "../app.ts";
import type { TournamentJson } from "../bracket.ts";
import { announce as toast, field, h, replace } from "../dom.ts";
import { navigate, type Page } from "../router.ts";
import type { LeaveReason, Member, Room } from "../sdk.ts";
import { cardsPanel } from "../room/cards.ts";
import { chatPanel } from "../room/chat.ts";
import { dicePanel } from "../room/dice.ts";
import type { GameActionOneof, KindPanel, RoomCtx } from "../room/kind.ts";
import { matchPanel } from "../room/match.ts";
import { membersPanel } from "../room/members.ts";
import { pianoPanel } from "../room/piano.ts";
import { relayPanel } from "../room/relay.ts";
import { triviaPanel } from "../room/trivia.ts";
import { tournamentRoomPanel } from "../room/tournament.ts";

const LEFT_TEXT: Record<LeaveReason, string> = {
  left: "You left the room.",
  disconnected: "You were disconnected from the room.",
  kicked: "You were removed from the room.",
  banned: "You were banned from the room.",
  replaced: "You joined this room from another tab or device.",
  closed: "The room was closed.",
};

export function roomHref(roomId: string, tournamentId?: string): string {
  return `#/room/${encodeURIComponent(roomId)}${tournamentId ? `?t=${encodeURIComponent(tournamentId)}` : ""}`;
}

/** The room's role names in this kind's words. */
function roleName(kind: string, role: Member["role"]): string {
  if (role === "owner") {
    return kind === "dice" ? "DM" : kind === "cards" ? "master" : kind === "trivia" ? "host" : kind === "tournament" ? "organizer" : "owner";
  }
  return role;
}

const KIND_TITLE: Record<string, string> = {
  piano: "Piano",
  dice: "Dice",
  cards: "Cards",
  trivia: "Trivia",
  match: "Match",
  tournament: "Tournament",
};

export function roomPage(root: HTMLElement, id: string, params: URLSearchParams): Page {
  let room: Room | undefined;
  let disposed = false;
  const offs: (() => void)[] = [];
  const tournamentParam = params.get("t") ?? undefined;
  if (tournamentParam) state.tournamentOfRoom.set(id, tournamentParam);

  const showJoinError = (e: unknown, retry: (password: string, watch: boolean) => void) => {
    const code = errorCode(e);
    const pw = h("input", { type: "password", name: "password", autocomplete: "off", "data-testid": "room-password" });
    const watch = h("input", { type: "checkbox", "data-testid": "room-watch" });
    watch.type = "checkbox";
    replace(
      root,
      h(
        "section",
        { class: "panel", "aria-labelledby": "join-h" },
        h("h1", { id: "join-h" }, "Join the room"),
        h("p", { class: "error", role: "alert", "data-testid": "room-error" }, describe(e)),
        code === "WRONG_PASSWORD" || code === "ROOM_FULL" || code === "FORBIDDEN"
          ? h(
              "form",
              {
                class: "stack",
                onsubmit: (ev: Event) => {
                  ev.preventDefault();
                  retry(pw.value, watch.checked);
                },
              },
              code === "WRONG_PASSWORD" ? field("Room password", pw) : null,
              h("div", { class: "field field-check" }, watch, h("label", { for: (watch.id = "join-watch") }, "Join as a watcher")),
              h("button", { type: "submit", "data-testid": "room-join-retry" }, "Join"),
            )
          : null,
        h("p", null, h("a", { href: "#/lobby", "data-testid": "back-to-lobby" }, "Back to the lobby")),
      ),
    );
    root.querySelector<HTMLElement>("input, button")?.focus();
  };

  const join = async (password = "", watch = false) => {
    replace(root, h("p", { class: "loading", role: "status" }, "Joining the room…"));
    try {
      const r =
        state.room && state.room.id === id && state.room.joined
          ? state.room
          : await client.joinRoom({ id }, { password, role: watch ? "watcher" : undefined });
      if (disposed) {
        if (r !== state.room) void r.leave().catch(() => undefined);
        return;
      }
      state.room = r;
      room = r;
      mount(r);
    } catch (e) {
      if (disposed) return;
      showJoinError(e, (p, w) => void join(p, w));
    }
  };

  const mount = (r: Room) => {
    let panel: KindPanel | undefined;
    const announcer = h("p", { class: "visually-hidden", "aria-live": "polite", "data-testid": "game-announcer" });
    const title = h("h1", { id: "room-title", "data-testid": "room-name" });
    const meta = h("p", { class: "muted", "data-testid": "room-meta" });
    const leave = h(
      "button",
      {
        type: "button",
        class: "danger",
        "data-testid": "leave-room",
        onclick: async () => {
          leave.disabled = true;
          try {
            await r.leave();
          } catch {
            /* gone anyway */
          }
          navigate("#/lobby");
        },
      },
      "Leave the room",
    );

    const renderHead = () => {
      title.textContent = r.info.name || "Room";
      const kind = KIND_TITLE[r.kind] ?? r.kind;
      const parts = [
        `${kind} room`,
        r.info.visibility === "private" ? "private" : "public",
        r.info.hasPassword ? "password" : "",
        r.info.status,
        `you are ${roleName(r.kind, r.yourRole ?? "player")}`,
      ].filter(Boolean);
      meta.textContent = parts.join(" · ");
      meta.dataset.kind = r.kind;
      meta.dataset.role = r.yourRole ?? "";
      codeEl.textContent = r.info.code;
      document.title = `${r.info.name} · Parlor`;
    };
    const codeEl = h("code", { "data-testid": "room-code-display" });
    const copy = h(
      "button",
      {
        type: "button",
        class: "secondary small",
        "data-testid": "copy-code",
        onclick: async () => {
          try {
            await navigator.clipboard.writeText(r.info.code);
            copy.textContent = "Copied";
          } catch {
            copy.textContent = "Select the code to copy it";
          }
          setTimeout(() => (copy.textContent = "Copy"), 1500);
        },
      },
      "Copy",
    );

    const chat = chatPanel(r, () => client.user?.id ?? "", describe);
    const members = membersPanel(r, {
      me: () => client.user?.id ?? "",
      staff: isStaff(),
      kindRoleName: (role) => roleName(r.kind, role),
      describe,
    });
    for (const m of r.members.values()) rememberName(m.userId, m.name);

    const ctx: RoomCtx = {
      roomId: r.id,
      kind: r.kind,
      me: client.user?.id ?? "",
      staff: isStaff(),
      myRole: () => r.yourRole ?? "player",
      members: () => r.members,
      name: (uid) => r.members.get(uid)?.name ?? nameOf(uid),
      action: async (a: GameActionOneof) => {
        try {
          await r.gameAction(a);
        } catch (e) {
          throw new Error(describe(e));
        }
      },
      sendEvent: (type, payload) => {
        r.sendEvent(type, payload).catch((e: unknown) => toast(describe(e)));
      },
      setCursor: (x, y) => {
        r.setPresence(undefined, { x, y }).catch(() => undefined);
      },
      serverNow: () => client.serverNow(),
      tournamentId: () => state.tournamentOfRoom.get(r.id),
      announce: (text) => {
        announcer.textContent = text;
      },
    };

    const makePanel = (): KindPanel => {
      switch (r.kind) {
        case "piano":
          return pianoPanel(ctx);
        case "dice":
          return dicePanel(ctx);
        case "cards":
          return cardsPanel(ctx);
        case "trivia":
          return triviaPanel(ctx, () => r.info.ownerId);
        case "match":
          return matchPanel(ctx, {
            ownerId: () => r.info.ownerId,
            getTournament: (tid) => getTournament(tid, r.id),
            roomHref,
          });
        case "tournament":
          return tournamentRoomPanel(ctx, { getTournament: (tid) => getTournament(tid, r.id), roomHref });
        default:
          return relayPanel(ctx);
      }
    };
    const rebuildPanel = () => {
      panel?.destroy();
      panel = makePanel();
      replace(main, panel.el);
      if (r.game) panel.view?.(r.game);
    };

    const main = h("div", { class: "room-main" });
    replace(
      root,
      h(
        "div",
        { class: "room", "data-testid": "room", "data-room-id": r.id, "data-kind": r.kind },
        h(
          "div",
          { class: "room-head" },
          title,
          h("span", { class: "badge" }, KIND_TITLE[r.kind] ?? r.kind),
          h("span", { class: "spacer" }),
          h("span", null, "Code ", codeEl, " ", copy),
          leave,
        ),
        meta,
        announcer,
        h(
          "div",
          { class: "room-layout" },
          main,
          h("aside", { class: "side", "aria-label": "Members and chat" }, members.el, chat.el),
        ),
      ),
    );
    renderHead();
    rebuildPanel();
    root.focus({ preventScroll: true });

    const membersChanged = () => {
      members.render();
      panel?.membersChanged?.();
    };
    /** Members whose kick or ban the chat has told, and whose leaving it need not tell. */
    const removedBy = new Set<string>();
    offs.push(
      r.on("member_joined", (m) => {
        rememberName(m.userId, m.name);
        chat.system(`${m.name} joined.`);
        membersChanged();
      }),
      r.on("member_left", (e) => {
        // A kick or ban was already told, with who did it, by its moderated line.
        if (removedBy.delete(e.userId)) return membersChanged();
        const who = e.member?.name ?? nameOf(e.userId);
        chat.system(`${who} ${e.reason === "kicked" ? "was removed" : e.reason === "banned" ? "was banned" : e.reason === "disconnected" ? "dropped out" : "left"}.`);
        membersChanged();
      }),
      r.on("member_updated", (e) => {
        rememberName(e.member.userId, e.member.name);
        if (e.member.userId === ctx.me && e.previous && e.previous.role !== e.member.role) {
          renderHead();
          rebuildPanel(); // my role changed (an heir became the owner): other controls
        }
        membersChanged();
      }),
      r.on("moderated", (m) => {
        if (m.action === "kick" || m.action === "ban") removedBy.add(m.userId);
        chat.system(`${nameOf(m.userId)} was ${m.action === "kick" ? "kicked" : m.action === "ban" ? "banned" : m.action === "mute" ? "muted" : m.action === "unmute" ? "unmuted" : "unbanned"} by ${nameOf(m.byUserId)}${m.reason ? `: ${m.reason}` : ""}.`);
      }),
      r.on("game_event", (e) => panel?.event?.(e)),
      r.on("game_update", (e) => panel?.update?.(e.update, BigInt(e.seq))),
      r.on("game_view", (v) => panel?.view?.(v)),
      r.on("updated", () => {
        renderHead();
        members.render();
      }),
      r.on("resync", () => {
        renderHead();
        chat.redraw();
        membersChanged();
        if (r.game) panel?.view?.(r.game);
      }),
      r.on("left", (e) => {
        if (state.room === r) state.room = undefined;
        if (disposed) return;
        panel?.destroy();
        panel = undefined;
        replace(
          root,
          h(
            "section",
            { class: "panel", "aria-labelledby": "left-h" },
            h("h1", { id: "left-h" }, r.info.name),
            h("p", { role: "alert", "data-testid": "room-left", "data-reason": e.reason }, LEFT_TEXT[e.reason] ?? "You are no longer in the room.", e.error ? ` ${describe(e.error)}` : ""),
            h("p", null, h("a", { href: "#/lobby", "data-testid": "back-to-lobby" }, "Back to the lobby")),
          ),
        );
      }),
      onNames(() => {
        members.render();
        panel?.membersChanged?.();
      }),
    );
    offs.push(() => panel?.destroy());
  };

  void join();

  return {
    title: "Room",
    destroy(next) {
      disposed = true;
      for (const off of offs) off();
      // Leaving the room's page leaves the room, unless the next page is the same room.
      const r = room ?? state.room;
      if (r && r.id === id && !next.startsWith(`#/room/${encodeURIComponent(id)}`)) {
        if (state.room === r) state.room = undefined;
        void r.leave().catch(() => undefined);
      }
    },
  };
}

async function getTournament(tid: string, roomId: string): Promise<TournamentJson> {
  const t = await rest<TournamentJson>("GET", `/api/v1/tournaments/${encodeURIComponent(tid)}`);
  state.tournamentOfRoom.set(roomId, tid);
  for (const r of t.rounds) for (const p of r.pairings) if (p.room_id) state.tournamentOfRoom.set(p.room_id, tid);
  return t;
}
