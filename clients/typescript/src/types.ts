// Plain public shapes (numbers, string unions) over the wire's proto messages, so that a UI
// can store, compare and JSON.stringify them. Game views stay proto messages (see game.ts).
import type { MessageInitShape } from "@bufbuild/protobuf";
import * as pb from "./gen/parlor/v1/parlor_pb.js";

export type GlobalRole = "visitor" | "guest" | "user" | "moderator" | "admin";
export type RoomRole = "owner" | "player" | "watcher";
export type PresenceStatus = "online" | "away" | "busy";
export type Visibility = "public" | "private";
export type LeaveReason = "left" | "disconnected" | "kicked" | "banned" | "replaced" | "closed";
export type ModerationAction = "kick" | "ban" | "mute" | "unmute" | "unban";

export interface User {
  id: string;
  name: string;
  role: GlobalRole;
}

export interface Member {
  userId: string;
  name: string;
  role: RoomRole;
  status: PresenceStatus;
  cursor: { x: number; y: number };
  muted: boolean;
}

/** A chat line: a room's (roomId set) or a private message (toUserId set). */
export interface ChatLine {
  roomId: string;
  fromUserId: string;
  fromName: string;
  text: string;
  sentAtMs: number;
  toUserId: string;
  /** The room event's seq; 0 for lines from a snapshot's recent_chat and private lines. */
  seq: number;
}

export interface RoomInfo {
  id: string;
  /** Short code to share (12 characters; joinRoom accepts it with dashes, spaces, any case). */
  code: string;
  name: string;
  kind: string;
  visibility: Visibility;
  memberCount: number;
  maxMembers: number;
  hasPassword: boolean;
  ownerId: string;
  persistent: boolean;
  /** A server-run game's listing status, e.g. "round 2". */
  status: string;
}

export interface RoomSettings {
  allowChat: boolean;
  allowGuests: boolean;
  ownerOnlyPlay: boolean;
  ownerOnlyChat: boolean;
  welcomeMessage: string;
  eventRateLimit: number;
  echoEvents: boolean;
}

export const DEFAULT_SETTINGS: Readonly<RoomSettings> = Object.freeze({
  allowChat: true,
  allowGuests: true,
  ownerOnlyPlay: false,
  ownerOnlyChat: false,
  welcomeMessage: "",
  eventRateLimit: 50,
  echoEvents: true,
});

const GLOBAL_ROLES: Record<number, GlobalRole> = {
  [pb.GlobalRole.VISITOR]: "visitor",
  [pb.GlobalRole.GUEST]: "guest",
  [pb.GlobalRole.USER]: "user",
  [pb.GlobalRole.MODERATOR]: "moderator",
  [pb.GlobalRole.ADMIN]: "admin",
};
const ROOM_ROLES: Record<number, RoomRole> = {
  [pb.RoomRole.OWNER]: "owner",
  [pb.RoomRole.PLAYER]: "player",
  [pb.RoomRole.WATCHER]: "watcher",
};
const STATUSES: Record<number, PresenceStatus> = {
  [pb.PresenceStatus.ONLINE]: "online",
  [pb.PresenceStatus.AWAY]: "away",
  [pb.PresenceStatus.BUSY]: "busy",
};
const REASONS: Record<number, LeaveReason> = {
  [pb.LeaveReason.LEFT]: "left",
  [pb.LeaveReason.DISCONNECTED]: "disconnected",
  [pb.LeaveReason.KICKED]: "kicked",
  [pb.LeaveReason.BANNED]: "banned",
  [pb.LeaveReason.REPLACED]: "replaced",
  [pb.LeaveReason.CLOSED]: "closed",
};
const ACTIONS: Record<ModerationAction, pb.ModerationAction> = {
  kick: pb.ModerationAction.KICK,
  ban: pb.ModerationAction.BAN,
  mute: pb.ModerationAction.MUTE,
  unmute: pb.ModerationAction.UNMUTE,
  unban: pb.ModerationAction.UNBAN,
};

export const globalRole = (r: pb.GlobalRole): GlobalRole => GLOBAL_ROLES[r] ?? "visitor";
export const roomRole = (r: pb.RoomRole): RoomRole | undefined => ROOM_ROLES[r];
export const leaveReason = (r: pb.LeaveReason): LeaveReason => REASONS[r] ?? "left";
export const moderationAction = (a: pb.ModerationAction): ModerationAction =>
  (Object.keys(ACTIONS) as ModerationAction[]).find((k) => ACTIONS[k] === a) ?? "kick";
