import { create } from "@bufbuild/protobuf";
import { Emitter } from "./emitter.js";
import { ParlorError } from "./errors.js";
import { applyGameUpdate, type GameActionInit } from "./game.js";
import type { Envelope, RoomJoined } from "./gen/parlor/v1/parlor_pb.js";
import { GameActionSchema, type GameUpdate, type GameView } from "./gen/parlor/v1/games_pb.js";
import {
  chatLine,
  leaveReason,
  member,
  moderationAction,
  roomInfo,
  roomRole,
  settings,
  settingsInit,
  toModerationAction,
  toStatus,
  toVisibility,
  type ChatLine,
  type LeaveReason,
  type Member,
  type ModerationAction,
  type PresenceStatus,
  type RoomInfo,
  type RoomRole,
  type RoomSettings,
  type Visibility,
} from "./types.js";
import type { BodyInit, Internals } from "./client.js";

type Body = Envelope["body"];

export interface GameEventMessage {
  type: string;
  payload: Uint8Array;
  senderId: string;
  sentAtMs: number;
  /** Set when the event was for one member only (then seq is 0). */
  targetUserId: string;
  seq: number;
}

export interface GameUpdateEvent {
  update: GameUpdate;
  /** 0 for hidden detail meant for you alone. */
  seq: number;
  /** True for hidden detail (seq 0): not a room event, not replayed on resume. */
  private: boolean;
}

export interface RoomEvents {
  chat: ChatLine;
  member_joined: Member;
  member_left: { userId: string; reason: LeaveReason; member: Member | undefined };
  member_updated: { member: Member; previous: Member | undefined };
  game_event: GameEventMessage;
  game_update: GameUpdateEvent;
  game_view: GameView;
  updated: { info: RoomInfo; settings: RoomSettings };
  moderated: { userId: string; action: ModerationAction; byUserId: string; reason: string };
  /** The room's state was replaced from a fresh snapshot: redraw everything. */
  resync: Room;
  /** You are no longer in the room; the object is dead from now on. */
  left: { reason: LeaveReason; error?: ParlorError };
}

export interface RoomUpdate {
  name?: string;
  visibility?: Visibility;
  /** Empty string removes the password. */
  password?: string;
  maxMembers?: number;
  settings?: Partial<RoomSettings>;
}

/** How the caller asked to be in the room, to rejoin the same way after a reconnect. */
export interface JoinSpec {
  password: string;
  role: RoomRole | undefined;
}

interface Waiter {
  id: number;
  key: string;
}

/**
 * A room you are in. Its state (members, chat, game, lastSeq) is kept up to date from the
 * room's events, which arrive in seq order; an event with a seq at or below `lastSeq` is a
 * duplicate (a replay after a resume) and is dropped, so nothing is applied twice.
 */
export class Room extends Emitter<RoomEvents> {
  readonly id: string;
  info: RoomInfo;
  settings: RoomSettings;
  members = new Map<string, Member>();
  chat: ChatLine[] = [];
  /** Seq of the newest room event applied; a rejoin asks for the events after it. */
  lastSeq = 0;
  yourRole: RoomRole | undefined;
  /** The game of a server-run kind as you may see it; undefined for relay kinds. */
  game: GameView | undefined;
  /** False once you left (or the client closed or gave up). */
  joined = true;

  /** @internal */ spec: JoinSpec;
  private readonly chatWaiters: Waiter[] = [];
  private readonly eventWaiters: Waiter[] = [];

  /** @internal */
  constructor(
    private readonly c: Internals,
    j: RoomJoined,
    spec: JoinSpec,
  ) {
    super();
    this.id = j.room?.id ?? "";
    this.spec = spec;
    this.info = roomInfo(j.room);
    this.settings = settings(j.settings);
    this.applySnapshot(j, Number(j.lastSeq));
  }

  get kind(): string {
    return this.info.kind;
  }

  /** Your own member entry. */
  get me(): Member | undefined {
    return this.members.get(this.c.userId());
  }

