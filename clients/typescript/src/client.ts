import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Auth, unref, type AuthChange, type SessionMode, type Tokens } from "./auth.js";
import { Emitter } from "./emitter.js";
import { ParlorError, fromWire } from "./errors.js";
import { EnvelopeSchema, type Envelope, type RoomJoined, type Welcome } from "./gen/parlor/v1/parlor_pb.js";
import type { GameConfigSchema } from "./gen/parlor/v1/games_pb.js";
import { Room, type JoinSpec } from "./room.js";
import {
  chatLine,
  jwtExpiryMs,
  roomInfo,
  roomInfoFromJson,
  settingsInit,
  toRoomRole,
  toVisibility,
  user as toUser,
  type ChatLine,
  type RoomInfo,
  type RoomRole,
  type RoomSettings,
  type User,
  type Visibility,
} from "./types.js";

/** The protocol version this SDK speaks (Hello.protocol_version). */
export const PROTOCOL_VERSION = 1;

/** `Envelope.body` as an init object, e.g. `{ case: "chat", value: { roomId, text } }`. */
export type BodyInit = NonNullable<MessageInitShape<typeof EnvelopeSchema>["body"]>;
type Body = Envelope["body"];

/** The subset of the WHATWG WebSocket the client uses (browsers' and the `ws` package's). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface ReconnectOptions {
  /** First delay (default 500 ms). */
  initialDelayMs: number;
  /** Longest delay (default 15000 ms). */
  maxDelayMs: number;
  /** Growth per attempt (default 2). */
  factor: number;
  /** 0..1: each delay is cut by up to this share at random (default 0.5), so that a pod's
   * clients do not all come back at once. */
  jitter: number;
  /** Attempts before giving up ("closed"); default unlimited. */
  maxAttempts?: number;
}

export interface ClientOptions {
  /** HTTP(S) base of a pod or its load balancer, e.g. "https://play.example.com". */
  url: string;
  /** WebSocket constructor; default globalThis.WebSocket. In Node < 22 pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /** "tokens" (default): refresh token in memory. "cookie": browsers, HttpOnly cookie. */
  session?: SessionMode;
  fetch?: typeof fetch;
  /** fetch credentials for the auth routes in cookie mode (default "same-origin"). */
  credentials?: RequestCredentials;
  /** Per request (default 10000). */
  requestTimeoutMs?: number;
  reconnect?: Partial<ReconnectOptions> | false;
  /** Requests held while reconnecting (default 256); beyond it they reject QUEUE_FULL. */
  sendQueueLimit?: number;
  /** Ping period (default 5000; 0: never). */
  pingIntervalMs?: number;
  /** An unanswered ping this old means a dead socket: it is dropped and reconnected
   * (default requestTimeoutMs). */
  pingTimeoutMs?: number;
  /** Chat lines kept per room (default 200). */
  chatLimit?: number;
}

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface ClientEvents {
  /** Tokens changed: signed in, refreshed, or signed out (user null). */
  auth: AuthChange;
  /** The first Welcome after connect(). */
  connected: Welcome;
  /** The socket dropped; the client will reconnect (unless reconnect is off). */
  disconnected: { code: number; reason: string };
  /** A reconnect attempt is scheduled. */
  reconnecting: { attempt: number; delayMs: number };
  /** Back: resumed, every room rejoined, queued sends flushed. */
  reconnected: Welcome;
  /** For good: close() was called, or the client gave up (then `error` says why). */
  closed: { code: number; reason: string; error?: ParlorError };
  /** After each Pong. */
  latency: { rttMs: number; smoothedMs: number; serverOffsetMs: number };
  /** A failure no promise is waiting for (a presence update refused, an undecodable frame). */
  error: ParlorError & { requestId?: number; request?: string };
  /** The matchmaker seated you (also when matchmake() will join for you). */
  matched: { roomId: string; kind: string; players: string[] };
  /** A private message to or from you. */
  private_message: ChatLine;
}

export interface CreateRoomOptions {
  name: string;
  kind: string;
  visibility?: Visibility;
  password?: string;
  maxMembers?: number;
  settings?: Partial<RoomSettings>;
  persistent?: boolean;
  /** A server-run kind's config, e.g. `{ config: { case: "dice", value: { maxDice: 20 } } }`. */
  game?: MessageInitShape<typeof GameConfigSchema>;
}

export interface JoinOptions {
  password?: string;
  /** "player" (default) or "watcher". */
  role?: RoomRole;
}

export interface MatchmakeOptions {
  minPlayers?: number;
  maxPlayers?: number;
  /** Cancels the queue ticket (sends Matchmake{cancel}) and rejects with ABORTED. */
  signal?: AbortSignal;
}

