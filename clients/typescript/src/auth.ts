// REST calls and the session's credentials, in one of two modes:
// - "tokens": the refresh token is kept in memory (Node, native apps; persist it yourself
//   from `tokens` if you must).
// - "cookie": the pod keeps the refresh token in an HttpOnly cookie scoped to
//   /api/v1/auth/session; the access token lives only in memory, never in storage.
import { ParlorError, fromHttp } from "./errors.js";
import { type User, type GlobalRole } from "./types.js";

export type SessionMode = "tokens" | "cookie";

export interface Tokens {
  accessToken: string;
  /** Empty in cookie mode. */
  refreshToken: string;
  /** When the access token expires (ms since the epoch). */
  expiresAt: number;
}

/** What the `auth` event carries: the signed-in user, or null once signed out. */
export interface AuthChange {
  user: User | null;
  /** Why the session ended, when it did not end by `logout()`. */
  error?: ParlorError;
}

interface TokenJson {
  access_token?: string;
  refresh_token?: string;
  expires_in?: number;
  user?: { id?: string; name?: string; role?: string };
}

/** Refresh this long before expiry at most, and at most a fifth of the lifetime early. */
const REFRESH_LEAD_MS = 60_000;
/** A failed refresh (network) is tried again after this, while the token lasts. */
const RETRY_MS = 5_000;

export interface AuthDeps {
  base: string;
  mode: SessionMode;
  fetch: typeof fetch;
  credentials: RequestCredentials;
  timeoutMs: number;
  onChange: (c: AuthChange) => void;
}

