// The page's one client and what every page shares: errors as text, REST calls, names.
import { ParlorClient, ParlorError, type Room } from "./sdk.ts";

export const client = new ParlorClient({
  url: location.origin,
  session: "cookie",
});

/** The room the page shows, while it shows one. */
export const state: { room: Room | undefined; tournamentOfRoom: Map<string, string> } = {
  room: undefined,
  tournamentOfRoom: new Map(),
};

const FRIENDLY: Partial<Record<string, string>> = {
  NETWORK: "The server cannot be reached.",
  TIMEOUT: "The server took too long to answer.",
  DISCONNECTED: "The connection dropped before the server answered.",
  QUEUE_FULL: "Too much is waiting for the connection to come back.",
};

/** An error as one line for the page: the server's own message, and its code. */
export function describe(e: unknown): string {
  if (e instanceof ParlorError) {
    const wait = e.retryAfterMs ? ` Try again in ${Math.ceil(e.retryAfterMs / 1000)} s.` : "";
    const msg = e.message || FRIENDLY[e.code] || e.code;
    return `${msg}${msg.includes(e.code) ? "" : ` (${e.code})`}${wait}`;
  }
  if (e instanceof Error) return e.message;
  return String(e);
}

export function errorCode(e: unknown): string | undefined {
  return e instanceof ParlorError ? e.code : undefined;
}

/** An authorised REST call on the pod, JSON in and out. */
export function rest<T>(method: string, path: string, body?: unknown): Promise<T> {
  return client.api<T>(method, path, body);
}

// --- Names of users who are not in the room: GET /api/v1/users/{id}/stats, cached. ---

const names = new Map<string, string>();
const asking = new Set<string>();
const nameListeners = new Set<() => void>();

export function rememberName(id: string, name: string): void {
  if (id && name) names.set(id, name);
}

/** The name of `id` if known; else starts a lookup and answers the id for now. */
export function nameOf(id: string): string {
  if (!id) return "";
  const n = names.get(id);
  if (n) return n;
  if (!asking.has(id)) {
    asking.add(id);
    rest<{ name?: string }>("GET", `/api/v1/users/${encodeURIComponent(id)}/stats`)
      .then((s) => {
        if (s?.name) {
          names.set(id, s.name);
          for (const fn of nameListeners) fn();
        }
      })
      .catch(() => {
        /* an unknown or deleted account keeps its id */
      });
  }
  return id;
}

/** Calls `fn` when a looked-up name arrives; returns the unsubscribe function. */
export function onNames(fn: () => void): () => void {
  nameListeners.add(fn);
  return () => nameListeners.delete(fn);
}

export function isStaff(): boolean {
  const r = client.user?.role;
  return r === "moderator" || r === "admin";
}