/** @internal What a Room may use of its client. */
export interface Internals {
  userId(): string;
  serverNow(): number;
  chatLimit: number;
  echo<T>(body: BodyInit, waiters: { id: number; key: string }[], key: string): Promise<T>;
  answer<T>(body: BodyInit, map: (env: Envelope) => T): Promise<T>;
  fire(body: BodyInit): Promise<void>;
  settle(id: number, value: unknown): void;
  forget(room: Room): void;
}

interface Pending {
  id: number;
  body: BodyInit;
  mode: "answer" | "echo" | "fire";
  map: (env: Envelope) => unknown;
  resolve: (v: unknown) => void;
  reject: (e: ParlorError) => void;
  timer?: ReturnType<typeof setTimeout>;
  room?: Room;
}

const ROOM_ID = /^r_[0-9a-f]{24}$/;
const DEFAULT_RECONNECT: ReconnectOptions = { initialDelayMs: 500, maxDelayMs: 15_000, factor: 2, jitter: 0.5 };

/**
 * One player's connection to Parlor: REST auth, one WebSocket, the rooms joined on it,
 * and automatic reconnection that resumes every room where it left off.
 */
export class ParlorClient extends Emitter<ClientEvents> {
  /** The rooms you are in, by id. */
  readonly rooms = new Map<string, Room>();
  state: ConnectionState = "idle";
  sessionId = "";
  /** Last ping round trip (ms), and its smoothed value; undefined before the first Pong. */
  latencyMs: number | undefined;
  smoothedLatencyMs: number | undefined;
  /** server clock - local clock, estimated from the lowest-latency recent ping. */
  serverOffsetMs = 0;

  private readonly base: string;
  private readonly wsUrl: string;
  private readonly WS: WebSocketConstructor | undefined;
  private readonly timeoutMs: number;
  private readonly queueLimit: number;
  private readonly pingEvery: number;
  private readonly pingTimeout: number;
  private readonly backoff: ReconnectOptions | false;
  private readonly auth: Auth;
  private readonly chatLimit: number;

  private welcomeUser: User | null = null;
  private resumeToken = "";
  private socket: WebSocketLike | null = null;
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly queue: Pending[] = [];
  /** Fire-and-forget requests, remembered briefly so a late Error can name them. */
  private readonly fired = new Map<number, string>();
  private readonly matchWaiters = new Map<
    number,
    { resolve: (m: ClientEvents["matched"]) => void; reject: (e: ParlorError) => void }
  >();
  private lastWelcome: Welcome | undefined;
  /** Bumped by close() and by each new connection cycle; stale async work checks it. */
  private gen = 0;
  private connecting: Promise<Welcome> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private sleeper: { timer: ReturnType<typeof setTimeout>; wake: () => void } | undefined;
  private drainHintMs: number | undefined;
  private samples: { rtt: number; offset: number }[] = [];
  private readonly internals: Internals;

  constructor(opts: ClientOptions) {
    super();
    this.base = opts.url.replace(/\/+$/, "");
    this.wsUrl = this.base.replace(/^http/, "ws") + "/ws";
    this.WS = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    this.timeoutMs = opts.requestTimeoutMs ?? 10_000;
    this.queueLimit = opts.sendQueueLimit ?? 256;
    this.pingEvery = opts.pingIntervalMs ?? 5_000;
    this.pingTimeout = opts.pingTimeoutMs ?? this.timeoutMs;
    this.backoff = opts.reconnect === false ? false : { ...DEFAULT_RECONNECT, ...opts.reconnect };
    this.chatLimit = opts.chatLimit ?? 200;
    this.watchNetwork();
    const f = opts.fetch ?? globalThis.fetch;
    this.auth = new Auth({
      base: this.base,
      mode: opts.session ?? "tokens",
      fetch: (...a) => f(...a),
      credentials: opts.credentials ?? "same-origin",
      timeoutMs: this.timeoutMs,
      onChange: (c) => this.emit("auth", c),
    });
    const self = this;
    this.internals = {
      userId: () => this.welcomeUser?.id ?? this.auth.user?.id ?? "",
      serverNow: () => this.serverNow(),
      get chatLimit() {
        return self.chatLimit;
      },
      echo: (body, waiters, key) => this.send(body, "echo", (p) => waiters.push({ id: p.id, key })),
      answer: (body, map) => this.send(body, "answer", undefined, map),
      fire: (body) => this.send(body, "fire"),
      settle: (id, value) => this.settle(id, value),
      forget: (room) => {
        if (this.rooms.get(room.id) === room) this.rooms.delete(room.id);
      },
    };
  }

  // --- auth (REST) ---

  /** The signed-in user: from the last Welcome, else from the last token answer. */
  get user(): User | null {
    return this.welcomeUser ?? this.auth.user;
  }

  /** Tokens mode: the current tokens, to persist if the app must. Cookie mode: refreshToken is empty. */
  get tokens(): Tokens | null {
    return this.auth.current;
  }

