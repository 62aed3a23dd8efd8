// #/lobby: public rooms by kind (kept fresh), create a room, join by code, quick play and
// matchmaking, and tournaments.
import { client, describe, state } from "../app.ts";
import { checkbox, field, h, replace } from "../dom.ts";
import { navigate, type Page } from "../router.ts";
import type { CreateRoomOptions, Room, RoomInfo } from "../sdk.ts";
import { TurnOrder } from "../proto.ts";
import { roomHref } from "./room.ts";

export const KINDS = ["piano", "dice", "cards", "trivia", "match"] as const;
const KIND_LABEL: Record<string, string> = {
  "": "All",
  piano: "Piano",
  dice: "Dice",
  cards: "Cards",
  trivia: "Trivia",
  match: "Match",
};
const RATED = new Set(["match", "trivia"]);
const POLL_MS = 4000;

/** Opens a room the client has just joined. */
function enter(room: Room, tournamentId?: string): void {
  state.room = room;
  navigate(roomHref(room.id, tournamentId));
}

export function lobbyPage(root: HTMLElement): Page {
  let kind = "";
  let disposed = false;
  let polling: ReturnType<typeof setInterval> | undefined;
  let matchAbort: AbortController | undefined;

  // --- Room list, with tabs by kind ---
  const listStatus = h("p", { class: "muted", "data-testid": "rooms-status", "aria-live": "polite" });
  const tbody = h("tbody");
  const table = h(
    "table",
    { "data-testid": "room-list" },
    h("caption", { class: "visually-hidden" }, "Public rooms"),
    h(
      "thead",
      null,
      h(
        "tr",
        null,
        h("th", { scope: "col" }, "Name"),
        h("th", { scope: "col" }, "Kind"),
        h("th", { scope: "col" }, "Members"),
        h("th", { scope: "col" }, "Status"),
        h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")),
      ),
    ),
    tbody,
  );
  const listError = h("p", { class: "error", role: "alert", "data-testid": "rooms-error" });

  const joinListed = async (r: RoomInfo, watch: boolean, btn: HTMLButtonElement) => {
    listError.textContent = "";
    let password = "";
    if (r.hasPassword) {
      // The join-by-code form holds a password field: use it for listed rooms too.
      password = joinPassword.value;
      if (!password) {
        listError.textContent = `"${r.name}" needs a password: enter it under "Join by code", then join again.`;
        joinPassword.focus();
        return;
      }
    }
    btn.disabled = true;
    try {
      enter(await client.joinRoom({ id: r.id }, { password, role: watch ? "watcher" : undefined }));
    } catch (e) {
      listError.textContent = describe(e);
      btn.disabled = false;
    }
  };

  const renderRooms = (rooms: RoomInfo[], total: number) => {
    if (rooms.length === 0) {
      replace(tbody, h("tr", null, h("td", { colspan: 5, class: "empty" }, kind ? `No public ${KIND_LABEL[kind] ?? kind} rooms yet.` : "No public rooms yet.")));
    } else {
      replace(
        tbody,
        ...rooms.map((r) => {
          const join: HTMLButtonElement = h(
            "button",
            {
              type: "button",
              class: "small",
              "data-testid": "join-room",
              "aria-label": `Join ${r.name}`,
              disabled: r.memberCount >= r.maxMembers && r.maxMembers > 0,
              onclick: () => void joinListed(r, false, join),
            },
            "Join",
          );
          const watch: HTMLButtonElement = h(
            "button",
            {
              type: "button",
              class: "secondary small",
              "data-testid": "watch-room",
              "aria-label": `Watch ${r.name}`,
              onclick: () => void joinListed(r, true, watch),
            },
            "Watch",
          );
          return h(
            "tr",
            { "data-testid": "room-row", "data-room-id": r.id, "data-kind": r.kind },
            h("td", null, r.name, r.hasPassword ? h("span", { class: "badge", title: "password" }, "password") : null),
            h("td", null, KIND_LABEL[r.kind] ?? r.kind),
            h("td", null, `${r.memberCount} / ${r.maxMembers}`),
            h("td", null, r.status),
            h("td", null, h("span", { class: "row" }, join, watch)),
          );
        }),
      );
    }
    listStatus.textContent = `${total} public room${total === 1 ? "" : "s"}${kind ? ` of kind ${kind}` : ""}. Updated ${new Date().toLocaleTimeString()}.`;
  };

  let loading = false;
  const refresh = async () => {
    if (disposed || loading) return;
    loading = true;
    try {
      const { rooms, total } = await client.listRooms({ kind, limit: 100 });
      if (!disposed) {
        renderRooms(rooms, total);
        listError.textContent = "";
      }
    } catch (e) {
      if (!disposed) listError.textContent = describe(e);
    } finally {
      loading = false;
    }
  };

  const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Room kinds" });
  const tabButtons = ["", ...KINDS].map((k) =>
    h(
      "button",
      {
        type: "button",
        role: "tab",
        id: `tab-${k || "all"}`,
        "aria-controls": "rooms-panel",
        "aria-selected": String(k === kind),
        tabindex: k === kind ? 0 : -1,
        "data-testid": `lobby-tab-${k || "all"}`,
        "data-kind": k,
        onclick: () => selectTab(k),
      },
      KIND_LABEL[k] ?? k,
    ),
  );
  const selectTab = (k: string, focus = false) => {
    kind = k;
    for (const b of tabButtons) {
      const on = b.dataset.kind === k;
      b.setAttribute("aria-selected", String(on));
      b.tabIndex = on ? 0 : -1;
      if (on && focus) b.focus();
    }
    panel.setAttribute("aria-labelledby", `tab-${k || "all"}`);
    void refresh();
  };
  tabs.addEventListener("keydown", (ev) => {
    const i = tabButtons.findIndex((b) => b.dataset.kind === kind);
    let j = -1;
    if (ev.key === "ArrowRight") j = (i + 1) % tabButtons.length;
    else if (ev.key === "ArrowLeft") j = (i - 1 + tabButtons.length) % tabButtons.length;
    else if (ev.key === "Home") j = 0;
    else if (ev.key === "End") j = tabButtons.length - 1;
    if (j < 0) return;
    ev.preventDefault();
    selectTab(tabButtons[j]!.dataset.kind ?? "", true);
  });
  tabs.append(...tabButtons);
  const panel = h("div", { role: "tabpanel", id: "rooms-panel", "aria-labelledby": "tab-all", tabindex: 0 }, table);

  // --- Create a room ---
  const createError = h("p", { class: "error", role: "alert", "data-testid": "create-error" });
  const cName = h("input", { type: "text", name: "name", required: true, maxlength: 64, "data-testid": "create-name" });
  const cKind = h(
    "select",
    { name: "kind", "data-testid": "create-kind" },
    ...KINDS.map((k) => h("option", { value: k }, KIND_LABEL[k])),
    h("option", { value: "other" }, "Other relay kind…"),
  );
  const cCustom = h("input", { type: "text", name: "custom-kind", pattern: "[a-z0-9_\\-]{1,32}", maxlength: 32, "data-testid": "create-kind-custom" });
  const customField = field("Relay kind name", cCustom, "Lowercase letters, digits, - and _.");
  const cPublic = h("input", { name: "public", checked: true, "data-testid": "create-public" });
  const cPassword = h("input", { type: "password", name: "password", autocomplete: "new-password", "data-testid": "create-password" });
  const cMax = h("input", { type: "number", name: "max", min: 2, max: 5000, value: 16, "data-testid": "create-max" });
  const cTurnOrder = h(
    "select",
    { name: "turn-order", "data-testid": "create-turn-order" },
    h("option", { value: String(TurnOrder.FREE) }, "Free: anyone flips"),
    h("option", { value: String(TurnOrder.ROUND_ROBIN) }, "Round robin"),
  );
  const cTurnTimeout = h("input", { type: "number", name: "turn-timeout", min: 0, max: 600, value: 0, "data-testid": "create-turn-timeout" });
  const cAutoStart = h("input", { type: "number", name: "auto-start", min: 0, max: 64, value: 0, "data-testid": "create-auto-start" });
  const cRated = h("input", { name: "rated", "data-testid": "create-rated" });
  const cardsOpts = h(
    "fieldset",
    { "data-kind-options": "cards" },
    h("legend", null, "Card table"),
    field("Turn order", cTurnOrder),
    field("Turn time limit (seconds, 0: none)", cTurnTimeout),
  );
  const triviaOpts = h(
    "fieldset",
    { "data-kind-options": "trivia" },
    h("legend", null, "Trivia"),
    field("Start at this many players (0: the host starts)", cAutoStart),
    checkbox("Rated (registered players)", cRated),
  );
  const showOptions = () => {
    customField.hidden = cKind.value !== "other";
    cCustom.required = cKind.value === "other";
    cardsOpts.hidden = cKind.value !== "cards";
    triviaOpts.hidden = cKind.value !== "trivia";
  };
  cKind.addEventListener("change", showOptions);
  showOptions();

  const create = h(
    "form",
    {
      "data-testid": "create-room",
      "aria-labelledby": "create-h",
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        createError.textContent = "";
        const k = cKind.value === "other" ? cCustom.value.trim() : cKind.value;
        const opts: CreateRoomOptions = {
          name: cName.value.trim(),
          kind: k,
          visibility: cPublic.checked ? "public" : "private",
          password: cPassword.value,
          maxMembers: Number(cMax.value) || 0,
        };
        if (k === "cards") {
          const secs = Number(cTurnTimeout.value) || 0;
          opts.game = { config: { case: "cards", value: { turnOrder: Number(cTurnOrder.value), turnTimeoutMs: Math.round(secs * 1000) } } };
        } else if (k === "trivia") {
          opts.game = { config: { case: "trivia", value: { autoStartPlayers: Number(cAutoStart.value) || 0, rated: cRated.checked } } };
        }
        const submit = create.querySelector("button[type=submit]") as HTMLButtonElement;
        submit.disabled = true;
        try {
          enter(await client.createRoom(opts));
        } catch (e) {
          createError.textContent = describe(e);
        } finally {
          submit.disabled = false;
        }
      },
    },
    h("h2", { id: "create-h" }, "Create a room"),
    field("Room name", cName),
    field("Kind", cKind),
    customField,
    cardsOpts,
    triviaOpts,
    checkbox("Public (listed in the lobby)", cPublic),
    field("Password (optional)", cPassword),
    field("Most members", cMax),
    h("button", { type: "submit", "data-testid": "create-submit" }, "Create the room"),
    createError,
  );

  // --- Join by code ---
  const joinError = h("p", { class: "error", role: "alert", "data-testid": "join-error" });
  const code = h("input", { type: "text", name: "code", required: true, autocomplete: "off", spellcheck: "false", "data-testid": "room-code" });
  const joinPassword = h("input", { type: "password", name: "password", autocomplete: "off", "data-testid": "join-password" });
  const joinWatch = h("input", { name: "watch", "data-testid": "join-watch" });
  const joinByCode = h(
    "form",
    {
      "data-testid": "join-code-form",
      "aria-labelledby": "joincode-h",
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        joinError.textContent = "";
        const btn = joinByCode.querySelector("button") as HTMLButtonElement;
        btn.disabled = true;
        try {
          enter(
            await client.joinRoom(
              { code: code.value.trim() },
              { password: joinPassword.value, role: joinWatch.checked ? "watcher" : undefined },
            ),
          );
        } catch (e) {
          joinError.textContent = describe(e);
        } finally {
          btn.disabled = false;
        }
      },
    },
    h("h2", { id: "joincode-h" }, "Join by code"),
    field("Room code", code),
    field("Password (if the room has one)", joinPassword),
    checkbox("Join as a watcher", joinWatch),
    h("button", { type: "submit", "data-testid": "join-code" }, "Join"),
    joinError,
  );

  // --- Quick play and matchmaking ---
  const quickError = h("p", { class: "error", role: "alert", "data-testid": "quick-error" });
  const mmStatus = h("p", { "aria-live": "polite", "data-testid": "matchmake-status" });
  const qKind = h("select", { name: "quick-kind", "data-testid": "quick-kind" }, ...KINDS.map((k) => h("option", { value: k }, KIND_LABEL[k])));
  const quickPlay: HTMLButtonElement = h(
    "button",
    {
      type: "button",
      "data-testid": "quick-play",
      onclick: async () => {
        quickError.textContent = "";
        quickPlay.disabled = true;
        try {
          enter(await client.joinOrCreate(qKind.value));
        } catch (e) {
          quickError.textContent = describe(e);
        } finally {
          quickPlay.disabled = false;
        }
      },
    },
    "Join or create",
  );
  const mmButton: HTMLButtonElement = h(
    "button",
    {
      type: "button",
      class: "secondary",
      "data-testid": "matchmake",
      onclick: async () => {
        quickError.textContent = "";
        const k = qKind.value;
        matchAbort = new AbortController();
        mmButton.hidden = true;
        mmCancel.hidden = false;
        mmCancel.focus();
        mmStatus.textContent = `Looking for ${k === "match" ? "an opponent" : "players"} near your rating…`;
        try {
          const room = await client.matchmake(k, { signal: matchAbort.signal, ...(k === "trivia" ? { minPlayers: 2 } : {}) });
          mmStatus.textContent = "Matched!";
          if (!disposed) enter(room);
          else void room.leave().catch(() => undefined);
        } catch (e) {
          if (!disposed) mmStatus.textContent = (e as { code?: string }).code === "ABORTED" ? "Matchmaking cancelled." : "";
          if (!disposed && (e as { code?: string }).code !== "ABORTED") quickError.textContent = describe(e);
        } finally {
          matchAbort = undefined;
          mmButton.hidden = !RATED.has(qKind.value);
          mmCancel.hidden = true;
        }
      },
    },
    "Find a rated match",
  );
  const mmCancel: HTMLButtonElement = h(
    "button",
    { type: "button", class: "danger", "data-testid": "matchmake-cancel", hidden: true, onclick: () => matchAbort?.abort() },
    "Stop looking",
  );
  const showMm = () => {
    mmButton.hidden = !RATED.has(qKind.value) || !!matchAbort;
    mmButton.textContent = qKind.value === "match" ? "Find a rated match" : "Find a trivia arena";
  };
  qKind.addEventListener("change", showMm);
  showMm();
  const quick = h(
    "section",
    { "aria-labelledby": "quick-h" },
    h("h2", { id: "quick-h" }, "Quick play"),
    h("p", { class: "hint" }, "Join the first public room of a kind with a free seat, or a new one. Match and trivia also have rated matchmaking."),
    h("div", { class: "row" }, field("Kind", qKind), quickPlay, mmButton, mmCancel),
    mmStatus,
    quickError,
  );

  // --- Tournaments ---
  const tError = h("p", { class: "error", role: "alert", "data-testid": "tournament-error" });
  const tName = h("input", { type: "text", name: "tournament-name", required: true, maxlength: 64, "data-testid": "tournament-name" });
  const tMax = h("input", { type: "number", name: "tournament-max", min: 2, max: 256, value: 8, "data-testid": "tournament-max" });
  const tId = h("input", { type: "text", name: "tournament-id", required: true, autocomplete: "off", "data-testid": "tournament-id" });
  const guest = client.user?.role === "guest";
  const tournaments = h(
    "section",
    { "aria-labelledby": "tourn-h" },
    h("h2", { id: "tourn-h" }, "Tournaments"),
    guest
      ? h("p", { class: "hint" }, "Tournaments are for registered accounts: guests may watch them.")
      : h(
          "form",
          {
            class: "stack",
            "data-testid": "tournament-create-form",
            onsubmit: async (ev: Event) => {
              ev.preventDefault();
              tError.textContent = "";
              try {
                const t = await client.api<{ id: string }>("POST", "/api/v1/tournaments", {
                  name: tName.value.trim(),
                  max_players: Number(tMax.value),
                });
                navigate(`#/tournament/${encodeURIComponent(t.id)}`);
              } catch (e) {
                tError.textContent = describe(e);
              }
            },
          },
          h("div", { class: "row" }, field("Name", tName), field("Most players", tMax), h("button", { type: "submit", "data-testid": "tournament-create" }, "Create")),
        ),
    h(
      "form",
      {
        class: "row",
        onsubmit: (ev: Event) => {
          ev.preventDefault();
          if (tId.value.trim()) navigate(`#/tournament/${encodeURIComponent(tId.value.trim())}`);
        },
      },
      field("Tournament id", tId),
      h("button", { type: "submit", class: "secondary", "data-testid": "tournament-open" }, "Open"),
    ),
    tError,
  );

  replace(
    root,
    h("h1", null, "Lobby"),
    h(
      "div",
      { class: "room-layout" },
      h(
        "section",
        { class: "panel", "aria-labelledby": "rooms-h" },
        h(
          "div",
          { class: "row" },
          h("h2", { id: "rooms-h" }, "Public rooms"),
          h("button", { type: "button", class: "secondary small", "data-testid": "rooms-refresh", onclick: () => void refresh() }, "Refresh"),
        ),
        tabs,
        panel,
        listStatus,
        listError,
      ),
      h("div", { class: "side" }, h("div", { class: "panel" }, quick), h("div", { class: "panel" }, joinByCode)),
    ),
    h("div", { class: "grid-2" }, h("div", { class: "panel" }, create), h("div", { class: "panel" }, tournaments)),
  );

  const onFocus = () => void refresh();
  const onVisible = () => {
    if (document.visibilityState === "visible") void refresh();
  };
  window.addEventListener("focus", onFocus);
  document.addEventListener("visibilitychange", onVisible);
  const offs = [client.on("reconnected", () => void refresh())];
  polling = setInterval(() => {
    if (document.visibilityState === "visible") void refresh();
  }, POLL_MS);
  void refresh();

  return {
    title: "Lobby",
    destroy() {
      disposed = true;
      clearInterval(polling);
      matchAbort?.abort();
      window.removeEventListener("focus", onFocus);
      document.removeEventListener("visibilitychange", onVisible);
      for (const off of offs) off();
    },
  };
}