  /**
   * Says something to the room; resolves with your line as the room numbered it (the pod
   * answers a chat line only with the line itself, so it is matched by its text).
   */
  sendChat(text: string): Promise<ChatLine> {
    return this.c.echo<ChatLine>({ case: "chat", value: { roomId: this.id, text } }, this.chatWaiters, text);
  }

  /**
   * Relays a game event (relay kinds). Resolves with its seq once the room has numbered
   * it: your echo, or the Ack that stands in for it when echoEvents is off. With `to`,
   * only that member (and you) get it, unnumbered: resolves with 0.
   */
  sendEvent(type: string, payload: Uint8Array = new Uint8Array(), opts: { to?: string } = {}): Promise<number> {
    const body: BodyInit = {
      case: "gameEvent",
      value: { roomId: this.id, type, payload, targetUserId: opts.to ?? "" },
    };
    if (opts.to) return this.c.answer(body, () => 0);
    return this.c.echo<number>(body, this.eventWaiters, type);
  }

  /**
   * Changes your status and/or cursor. Resolves once sent: the pod answers only failures
   * (reported by the client's "error" event), and conflates cursor moves.
   */
  setPresence(status?: PresenceStatus, cursor?: { x: number; y: number }): Promise<void> {
    return this.c.fire({
      case: "presenceUpdate",
      value: {
        roomId: this.id,
        status: toStatus(status),
        ...(cursor ? { cursorX: cursor.x, cursorY: cursor.y } : {}),
      },
    });
  }

  /** Asks a server-run game to act (see `actions`); resolves with the seq of its first event (0: none). */
  gameAction(action: GameActionInit): Promise<number> {
    const value = create(GameActionSchema, { roomId: this.id, action });
    return this.c.answer({ case: "gameAction", value: value }, (env) => (env.body.case === "ack" ? Number(env.body.value.seq) : 0));
  }

  /** Owner (or staff): changes the room's name, visibility, password, seats or settings. */
  update(u: RoomUpdate): Promise<void> {
    return this.c.answer(
      {
        case: "updateRoom",
        value: {
          roomId: this.id,
          ...(u.name !== undefined ? { name: u.name } : {}),
          visibility: toVisibility(u.visibility),
          ...(u.password !== undefined ? { password: u.password } : {}),
          ...(u.maxMembers !== undefined ? { maxMembers: u.maxMembers } : {}),
          settings: settingsInit(u.settings),
        },
      },
      () => undefined,
    );
  }

  /** Owner (or staff): kicks, bans, mutes, unmutes or unbans a user. */
  moderate(userId: string, action: ModerationAction, reason = ""): Promise<void> {
    return this.c.answer(
      { case: "moderate", value: { roomId: this.id, userId, action: toModerationAction(action), reason } },
      () => undefined,
    );
  }

  /** Leaves the room; resolves once the pod confirms. */
  async leave(): Promise<void> {
    if (!this.joined) return;
    try {
      await this.c.answer({ case: "leaveRoom", value: { roomId: this.id } }, () => undefined);
    } catch (e) {
      // Not in it any more is as good as left.
      if (!(e instanceof ParlorError && e.code === "NOT_IN_ROOM")) throw e;
    }
    this.gone("left");
  }

  // --- applied by the client, in frame order ---