  guest(name: string): Promise<User> {
    return this.signIn(this.auth.signIn("/api/v1/auth/guest", { name }));
  }
  register(login: string, password: string, name: string): Promise<User> {
    return this.signIn(this.auth.signIn("/api/v1/auth/register", { login, password, name }));
  }
  login(login: string, password: string): Promise<User> {
    return this.signIn(this.auth.signIn("/api/v1/auth/login", { login, password }));
  }
  /** A socket opened as someone else (a visitor, before signing in) is closed, so that the
   * next connect() says Hello as the new user. */
  private async signIn(signedIn: Promise<User>): Promise<User> {
    const user = await signedIn;
    if (this.welcomeUser && this.welcomeUser.id !== user.id && this.state !== "idle") {
      this.close();
      this.resumeToken = "";
      this.welcomeUser = null;
      this.state = "idle";
    }
    return user;
  }
  /** New tokens now. In cookie mode, also how a reloaded page gets its session back. */
  refresh(): Promise<User> {
    return this.auth.refresh();
  }
  /** Signs out (cookie mode: clears the cookie) and closes the connection. */
  async logout(): Promise<void> {
    // Signed out before the socket closes, so that "closed" comes with no user.
    this.resumeToken = "";
    this.welcomeUser = null;
    try {
      await this.auth.logout();
    } finally {
      this.close();
    }
  }
  /** Tokens mode: adopt tokens kept from an earlier run. */
  useTokens(t: { accessToken: string; refreshToken?: string; expiresAt?: number }, user: User | null = null): void {
    const exp = t.expiresAt ?? jwtExpiryMs(t.accessToken);
    this.auth.use(exp === undefined ? t : { ...t, expiresAt: exp }, user);
  }

  /** GET /api/v1/me. */
  me(): Promise<User & { login?: string; created_at_ms?: number }> {
    return this.auth.call("GET", "/api/v1/me");
  }

