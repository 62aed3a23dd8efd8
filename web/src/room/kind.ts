// What a kind's panel gets from the room page, and what it gives back.
import type { GameActionInit, GameEventMessage, Member, RoomRole } from "../sdk.ts";
import type { GameUpdate, GameView } from "../proto.ts";

/** The room page's services for one kind's panel. */
export interface RoomCtx {
  readonly roomId: string;
  readonly kind: string;
  /** My user id. */
  readonly me: string;
  /** My global role is moderator or admin. */
  readonly staff: boolean;
  myRole(): RoomRole;
  members(): Map<string, Member>;
  /** A member's name, or a cached name, or the id. Unknown ids are looked up (REST). */
  name(userId: string): string;
  /** Sends a game action (the GameAction oneof); a refusal is shown and re-thrown. */
  action(action: GameActionOneof): Promise<void>;
  /** Sends a relayed game event. */
  sendEvent(type: string, payload: Uint8Array): void;
  /** Moves my cursor (0..1 on both axes) in the room's presence. */
  setCursor(x: number, y: number): void;
  /** The server's clock, from the SDK's estimate when it has one. */
  serverNow(): number;
  /** The tournament this room belongs to, when the page knows it. */
  tournamentId(): string | undefined;
  /** Something to say in the room's live region for results. */
  announce(text: string): void;
}

/** GameAction's `action` oneof, as protobuf-es types its init shape. */
export type GameActionOneof = GameActionInit;

/** One kind's panel in the room page. */
export interface KindPanel {
  readonly el: HTMLElement;
  /** A GameView: replace the game state. */
  view?(v: GameView): void;
  /** A GameUpdate (seq 0: hidden detail for me). */
  update?(u: GameUpdate, seq: bigint): void;
  /** A relayed GameEvent. */
  event?(e: GameEventMessage): void;
  /** The member list changed (joins, leaves, presence, cursors). */
  membersChanged?(): void;
  destroy(): void;
}

export const isOwner = (ctx: RoomCtx) => ctx.myRole() === "owner";
export const isWatcher = (ctx: RoomCtx) => ctx.myRole() === "watcher";

export const num = (v: bigint | number | undefined): number => (v === undefined ? 0 : Number(v));