  /** @internal A room event (seq > 0) or a room push (seq 0). */
  handle(seq: number, body: Body): void {
    if (!this.joined) return;
    if (seq > 0) {
      if (seq <= this.lastSeq) return; // a duplicate: replayed, or seen before a resync
      this.lastSeq = seq;
    }
    const me = this.c.userId();
    switch (body.case) {
      case "chatMessage": {
        const line = chatLine(body.value, seq);
        this.pushChat(line);
        if (line.fromUserId === me) this.settleFirst(this.chatWaiters, line.text, line);
        this.emit("chat", line);
        break;
      }
      case "memberJoined": {
        if (!body.value.member) break;
        const m = member(body.value.member);
        this.members.set(m.userId, m);
        this.info = { ...this.info, memberCount: this.members.size };
        this.emit("member_joined", m);
        break;
      }
      case "memberLeft": {
        const prev = this.members.get(body.value.userId);
        this.members.delete(body.value.userId);
        this.info = { ...this.info, memberCount: this.members.size };
        this.emit("member_left", { userId: body.value.userId, reason: leaveReason(body.value.reason), member: prev });
        break;
      }
      case "memberUpdated": {
        if (!body.value.member) break;
        const m = member(body.value.member);
        const prev = this.members.get(m.userId);
        this.members.set(m.userId, m);
        if (m.userId === me) this.yourRole = m.role;
        this.emit("member_updated", { member: m, previous: prev });
        break;
      }
      case "gameEvent": {
        const e = body.value;
        const ev: GameEventMessage = {
          type: e.type,
          payload: e.payload,
          senderId: e.senderId,
          sentAtMs: Number(e.sentAtMs),
          targetUserId: e.targetUserId,
          seq,
        };
        if (seq > 0 && e.senderId === me) this.settleFirst(this.eventWaiters, e.type, seq);
        this.emit("game_event", ev);
        break;
      }
      case "ack": // echo_events off: your own event's place in the room's order
        this.settleFirst(this.eventWaiters, undefined, seq);
        break;
      case "gameUpdate": {
        if (this.game) {
          this.game = applyGameUpdate(this.game, body.value, {
            serverNow: () => this.c.serverNow(),
            ownerId: this.info.ownerId,
          });
        }
        this.emit("game_update", { update: body.value, seq, private: seq === 0 });
        break;
      }
      case "gameView":
        this.game = body.value;
        this.emit("game_view", body.value);
        break;
      case "roomUpdated":
        this.info = roomInfo(body.value.room);
        if (body.value.settings) this.settings = settings(body.value.settings, this.settings);
        this.emit("updated", { info: this.info, settings: this.settings });
        break;
      case "moderated": {
        const m = body.value;
        this.emit("moderated", {
          userId: m.userId,
          action: moderationAction(m.action),
          byUserId: m.byUserId,
          reason: m.reason,
        });
        break;
      }
      case "roomJoined": // pushed resync: the cluster lost the room's history
        this.applySnapshot(body.value, seq);
        break;
      case "roomLeft":
        this.gone(leaveReason(body.value.reason));
        break;
    }
  }

  /** @internal The answer to a (re)join: a fresh snapshot, or "resumed" (events follow). */
  applySnapshot(j: RoomJoined, seq: number): void {
    if (j.room) this.info = roomInfo(j.room);
    const role = roomRole(j.yourRole);
    if (role) this.yourRole = role;
    if (j.resumed) return; // keep the state as of lastSeq; the missed events follow
    this.settings = settings(j.settings);
    this.members = new Map(j.members.map((m) => [m.userId, member(m)]));
    this.chat = [];
    for (const c of j.recentChat) this.pushChat(chatLine(c, 0));
    this.lastSeq = seq;
    if (!role) this.yourRole = this.members.get(this.c.userId())?.role ?? this.yourRole;
    if (j.resync) this.emit("resync", this);
  }

  /** @internal */
  gone(reason: LeaveReason, error?: ParlorError): void {
    if (!this.joined) return;
    this.joined = false;
    this.c.forget(this);
    this.emit("left", error ? { reason, error } : { reason });
  }

  /** @internal Drops a waiter whose request failed. */
  unwait(id: number): void {
    for (const list of [this.chatWaiters, this.eventWaiters]) {
      const i = list.findIndex((w) => w.id === id);
      if (i >= 0) list.splice(i, 1);
    }
  }

  private settleFirst(list: Waiter[], key: string | undefined, value: unknown): void {
    const i = list.findIndex((w) => key === undefined || w.key === key);
    if (i < 0) return;
    const [w] = list.splice(i, 1);
    this.c.settle(w!.id, value);
  }

  private pushChat(line: ChatLine): void {
    this.chat.push(line);
    const max = this.c.chatLimit;
    if (this.chat.length > max) this.chat.splice(0, this.chat.length - max);
  }
}