  /** Any other REST route, with the bearer token and one refresh on a 401. */
  api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    return this.auth.call<T>(method, path, body);
  }

  // --- connection ---

  /** Opens the WebSocket and says Hello; resolves with the Welcome. */
  connect(): Promise<Welcome> {
    if (this.connecting) return this.connecting;
    if (this.state === "open" && this.lastWelcome) return Promise.resolve(this.lastWelcome);
    if (this.state === "reconnecting") {
      return new Promise((resolve, reject) => {
        const a = this.once("reconnected", (w) => {
          b();
          resolve(w);
        });
        const b = this.once("closed", (c) => {
          a();
          reject(c.error ?? new ParlorError("DISCONNECTED", c.reason));
        });
      });
    }
    this.state = "connecting";
    const gen = ++this.gen;
    const p = this.establish(false, gen).then(
      (w) => {
        this.connecting = null;
        this.emit("connected", w);
        return w;
      },
      (e: ParlorError) => {
        this.connecting = null;
        if (gen === this.gen) this.shutDown(e.code === "DISCONNECTED" ? 1006 : 4002, e.message, e);
        throw e;
      },
    );
    this.connecting = p;
    return p;
  }

  /** Closes for good: pending requests reject DISCONNECTED, rooms emit "left". */
  close(): void {
    if (this.state === "idle" || this.state === "closed") return;
    this.shutDown(1000, "closed by the client");
  }

  /** The server's clock as estimated from pings (ms since the epoch). */
  serverNow(): number {
    return Date.now() + this.serverOffsetMs;
  }

  /** Sends a Ping now; resolves with the round trip in ms. */
  ping(): Promise<number> {
    const sock = this.socket;
    if (!sock || this.state !== "open") return Promise.reject(new ParlorError("DISCONNECTED", "not connected"));
    return this.pingOn(sock);
  }

  // --- rooms ---

  /** Creates a room and joins it as its owner. */
  createRoom(o: CreateRoomOptions): Promise<Room> {
    const body: BodyInit = {
      case: "createRoom",
      value: {
        name: o.name,
        kind: o.kind,
        visibility: toVisibility(o.visibility),
        password: o.password ?? "",
        maxMembers: o.maxMembers ?? 0,
        settings: settingsInit(o.settings),
        persistent: o.persistent ?? false,
        ...(o.game ? { game: o.game } : {}),
      },
    };
    return this.joinWith(body, { password: o.password ?? "", role: undefined });
  }

  /**
   * Joins a room by id ("r_" and 24 hex digits) or by its short code (any case, dashes and
   * spaces ignored); or say which with `{ id }` / `{ code }`.
   */
  joinRoom(target: string | { id: string } | { code: string }, opts: JoinOptions = {}): Promise<Room> {
    const byId = typeof target === "string" ? ROOM_ID.test(target) : "id" in target;
    const key = typeof target === "string" ? target : "id" in target ? target.id : target.code;
    const body: BodyInit = {
      case: "joinRoom",
      value: {
        ...(byId ? { roomId: key } : { code: key }),
        password: opts.password ?? "",
        role: toRoomRole(opts.role),
      },
    };
    return this.joinWith(body, { password: opts.password ?? "", role: opts.role });
  }

  /** Joins the first public room of `kind` with a free seat, else creates one. */
  joinOrCreate(kind: string, opts: { role?: RoomRole } = {}): Promise<Room> {
    return this.joinWith(
      { case: "joinOrCreate", value: { kind, role: toRoomRole(opts.role) } },
      { password: "", role: opts.role },
    );
  }

  /** Public rooms: over the socket when there is one (visitors too), else over REST. */
  async listRooms(q: { kind?: string; offset?: number; limit?: number } = {}): Promise<{ rooms: RoomInfo[]; total: number }> {
    if (this.state === "idle" || this.state === "closed") {
      const params = new URLSearchParams();
      if (q.kind) params.set("kind", q.kind);
      if (q.offset) params.set("offset", String(q.offset));
      if (q.limit) params.set("limit", String(q.limit));
      const j = await this.auth.call<{ rooms: Record<string, unknown>[]; total: number }>(
        "GET",
        `/api/v1/rooms?${params}`,
      );
      return { rooms: j.rooms.map(roomInfoFromJson), total: j.total };
    }
    return this.send(
      { case: "listRooms", value: { kind: q.kind ?? "", offset: q.offset ?? 0, limit: q.limit ?? 0 } },
      "answer",
      undefined,
      (env) => {
        if (env.body.case !== "roomList") throw new ParlorError("PROTOCOL", `wanted RoomList, got ${env.body.case}`);
        return { rooms: env.body.value.rooms.map(roomInfo), total: env.body.value.total };
      },
    );
  }

  /**
   * Queues for a match of `kind` ("match", or "trivia"), waits for the matchmaker's
   * Matched (no time limit: cancel with `signal`), then joins the room it made and
   * resolves with it. A dropped connection leaves the queue, and rejects DISCONNECTED.
   */
  async matchmake(kind: string, opts: MatchmakeOptions = {}): Promise<Room> {
    if (opts.signal?.aborted) throw new ParlorError("ABORTED", "matchmaking aborted");
    const m = await new Promise<ClientEvents["matched"]>((resolve, reject) => {
      let id = 0;
      this.send(
        { case: "matchmake", value: { kind, minPlayers: opts.minPlayers ?? 0, maxPlayers: opts.maxPlayers ?? 0 } },
        "answer",
        (p) => {
          id = p.id;
          this.matchWaiters.set(p.id, { resolve, reject });
        },
      ).catch((e: ParlorError) => {
        this.matchWaiters.delete(id);
        reject(e);
      });
      opts.signal?.addEventListener(
        "abort",
        () => {
          if (!this.matchWaiters.delete(id)) return;
          this.send({ case: "matchmake", value: { kind, cancel: true } }, "answer").catch(() => {});
          reject(new ParlorError("ABORTED", "matchmaking aborted"));
        },
        { once: true },
      );
    });
    return this.joinRoom({ id: m.roomId });
  }

  /** A private message; resolves with your copy, which is the pod's acknowledgement. */
  sendPrivate(toUserId: string, text: string): Promise<ChatLine> {
    return this.send({ case: "chat", value: { toUserId, text } }, "echo", (p) => this.privateWaiters.push({ id: p.id, key: `${toUserId}\n${text}` }));
  }
  private readonly privateWaiters: { id: number; key: string }[] = [];

  // --- internals ---

  private joinWith(body: BodyInit, spec: JoinSpec): Promise<Room> {
    return this.send(body, "answer", undefined, (env) => {
      if (env.body.case !== "roomJoined") throw new ParlorError("PROTOCOL", `wanted RoomJoined, got ${env.body.case}`);
      return this.adopt(env.body.value, spec);
    });
  }

  /** Runs inside frame dispatch, so the replayed events and the GameView right behind it find the room. */
  private adopt(j: RoomJoined, spec: JoinSpec): Room {
    const id = j.room?.id ?? "";
    const known = this.rooms.get(id);
    if (known) {
      known.spec = spec;
      known.applySnapshot(j, Number(j.lastSeq));
      return known;
    }
    const room = new Room(this.internals, j, spec);
    this.rooms.set(id, room);
    return room;
  }

  /**
   * Sends a request, or queues it while (re)connecting. "answer": resolves with map(the
   * frame that carries its request_id). "echo": resolved by its room (settle) when the
   * event it made comes back. "fire": resolves once written.
   */
  private send<T = Envelope>(
    body: BodyInit,
    mode: Pending["mode"],
    registered?: (p: Pending) => void,
    map?: (env: Envelope) => T,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const p: Pending = {
        id: ++this.nextId,
        body,
        mode,
        map: map ?? ((env) => env),
        resolve: resolve as (v: unknown) => void,
        reject,
      };
      if (this.state === "idle" || this.state === "closed") {
        return reject(new ParlorError("DISCONNECTED", "not connected: call connect() first"));
      }
      const roomId = (body.value as { roomId?: string } | undefined)?.roomId;
      if (roomId) p.room = this.rooms.get(roomId);
      // readyState 1 is OPEN: a socket already closing takes the request into the queue.
      if (this.state === "open" && this.socket && this.socket.readyState === 1) {
        registered?.(p);
        this.write(this.socket, p);
        return;
      }
      if (this.queue.length >= this.queueLimit) {
        return reject(new ParlorError("QUEUE_FULL", `${this.queueLimit} requests already wait for the reconnect`));
      }
      registered?.(p);
      this.queue.push(p);
    });
  }

  private write(sock: WebSocketLike, p: Pending): void {
    const frame = toBinary(EnvelopeSchema, create(EnvelopeSchema, { requestId: BigInt(p.id), body: p.body }));
    try {
      sock.send(frame);
    } catch (e) {
      p.room?.unwait(p.id);
      p.reject(new ParlorError("DISCONNECTED", "the socket is closing", { cause: e }));
      return;
    }
    if (p.mode === "fire") {
      this.fired.set(p.id, p.body.case ?? "");
      const t = setTimeout(() => this.fired.delete(p.id), this.timeoutMs);
      unref(t);
      p.resolve(undefined);
      return;
    }
    this.pending.set(p.id, p);
    // Matchmaking waits for Matched without a limit; only its Ack is timed.
    p.timer = setTimeout(() => {
      if (!this.pending.delete(p.id)) return;
      p.room?.unwait(p.id);
      this.privateUnwait(p.id);
      this.failWaiter(p.id, new ParlorError("TIMEOUT", `no answer to ${p.body.case} within ${this.timeoutMs} ms`));
      p.reject(new ParlorError("TIMEOUT", `no answer to ${p.body.case} within ${this.timeoutMs} ms`));
    }, this.timeoutMs);
  }

  private settle(id: number, value: unknown): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    p.resolve(value);
  }

  private failWaiter(id: number, e: ParlorError): void {
    const w = this.matchWaiters.get(id);
    this.matchWaiters.delete(id);
    w?.reject(e);
  }

  private privateUnwait(id: number): void {
    const i = this.privateWaiters.findIndex((w) => w.id === id);
    if (i >= 0) this.privateWaiters.splice(i, 1);
  }

  /** One connection cycle: socket, Hello (with a fallback ladder on auth failures), rejoins, flush. */
  private async establish(isReconnect: boolean, gen: number): Promise<Welcome> {
    let triedAccess = false;
    let refreshed = false;
    for (;;) {
      const useResume =
        isReconnect && this.resumeToken !== "" && (jwtExpiryMs(this.resumeToken) ?? 0) - Date.now() > 5_000;
      let access: string | undefined;
      if (!useResume) {
        access = await this.auth.token().catch((e: unknown) => {
          // A network failure refreshing is worth a retry later; a refused refresh is not.
          if (e instanceof ParlorError && e.code === "NETWORK") throw new ParlorError("DISCONNECTED", e.message, { cause: e });
          throw e;
        });
        triedAccess = true;
      }
      this.checkGen(gen);
      const sock = await this.openSocket(gen);
      let welcome: Welcome;
      try {
        welcome = await this.hello(sock, useResume ? { resumeToken: this.resumeToken } : { accessToken: access ?? "" });
      } catch (e) {
        this.detach(sock);
        if (!(e instanceof ParlorError) || !e.isAuth) throw e;
        if (useResume) {
          this.resumeToken = ""; // stale: fall back to the access token
          continue;
        }
        if (triedAccess && !refreshed && this.auth.canRefresh && access) {
          refreshed = true;
          await this.auth.refresh();
          continue;
        }
        throw e;
      }
      this.checkGen(gen);
      this.sessionId = welcome.sessionId;
      this.welcomeUser = toUser(welcome.user);
      this.resumeToken = welcome.resumeToken;
      this.observeClock(Number(welcome.serverTimeMs), 0);
      if (isReconnect) await this.rejoinAll(sock, gen);
      this.checkGen(gen);
      if (this.socket !== sock) throw new ParlorError("DISCONNECTED", "the socket dropped while rejoining");
      this.state = "open";
      this.lastWelcome = welcome;
      this.drainHintMs = undefined;
      this.flushQueue(sock);
      this.startPings(sock);
      return welcome;
    }
  }

  private checkGen(gen: number): void {
    if (gen !== this.gen) throw new ParlorError("DISCONNECTED", "superseded by close() or a newer connect()");
  }

  private openSocket(gen: number): Promise<WebSocketLike> {
    const WS = this.WS;
    if (!WS) return Promise.reject(new ParlorError("PROTOCOL", "no WebSocket: pass one in ClientOptions.WebSocket"));
    return new Promise((resolve, reject) => {
      let sock: WebSocketLike;
      try {
        sock = new WS(this.wsUrl, ["parlor.v1"]);
      } catch (e) {
        return reject(new ParlorError("DISCONNECTED", `cannot open ${this.wsUrl}`, { cause: e }));
      }
      sock.binaryType = "arraybuffer";
      const t = setTimeout(() => {
        this.detach(sock);
        reject(new ParlorError("TIMEOUT", `${this.wsUrl} did not open within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      sock.onopen = () => {
        clearTimeout(t);
        if (gen !== this.gen) {
          this.detach(sock);
          return reject(new ParlorError("DISCONNECTED", "superseded"));
        }
        this.socket = sock;
        sock.onmessage = (ev) => this.onFrame(sock, ev.data);
        sock.onclose = (ev) => this.onClose(sock, ev.code, ev.reason);
        resolve(sock);
      };
      sock.onerror = () => {}; // onclose follows with the code
      sock.onclose = (ev) => {
        clearTimeout(t);
        reject(new ParlorError("DISCONNECTED", `${this.wsUrl} closed before opening (${ev.code})`));
      };
    });
  }

  private hello(sock: WebSocketLike, tokens: { accessToken?: string; resumeToken?: string }): Promise<Welcome> {
    return new Promise<Welcome>((resolve, reject) => {
      const p: Pending = {
        id: ++this.nextId,
        body: { case: "hello", value: { protocolVersion: PROTOCOL_VERSION, ...tokens } },
        mode: "answer",
        map: (env) => {
          if (env.body.case !== "welcome") throw new ParlorError("PROTOCOL", `wanted Welcome, got ${env.body.case}`);
          return env.body.value;
        },
        resolve: resolve as (v: unknown) => void,
        reject,
      };
      this.write(sock, p);
    });
  }

  private async rejoinAll(sock: WebSocketLike, gen: number): Promise<void> {
    const rooms = [...this.rooms.values()];
    await Promise.all(
      rooms.map(
        (room) =>
          new Promise<void>((resolve, reject) => {
            const p: Pending = {
              id: ++this.nextId,
              body: {
                case: "joinRoom",
                value: {
                  roomId: room.id,
                  lastSeq: BigInt(room.lastSeq),
                  password: room.spec.password,
                  role: toRoomRole(room.spec.role),
                },
              },
              mode: "answer",
              map: (env) => {
                if (env.body.case === "roomJoined") room.applySnapshot(env.body.value, Number(env.body.value.lastSeq));
              },
              resolve: () => resolve(),
              reject: (e) => {
                if (e.code === "DISCONNECTED" || e.code === "TIMEOUT" || gen !== this.gen) return reject(e);
                // The room is gone for us (closed, banned, full): it ends here, the others go on.
                room.gone(e.code === "BANNED" ? "banned" : "closed", e);
                resolve();
              },
            };
            this.write(sock, p);
          }),
      ),
    );
  }

  private flushQueue(sock: WebSocketLike): void {
    const q = this.queue.splice(0);
    for (const p of q) {
      const roomId = (p.body.value as { roomId?: string } | undefined)?.roomId;
      if (roomId && p.room && !this.rooms.has(roomId)) {
        p.room.unwait(p.id);
        p.reject(new ParlorError("NOT_IN_ROOM", "the room was lost while reconnecting"));
        continue;
      }
      this.write(sock, p);
    }
  }

  private onFrame(sock: WebSocketLike, data: unknown): void {
    if (sock !== this.socket) return;
    let env: Envelope;
    try {
      const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : (data as Uint8Array);
      env = fromBinary(EnvelopeSchema, bytes);
    } catch (e) {
      this.emit("error", new ParlorError("PROTOCOL", "undecodable frame", { cause: e }));
      return;
    }
    const rid = Number(env.requestId);
    const seq = Number(env.seq);
    const body = env.body;
    if (body.case === "error") {
      const err = fromWire(body.value.code, body.value.message, body.value.retryAfterMs);
      const p = rid ? this.pending.get(rid) : undefined;
      if (p) {
        this.pending.delete(rid);
        clearTimeout(p.timer);
        p.room?.unwait(rid);
        this.privateUnwait(rid);
        this.failWaiter(rid, err);
        p.reject(err);
      } else if (rid && this.matchWaiters.has(rid)) {
        this.failWaiter(rid, err); // a group whose room could not be made
      } else {
        this.emit("error", Object.assign(err, { requestId: rid, request: this.fired.get(rid) }));
      }
      return;
    }
    if (body.case === "matched") {
      const m = { roomId: body.value.roomId, kind: body.value.kind, players: body.value.players };
      this.emit("matched", m);
      const w = this.matchWaiters.get(rid);
      this.matchWaiters.delete(rid);
      w?.resolve(m);
      return;
    }
    if (body.case === "reconnect") {
      this.drainHintMs = body.value.retryAfterMs;
      return;
    }
    const p = rid ? this.pending.get(rid) : undefined;
    if (p && p.mode === "answer") {
      this.pending.delete(rid);
      clearTimeout(p.timer);
      try {
        p.resolve(p.map(env));
      } catch (e) {
        p.reject(e instanceof ParlorError ? e : new ParlorError("PROTOCOL", String(e)));
      }
      // The sender's copy of a targeted game event is both its answer and an event.
      if (body.case !== "gameEvent") return;
    } else if (rid && body.case === "ack") {
      return; // the answer to a request that timed out here; its event came on its own
    } else if (rid && body.case === "roomJoined") {
      // A join that timed out here succeeded there: leave, as the caller was told it failed.
      const id = body.value.room?.id;
      if (id && !this.rooms.has(id)) this.send({ case: "leaveRoom", value: { roomId: id } }, "answer").catch(() => {});
      return;
    }
    this.route(seq, body);
  }

  private route(seq: number, body: Body): void {
    let roomId: string | undefined;
    switch (body.case) {
      case "chatMessage":
        if (!body.value.roomId) return this.onPrivate(body.value);
        roomId = body.value.roomId;
        break;
      case "memberJoined":
      case "memberLeft":
      case "memberUpdated":
      case "moderated":
      case "gameEvent":
      case "gameUpdate":
      case "gameView":
      case "roomLeft":
        roomId = body.value.roomId;
        break;
      case "ack":
        roomId = body.value.roomId;
        seq = Number(body.value.seq);
        if (!roomId || seq === 0) return;
        break;
      case "roomUpdated":
      case "roomJoined":
        roomId = body.value.room?.id;
        break;
      default:
        return; // pong for a timed-out ping, and the like
    }
    if (roomId) this.rooms.get(roomId)?.handle(seq, body);
  }

  private onPrivate(m: Parameters<typeof chatLine>[0]): void {
    const line = chatLine(m, 0);
    if (line.fromUserId === this.internals.userId()) {
      const key = `${line.toUserId}\n${line.text}`;
      const i = this.privateWaiters.findIndex((w) => w.key === key);
      if (i >= 0) this.settle(this.privateWaiters.splice(i, 1)[0]!.id, line);
    }
    this.emit("private_message", line);
  }

  /** In a browser: going offline drops the socket at once (an open socket can survive an
   * outage unnoticed until pings time out), and coming back online retries at once. */
  private watchNetwork(): void {
    const w = globalThis as unknown as {
      addEventListener?: (type: string, fn: () => void) => void;
      navigator?: { onLine?: boolean };
    };
    if (typeof w.addEventListener !== "function" || w.navigator?.onLine === undefined) return;
    w.addEventListener("offline", () => {
      const sock = this.socket;
      if (sock && this.state === "open") {
        this.detach(sock);
        this.onClose(sock, 1006, "the network went offline");
      }
    });
    w.addEventListener("online", () => {
      if (this.sleeper) {
        clearTimeout(this.sleeper.timer);
        this.sleeper.wake();
        this.sleeper = undefined;
      }
    });
  }

  private onClose(sock: WebSocketLike, code: number, reason: string): void {
    if (sock !== this.socket) return;
    this.socket = null;
    this.stopPings();
    this.rejectSent(new ParlorError("DISCONNECTED", `the connection dropped (${code}${reason ? ` ${reason}` : ""})`));
    if (this.state !== "open") return; // a connection cycle under way sees its own failure
    // 4001: this SDK's protocol version is refused; retrying cannot help.
    if (!this.backoff || code === 4001) {
      this.shutDown(code, reason || "connection lost", new ParlorError("DISCONNECTED", `closed ${code} ${reason}`));
      return;
    }
    this.state = "reconnecting";
    this.emit("disconnected", { code, reason });
    // A draining pod says when to come back; RESUME (4008) wants us back at once.
    const first = code === 4008 ? 0 : this.drainHintMs;
    void this.reconnectLoop(first);
  }

  private async reconnectLoop(firstDelay: number | undefined): Promise<void> {
    const gen = ++this.gen;
    const b = this.backoff as ReconnectOptions;
    for (let attempt = 1; ; attempt++) {
      if (b.maxAttempts !== undefined && attempt > b.maxAttempts) {
        this.shutDown(1006, "gave up reconnecting", new ParlorError("DISCONNECTED", `gave up after ${b.maxAttempts} attempts`));
        return;
      }
      const base = Math.min(b.maxDelayMs, b.initialDelayMs * Math.pow(b.factor, attempt - 1));
      const delay =
        attempt === 1 && firstDelay !== undefined ? firstDelay : Math.round(base * (1 - b.jitter * Math.random()));
      this.emit("reconnecting", { attempt, delayMs: delay });
      await this.sleep(delay);
      if (gen !== this.gen) return;
      try {
        const w = await this.establish(true, gen);
        this.emit("reconnected", w);
        return;
      } catch (e) {
        if (gen !== this.gen) return;
        this.detach(this.socket);
        this.socket = null;
        this.rejectSent(e instanceof ParlorError ? e : new ParlorError("DISCONNECTED", String(e)));
        const err = e instanceof ParlorError ? e : new ParlorError("DISCONNECTED", String(e));
        // Credentials that cannot be renewed end it; anything else is tried again.
        if (err.isAuth || err.code === "UNSUPPORTED_VERSION") {
          this.shutDown(4002, err.message, err);
          return;
        }
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.sleeper = undefined;
        resolve();
      }, ms);
      this.sleeper = { timer, wake: resolve };
    });
  }

  /** Rejects every request written to the socket that dropped; queued ones stay queued. */
  private rejectSent(e: ParlorError): void {
    const sent = [...this.pending.values()];
    this.pending.clear();
    for (const p of sent) {
      clearTimeout(p.timer);
      p.room?.unwait(p.id);
      this.privateUnwait(p.id);
      p.reject(e);
    }
    // The session's end left every matchmaking queue (tickets still queued here are not sent yet).
    const queued = new Set(this.queue.map((p) => p.id));
    for (const id of [...this.matchWaiters.keys()]) if (!queued.has(id)) this.failWaiter(id, e);
  }

  private shutDown(code: number, reason: string, error?: ParlorError): void {
    this.gen++;
    if (this.sleeper) {
      clearTimeout(this.sleeper.timer);
      this.sleeper.wake();
      this.sleeper = undefined;
    }
    this.stopPings();
    const sock = this.socket;
    this.socket = null;
    if (sock) {
      this.detach(sock);
    }
    const e = error ?? new ParlorError("DISCONNECTED", reason);
    this.rejectSent(e);
    for (const p of this.queue.splice(0)) {
      p.room?.unwait(p.id);
      this.privateUnwait(p.id);
      this.failWaiter(p.id, e);
      p.reject(e);
    }
    for (const room of [...this.rooms.values()]) room.gone("disconnected", error);
    this.rooms.clear();
    this.state = "closed";
    this.emit("closed", error ? { code, reason, error } : { code, reason });
  }

  /** Stops listening to a socket and closes it. */
  private detach(sock: WebSocketLike | null): void {
    if (!sock) return;
    sock.onmessage = null;
    sock.onclose = null;
    sock.onopen = null;
    sock.onerror = () => {};
    try {
      sock.close(1000);
    } catch {
      /* already closed */
    }
  }

  // --- pings ---

  private startPings(sock: WebSocketLike): void {
    this.stopPings();
    if (this.pingEvery <= 0) return;
    this.pingTimer = setInterval(() => {
      this.pingOn(sock).catch(() => {});
    }, this.pingEvery);
    unref(this.pingTimer);
    this.pingOn(sock).catch(() => {});
  }

  private stopPings(): void {
    clearInterval(this.pingTimer);
    this.pingTimer = undefined;
  }

  private pingOn(sock: WebSocketLike): Promise<number> {
    const sent = Date.now();
    let answered = false;
    return new Promise<number>((resolve, reject) => {
      const p: Pending = {
        id: ++this.nextId,
        body: { case: "ping", value: { clientTimeMs: BigInt(sent) } },
        mode: "answer",
        map: (env) => {
          if (env.body.case !== "pong") throw new ParlorError("PROTOCOL", `wanted Pong, got ${env.body.case}`);
          answered = true;
          const rtt = Date.now() - sent;
          this.observeClock(Number(env.body.value.serverTimeMs), rtt, sent);
          return rtt;
        },
        resolve: resolve as (v: unknown) => void,
        reject,
      };
      this.write(sock, p);
      // A socket that answers no ping is dead even if it looks open (a half-open TCP).
      const dead = setTimeout(() => {
        if (answered || this.socket !== sock) return;
        this.detach(sock);
        this.onClose(sock, 4000, "ping timeout");
      }, this.pingTimeout);
      unref(dead);
    });
  }

  private observeClock(serverMs: number, rtt: number, sentAt?: number): void {
    if (sentAt === undefined) {
      if (!this.samples.length) this.serverOffsetMs = serverMs - Date.now();
      return;
    }
    this.latencyMs = rtt;
    this.smoothedLatencyMs = this.smoothedLatencyMs === undefined ? rtt : this.smoothedLatencyMs * 0.8 + rtt * 0.2;
    this.samples.push({ rtt, offset: serverMs - (sentAt + rtt / 2) });
    if (this.samples.length > 8) this.samples.shift();
    // The fastest round trip bounds the clock error best.
    this.serverOffsetMs = this.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a)).offset;
    this.emit("latency", { rttMs: rtt, smoothedMs: this.smoothedLatencyMs, serverOffsetMs: this.serverOffsetMs });
  }
}
