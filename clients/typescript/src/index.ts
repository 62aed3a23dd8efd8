export {
  ParlorClient,
  PROTOCOL_VERSION,
  type BodyInit,
  type ClientEvents,
  type ClientOptions,
  type ConnectionState,
  type CreateRoomOptions,
  type JoinOptions,
  type MatchmakeOptions,
  type ReconnectOptions,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./client.js";
export {
  Room,
  type GameEventMessage,
  type GameUpdateEvent,
  type RoomEvents,
  type RoomUpdate,
} from "./room.js";
export { ParlorError, type ClientErrorCode, type ParlorErrorCode } from "./errors.js";
export { actions, applyGameUpdate, type GameActionInit } from "./game.js";
export type { AuthChange, SessionMode, Tokens } from "./auth.js";
export type {
  ChatLine,
  GlobalRole,
  LeaveReason,
  Member,
  ModerationAction,
  PresenceStatus,
  RoomInfo,
  RoomRole,
  RoomSettings,
  User,
  Visibility,
} from "./types.js";
/** The generated wire types (protobuf-es v2), for game views, updates and advanced use. */
export * as proto from "./proto.js";
