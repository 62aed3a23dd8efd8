import { ErrorCode } from "./gen/parlor/v1/parlor_pb.js";

/** Codes the SDK itself raises; they never come from a server. */
export type ClientErrorCode =
  | "TIMEOUT" // no answer within requestTimeoutMs
  | "DISCONNECTED" // the socket dropped (or was never open) before an answer came
  | "QUEUE_FULL" // sendQueueLimit requests are already waiting for a reconnect
  | "NETWORK" // fetch failed (DNS, refused, CORS)
  | "PROTOCOL" // an answer the SDK did not expect, or an undecodable frame
  | "ABORTED"; // the caller's AbortSignal fired

/** A server code ("ROOM_FULL", ...) as in proto ErrorCode without its prefix, or a client code. */
export type ParlorErrorCode = keyof typeof ErrorCode | ClientErrorCode;

/** Every rejection of the SDK is a ParlorError. */
export class ParlorError extends Error {
  override readonly name = "ParlorError";
  /** "ROOM_NOT_FOUND", "TIMEOUT", ... */
  readonly code: ParlorErrorCode;
  /** The proto ErrorCode value; -1 for client-side codes. */
  readonly codeNumber: number;
  /** Set when the server says the request may pass this much later (RATE_LIMITED, UNAVAILABLE). */
  readonly retryAfterMs: number | undefined;
  /** HTTP status, for REST failures. */
  readonly status: number | undefined;

  constructor(
    code: ParlorErrorCode,
    message: string,
    opts: { codeNumber?: number; retryAfterMs?: number; status?: number; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.codeNumber = opts.codeNumber ?? codeNumberOf(code);
    this.retryAfterMs = opts.retryAfterMs || undefined;
    this.status = opts.status;
  }

  /** True for codes that mean the credentials are bad or stale. */
  get isAuth(): boolean {
    return AUTH_CODES.has(this.code);
  }
}

const AUTH_CODES = new Set<string>(["UNAUTHENTICATED", "TOKEN_EXPIRED", "TOKEN_INVALID"]);

function codeNumberOf(code: string): number {
  const n = (ErrorCode as unknown as Record<string, number | undefined>)[code];
  return typeof n === "number" ? n : -1;
}

/** A server Error frame as a ParlorError. */
export function fromWire(code: number, message: string, retryAfterMs: number): ParlorError {
  const name = (ErrorCode[code] ?? "UNSPECIFIED") as ParlorErrorCode;
  return new ParlorError(name, message, { codeNumber: code, retryAfterMs });
}

/** A REST error body `{"error":{"code","message"}}` as a ParlorError. */
export function fromHttp(status: number, body: unknown, retryAfter: string | null): ParlorError {
  const err = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const code = typeof err?.code === "string" ? err.code : status === 404 ? "NOT_FOUND" : "UNSPECIFIED";
  const message = typeof err?.message === "string" ? err.message : `HTTP ${status}`;
  const secs = retryAfter === null ? NaN : Number(retryAfter);
  return new ParlorError(code as ParlorErrorCode, message, {
    status,
    ...(Number.isFinite(secs) ? { retryAfterMs: secs * 1000 } : {}),
  });
}