export const toModerationAction = (a: ModerationAction): pb.ModerationAction => ACTIONS[a];
export const toRoomRole = (r: RoomRole | undefined): pb.RoomRole =>
  r === "watcher" ? pb.RoomRole.WATCHER : r === "player" ? pb.RoomRole.PLAYER : pb.RoomRole.UNSPECIFIED;
export const toStatus = (s: PresenceStatus | undefined): pb.PresenceStatus =>
  s === "online"
    ? pb.PresenceStatus.ONLINE
    : s === "away"
      ? pb.PresenceStatus.AWAY
      : s === "busy"
        ? pb.PresenceStatus.BUSY
        : pb.PresenceStatus.UNSPECIFIED;
export const toVisibility = (v: Visibility | undefined): pb.Visibility =>
  v === "public" ? pb.Visibility.PUBLIC : v === "private" ? pb.Visibility.PRIVATE : pb.Visibility.UNSPECIFIED;

export function user(u: pb.User | undefined): User {
  return { id: u?.id ?? "", name: u?.name ?? "", role: globalRole(u?.role ?? pb.GlobalRole.VISITOR) };
}

export function member(m: pb.Member): Member {
  return {
    userId: m.userId,
    name: m.name,
    role: roomRole(m.role) ?? "player",
    status: STATUSES[m.status] ?? "online",
    cursor: { x: m.cursorX, y: m.cursorY },
    muted: m.muted,
  };
}

export function chatLine(c: pb.ChatMessage, seq: number): ChatLine {
  return {
    roomId: c.roomId,
    fromUserId: c.fromUserId,
    fromName: c.fromName,
    text: c.text,
    sentAtMs: Number(c.sentAtMs),
    toUserId: c.toUserId,
    seq,
  };
}

export function roomInfo(s: pb.RoomSummary | undefined): RoomInfo {
  return {
    id: s?.id ?? "",
    code: s?.code ?? "",
    name: s?.name ?? "",
    kind: s?.kind ?? "",
    visibility: s?.visibility === pb.Visibility.PRIVATE ? "private" : "public",
    memberCount: s?.memberCount ?? 0,
    maxMembers: s?.maxMembers ?? 0,
    hasPassword: s?.hasPassword ?? false,
    ownerId: s?.ownerId ?? "",
    persistent: s?.persistent ?? false,
    status: s?.status ?? "",
  };
}

/** A REST room summary (`public` is a boolean there, and `status` is absent). */
export function roomInfoFromJson(j: Record<string, unknown>): RoomInfo {
  return {
    id: String(j.id ?? ""),
    code: String(j.code ?? ""),
    name: String(j.name ?? ""),
    kind: String(j.kind ?? ""),
    visibility: j.public === false ? "private" : "public",
    memberCount: Number(j.member_count ?? 0),
    maxMembers: Number(j.max_members ?? 0),
    hasPassword: Boolean(j.has_password),
    ownerId: String(j.owner_id ?? ""),
    persistent: Boolean(j.persistent),
    status: String(j.status ?? ""),
  };
}

/** Snapshot settings have every field; an unset one takes `base`'s value. */
export function settings(s: pb.RoomSettings | undefined, base: RoomSettings = DEFAULT_SETTINGS): RoomSettings {
  return {
    allowChat: s?.allowChat ?? base.allowChat,
    allowGuests: s?.allowGuests ?? base.allowGuests,
    ownerOnlyPlay: s?.ownerOnlyPlay ?? base.ownerOnlyPlay,
    ownerOnlyChat: s?.ownerOnlyChat ?? base.ownerOnlyChat,
    welcomeMessage: s?.welcomeMessage ?? base.welcomeMessage,
    eventRateLimit: s?.eventRateLimit ?? base.eventRateLimit,
    echoEvents: s?.echoEvents ?? base.echoEvents,
  };
}

/** Requested settings: only the fields given are sent (unset: default or unchanged). */
export function settingsInit(
  s: Partial<RoomSettings> | undefined,
): MessageInitShape<typeof pb.RoomSettingsSchema> | undefined {
  if (!s) return undefined;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(DEFAULT_SETTINGS) as (keyof RoomSettings)[]) {
    if (s[k] !== undefined) out[k] = s[k];
  }
  return out as MessageInitShape<typeof pb.RoomSettingsSchema>;
}

/** The `exp` (ms) of a JWT, read without verifying it; undefined if unreadable. */
export function jwtExpiryMs(token: string): number | undefined {
  const part = token.split(".")[1];
  if (!part) return undefined;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const json = JSON.parse(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4))) as { exp?: unknown };
    return typeof json.exp === "number" ? json.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
