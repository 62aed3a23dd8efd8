// The client's protocol bookkeeping against a scripted fake pod (no server process): frames
// a real pod never sends on its own (duplicates, stale seqs) must not be applied twice.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ParlorClient, proto } from "../dist/index.js";
import { waitFor } from "./support.js";

const ROOM = "r_0123456789abcdef01234567";
const ME = "u_me";

function jwt(expSecs) {
  const b = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b({ alg: "HS256" })}.${b({ exp: expSecs })}.sig`;
}

/** A fake pod: `on(case, fn)` answers client frames; `push` sends frames to the client. */
function fakePod() {
  const pod = { sockets: [], handlers: {}, received: [] };
  class FakeSocket {
    binaryType = "blob";
    readyState = 0;
    onopen = null;
    onclose = null;
    onerror = null;
    onmessage = null;
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      pod.sockets.push(this);
      setTimeout(() => {
        this.readyState = 1;
        this.onopen?.({});
      }, 0);
    }
    send(bytes) {
      const env = fromBinary(proto.EnvelopeSchema, bytes);
      pod.received.push(env);
      const fn = pod.handlers[env.body.case];
      if (fn) queueMicrotask(() => fn(env, this));
    }
    close(code = 1000, reason = "") {
      if (this.readyState === 3) return;
      this.readyState = 3;
      setTimeout(() => this.onclose?.({ code, reason }), 0);
    }
    /** Server side: push frames to the client, in one go (as one TCP read would). */
    push(...frames) {
      for (const f of frames) {
        const bytes = toBinary(proto.EnvelopeSchema, create(proto.EnvelopeSchema, f));
        this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
      }
    }
    drop(code, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
  }
  pod.WebSocket = FakeSocket;
  pod.on = (c, fn) => (pod.handlers[c] = fn);
  pod.last = () => pod.sockets[pod.sockets.length - 1];
  return pod;
}

const chat = (seq, text, from = "u_other") => ({
  seq: BigInt(seq),
  body: { case: "chatMessage", value: { roomId: ROOM, fromUserId: from, fromName: from, text } },
});

test("duplicates and stale seqs are dropped; a resume asks for last_seq and applies only what is new", { timeout: 10_000 }, async (t) => {
  const pod = fakePod();
  const hellos = [];
  pod.on("hello", (env, sock) => {
    hellos.push(env.body.value);
    sock.push({
      requestId: env.requestId,
      body: {
        case: "welcome",
        value: {
          sessionId: `s_${hellos.length}`,
          user: { id: ME, name: "Me", role: proto.GlobalRole.GUEST },
          resumeToken: jwt(Math.floor(Date.now() / 1000) + 600),
          serverTimeMs: BigInt(Date.now()),
        },
      },
    });
  });
  const joins = [];
  pod.on("joinRoom", (env, sock) => {
    joins.push(env.body.value);
    if (joins.length === 1) {
      sock.push(
        {
          requestId: env.requestId,
          body: {
            case: "roomJoined",
            value: {
              room: { id: ROOM, kind: "piano", name: "Fake" },
              members: [{ userId: ME, name: "Me", role: proto.RoomRole.PLAYER }],
              lastSeq: 5n,
              yourRole: proto.RoomRole.PLAYER,
            },
          },
        },
        chat(6, "a"),
        chat(6, "a"), // the same event again
        chat(5, "old"), // at or below the snapshot
        chat(7, "b"),
      );
    } else {
      // The resume: events after last_seq follow, with some the client already has.
      sock.push(
        {
          requestId: env.requestId,
          body: { case: "roomJoined", value: { room: { id: ROOM, kind: "piano" }, lastSeq: env.body.value.lastSeq, resumed: true, yourRole: proto.RoomRole.PLAYER } },
        },
        chat(7, "b"),
        chat(8, "own event ack is at 8"),
        chat(9, "c"),
      );
    }
  });
  pod.on("gameEvent", (env, sock) => {
    // echo_events off: the sender gets an Ack with the event's seq in its place.
    sock.push({ body: { case: "ack", value: { seq: 8n, roomId: ROOM } } });
  });

  const c = new ParlorClient({
    url: "http://fake",
    WebSocket: pod.WebSocket,
    pingIntervalMs: 0,
    reconnect: { initialDelayMs: 10, jitter: 0 },
  });
  t.after(() => c.close());
  c.useTokens({ accessToken: jwt(Math.floor(Date.now() / 1000) + 600) });
  await c.connect();
  assert.equal(pod.last().url, "ws://fake/ws");
  assert.deepEqual(pod.last().protocols, ["parlor.v1"]);
  assert.equal(pod.last().binaryType, "arraybuffer");
  assert.ok(hellos[0].accessToken && !hellos[0].resumeToken);

  const room = await c.joinRoom(ROOM);
  const texts = [];
  room.on("chat", (l) => texts.push(l.text));
  assert.deepEqual(
    room.chat.map((l) => l.text),
    ["a", "b"],
  );
  assert.equal(room.lastSeq, 7);
  assert.equal(joins[0].roomId, ROOM); // "r_" + 24 hex is an id, not a code

  assert.equal(await room.sendEvent("note", new Uint8Array([1])), 8);
  assert.equal(room.lastSeq, 8);

  const back = waitFor(c, "reconnected");
  pod.last().drop(1006);
  await back;
  assert.equal(hellos.length, 2);
  assert.ok(hellos[1].resumeToken && !hellos[1].accessToken, "the reconnect resumes");
  assert.equal(joins[1].lastSeq, 8n);
  assert.deepEqual(texts, ["c"]);
  assert.deepEqual(
    room.chat.map((l) => l.text),
    ["a", "b", "c"],
  );
  assert.equal(room.lastSeq, 9);

  // A pushed resync (the cluster lost the room's history) replaces the state.
  const resync = waitFor(room, "resync");
  pod.last().push({
    seq: 20n,
    body: {
      case: "roomJoined",
      value: {
        room: { id: ROOM, kind: "piano" },
        members: [
          { userId: ME, name: "Me", role: proto.RoomRole.PLAYER },
          { userId: "u_other", name: "Other", role: proto.RoomRole.OWNER },
        ],
        recentChat: [{ roomId: ROOM, fromUserId: "u_other", text: "fresh" }],
        lastSeq: 20n,
        resync: true,
      },
    },
  });
  await resync;
  assert.equal(room.lastSeq, 20);
  assert.equal(room.members.size, 2);
  assert.equal(room.yourRole, "player");
  assert.deepEqual(
    room.chat.map((l) => l.text),
    ["fresh"],
  );
  pod.last().push(chat(20, "dup of the resync seq"), chat(21, "after"));
  assert.deepEqual(
    room.chat.map((l) => l.text),
    ["fresh", "after"],
  );
  c.close();
});

test("a draining pod's retry_after_ms and RESUME's immediate retry", { timeout: 10_000 }, async (t) => {
  const pod = fakePod();
  pod.on("hello", (env, sock) =>
    sock.push({
      requestId: env.requestId,
      body: { case: "welcome", value: { sessionId: "s", user: { id: ME }, resumeToken: "" } },
    }),
  );
  const c = new ParlorClient({ url: "https://fake/", WebSocket: pod.WebSocket, pingIntervalMs: 0 });
  t.after(() => c.close());
  await c.connect();
  assert.equal(pod.last().url, "wss://fake/ws");

  let r = waitFor(c, "reconnecting");
  pod.last().push({ body: { case: "reconnect", value: { reason: "draining", retryAfterMs: 42 } } });
  pod.last().drop(1001, "draining");
  assert.deepEqual(await r, { attempt: 1, delayMs: 42 });
  await waitFor(c, "reconnected");

  r = waitFor(c, "reconnecting");
  pod.last().drop(4008, "resume");
  assert.deepEqual(await r, { attempt: 1, delayMs: 0 });
  await waitFor(c, "reconnected");

  // 4001: the pod refuses this protocol version; retrying cannot help.
  const closed = waitFor(c, "closed");
  pod.last().drop(4001, "unsupported protocol version");
  assert.equal((await closed).code, 4001);
  assert.equal(c.state, "closed");
});

test("requests time out with TIMEOUT, and an unanswered ping drops the socket", { timeout: 10_000 }, async (t) => {
  const pod = fakePod();
  pod.on("hello", (env, sock) =>
    sock.push({ requestId: env.requestId, body: { case: "welcome", value: { sessionId: "s", user: { id: ME } } } }),
  );
  // listRooms and ping go unanswered.
  const c = new ParlorClient({
    url: "http://fake",
    WebSocket: pod.WebSocket,
    requestTimeoutMs: 100,
    pingIntervalMs: 50,
    pingTimeoutMs: 400,
    reconnect: { initialDelayMs: 10, jitter: 0 },
  });
  t.after(() => c.close());
  await c.connect();
  await assert.rejects(c.listRooms(), (e) => e.code === "TIMEOUT" && e.codeNumber === -1);
  const d = await waitFor(c, "disconnected");
  assert.equal(d.reason, "ping timeout");
  c.close();
});

test("matchmake: Ack, then Matched with the same request id, then the join", { timeout: 10_000 }, async (t) => {
  const pod = fakePod();
  pod.on("hello", (env, sock) =>
    sock.push({ requestId: env.requestId, body: { case: "welcome", value: { sessionId: "s", user: { id: ME } } } }),
  );
  pod.on("matchmake", (env, sock) => {
    sock.push({ requestId: env.requestId, body: { case: "ack", value: {} } });
    setTimeout(
      () =>
        sock.push({
          requestId: env.requestId,
          body: { case: "matched", value: { roomId: ROOM, kind: "match", players: [ME, "u_x"] } },
        }),
      20,
    );
  });
  pod.on("joinRoom", (env, sock) =>
    sock.push({
      requestId: env.requestId,
      body: { case: "roomJoined", value: { room: { id: env.body.value.roomId, kind: "match" }, lastSeq: 3n } },
    }),
  );
  const c = new ParlorClient({ url: "http://fake", WebSocket: pod.WebSocket, pingIntervalMs: 0 });
  t.after(() => c.close());
  await c.connect();
  const matched = waitFor(c, "matched");
  const room = await c.matchmake("match");
  assert.equal(room.id, ROOM);
  assert.deepEqual((await matched).players, [ME, "u_x"]);
  c.close();
});