export class Auth {
  private tokens: Tokens | null = null;
  user: User | null = null;
  private inflight: Promise<User> | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly d: AuthDeps) {}

  get accessToken(): string | undefined {
    return this.tokens?.accessToken;
  }

  get current(): Tokens | null {
    return this.tokens ? { ...this.tokens } : null;
  }

  /** Whether there is a credential a refresh can use. */
  get canRefresh(): boolean {
    return this.d.mode === "cookie" || !!this.tokens?.refreshToken;
  }

  /** True while the access token has more than `marginMs` left. */
  fresh(marginMs = 5_000): boolean {
    return !!this.tokens && this.tokens.expiresAt - Date.now() > marginMs;
  }

  signIn(path: string, body: unknown): Promise<User> {
    const headers: Record<string, string> = {};
    if (this.d.mode === "cookie") headers["X-Parlor-Session"] = "cookie";
    return this.exchange(this.json<TokenJson>("POST", path, body, headers));
  }

  /** Trades the refresh credential for new tokens; concurrent calls share one request,
   * since refresh tokens rotate and reusing one revokes its whole family. */
  refresh(): Promise<User> {
    if (this.inflight) return this.inflight;
    let req: Promise<TokenJson>;
    if (this.d.mode === "cookie") {
      req = this.json("POST", "/api/v1/auth/session/refresh", undefined, { "X-Parlor-CSRF": "1" });
    } else if (this.tokens?.refreshToken) {
      req = this.json("POST", "/api/v1/auth/refresh", { refresh_token: this.tokens.refreshToken }, {});
    } else {
      return Promise.reject(new ParlorError("UNAUTHENTICATED", "no refresh token: sign in first"));
    }
    const p = this.exchange(req).then(
      (u) => {
        this.inflight = null;
        return u;
      },
      (e: unknown) => {
        this.inflight = null;
        if (e instanceof ParlorError && (e.isAuth || e.status === 401)) {
          this.clear({ user: null, error: e });
        } else if (this.fresh(0)) {
          this.schedule(RETRY_MS);
        }
        throw e;
      },
    );
    this.inflight = p;
    return p;
  }

  async logout(): Promise<void> {
    const was = this.tokens !== null || this.user !== null;
    try {
      if (this.d.mode === "cookie") {
        await this.json("POST", "/api/v1/auth/session/logout", undefined, { "X-Parlor-CSRF": "1" });
      }
    } finally {
      this.clear(was ? { user: null } : null);
    }
  }

  /** Adopts tokens kept from an earlier run (tokens mode). */
  use(t: { accessToken: string; refreshToken?: string; expiresAt?: number }, user: User | null): void {
    this.tokens = {
      accessToken: t.accessToken,
      refreshToken: t.refreshToken ?? "",
      expiresAt: t.expiresAt ?? Date.now() + 60_000,
    };
    this.user = user;
    this.schedule();
    this.d.onChange({ user });
  }

  dispose(): void {
    clearTimeout(this.timer);
  }

  /** An access token good for `marginMs` more, refreshing if needed; undefined if signed out. */
  async token(marginMs = 5_000): Promise<string | undefined> {
    if (!this.tokens && this.d.mode !== "cookie") return undefined;
    if (this.fresh(marginMs)) return this.tokens!.accessToken;
    if (!this.tokens && !this.user) return undefined; // cookie mode, never signed in here
    if (!this.canRefresh) return this.tokens?.accessToken;
    await this.refresh();
    return this.tokens?.accessToken;
  }

  /** An authorised JSON call; a 401 is answered by one refresh and a retry. */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const token = await this.token();
    try {
      return await this.json<T>(method, path, body, bearer(token));
    } catch (e) {
      if (!(e instanceof ParlorError && e.status === 401 && token && this.canRefresh)) throw e;
      await this.refresh();
      return this.json<T>(method, path, body, bearer(this.tokens?.accessToken));
    }
  }

  private async exchange(req: Promise<TokenJson>): Promise<User> {
    const j = await req;
    if (!j.access_token) throw new ParlorError("PROTOCOL", "token answer without access_token");
    const ttl = typeof j.expires_in === "number" && j.expires_in > 0 ? j.expires_in * 1000 : 900_000;
    this.tokens = {
      accessToken: j.access_token,
      // Cookie mode: the pod keeps it; never hold one here even if sent.
      refreshToken: this.d.mode === "cookie" ? "" : (j.refresh_token ?? ""),
      expiresAt: Date.now() + ttl,
    };
    this.user = {
      id: j.user?.id ?? "",
      name: j.user?.name ?? "",
      role: (j.user?.role ?? "guest") as GlobalRole,
    };
    this.schedule();
    this.d.onChange({ user: this.user });
    return this.user;
  }

  private schedule(inMs?: number): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.tokens || !this.canRefresh) return;
    const left = this.tokens.expiresAt - Date.now();
    const lead = Math.min(REFRESH_LEAD_MS, left / 5);
    const delay = Math.max(0, inMs ?? left - lead);
    this.timer = setTimeout(() => {
      this.refresh().catch(() => {
        /* reported through the auth event, or retried */
      });
    }, delay);
    unref(this.timer);
  }

  private clear(change: AuthChange | null): void {
    clearTimeout(this.timer);
    this.tokens = null;
    this.user = null;
    if (change) this.d.onChange(change);
  }

  private async json<T>(
    method: string,
    path: string,
    body: unknown,
    headers: Record<string, string>,
  ): Promise<T> {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), this.d.timeoutMs);
    let res: Response;
    try {
      res = await this.d.fetch(this.d.base + path, {
        method,
        headers: { ...(body === undefined ? {} : { "Content-Type": "application/json" }), ...headers },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        credentials: this.d.credentials,
        signal: ctl.signal,
      });
    } catch (e) {
      throw ctl.signal.aborted
        ? new ParlorError("TIMEOUT", `${method} ${path} took over ${this.d.timeoutMs} ms`, { cause: e })
        : new ParlorError("NETWORK", `${method} ${path}: ${(e as Error)?.message ?? e}`, { cause: e });
    } finally {
      clearTimeout(t);
    }
    const text = await res.text();
    let parsed: unknown = null;
    if (text.trim()) {
      try {
        parsed = JSON.parse(text);
      } catch {
        if (res.ok) throw new ParlorError("PROTOCOL", `${method} ${path}: answer is not JSON`);
      }
    }
    if (!res.ok) throw fromHttp(res.status, parsed, res.headers.get("retry-after"));
    return parsed as T;
  }
}

function bearer(token: string | undefined): Record<string, string> {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Lets Node exit while only this timer is left (no-op in browsers). */
export function unref(t: unknown): void {
  (t as { unref?: () => void } | undefined)?.unref?.();
}
