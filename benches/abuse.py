#!/usr/bin/env python3
"""Abuse runs against a real pod, for docs/security.md.

    python3 benches/abuse.py target/release/parlor

Starts the pod on loopback with its default limits (plus a trusted proxy, 127.0.0.9, for
the runs that need many client addresses), then tries each attack and prints what was
answered and how long it took. Loopback only; every run is bounded in count.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pod:
    def __init__(self, binary, env):
        self.dir = tempfile.mkdtemp(prefix="parlor-abuse-")
        self.port, self.admin = free_port(), free_port()
        full = {k: v for k, v in os.environ.items() if not k.startswith("PARLOR_")}
        full.update(
            {
                "PARLOR_SERVER__DATA_DIR": self.dir,
                "PARLOR_LOG_LEVEL": "error",
                "PARLOR_GUARD__TRUSTED_PROXIES": '["127.0.0.9"]',
            }
        )
        full.update(env)
        self.proc = subprocess.Popen(
            [binary, "serve",
             "--public-addr", f"127.0.0.1:{self.port}",
             "--admin-addr", f"127.0.0.1:{self.admin}"],
            env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=1)
                c.request("GET", "/health/live")
                if c.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("pod did not start")

    def request(self, method, path, body=None, source="127.0.0.2", headers=None):
        c = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=30, source_address=(source, 0)
        )
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
        r = c.getresponse()
        r.read()
        c.close()
        return r.status

    def upgrade(self, source, keep=False):
        """A WebSocket handshake from `source`: its status, and the socket if kept."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10,
                                        source_address=(source, 0))
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        status = int(head.split(b" ")[1]) if head else 0
        if keep and status == 101:
            return status, sock
        sock.close()
        return (status, None) if keep else status

    def peak_rss_mib(self):
        """The pod's peak resident memory so far (VmHWM), then stops it."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
        self.proc.terminate()
        self.proc.wait(timeout=30)
        return hwm / 1024


def tally(statuses):
    out = {}
    for s in statuses:
        out[s] = out.get(s, 0) + 1
    return " ".join(f"{k}:{v}" for k, v in sorted(out.items()))


def timed(label, fn):
    t0 = time.monotonic()
    statuses = fn()
    took = time.monotonic() - t0
    print(f"| {label} | {tally(statuses)} | {took:.2f} s |")


def main():
    binary = sys.argv[1]
    print("| attack | answers (status:count) | took |")
    print("|---|---|---|")

    pod = Pod(binary, {})
    owner = {"login": "victim", "password": "correct horse battery"}
    pod.request("POST", "/api/v1/auth/register", dict(owner, name="V"), source="127.0.0.3")
    timed("1,000 wrong logins for one account, one address", lambda: [
        pod.request("POST", "/api/v1/auth/login", {"login": "victim", "password": f"guess{i}"})
        for i in range(1000)])
    timed("1,000 guest sign-ups, one address", lambda: [
        pod.request("POST", "/api/v1/auth/guest", {"name": "g"}, source="127.0.0.4")
        for _ in range(1000)])
    timed("1,000 room listings, one address", lambda: [
        pod.request("GET", "/api/v1/rooms", source="127.0.0.5") for _ in range(1000)])
    timed("1,000 wrong logins for one account, 1,000 addresses (via proxy)", lambda: [
        pod.request("POST", "/api/v1/auth/login", {"login": "victim", "password": "guess"},
                    source="127.0.0.9", headers={"X-Forwarded-For": f"10.1.{i // 250}.{i % 250}"})
        for i in range(1000)])
    timed("100 WebSocket handshakes, one address, each closed at once",
          lambda: [pod.upgrade("127.0.0.7") for _ in range(100)])
    held = []

    def hold():
        out = []
        for _ in range(40):
            status, sock = pod.upgrade("127.0.0.8", keep=True)
            out.append(status)
            if sock:
                held.append(sock)
        return out
    timed("40 WebSockets held open, one address", hold)
    for sock in held:
        sock.close()
    home = pod.request("POST", "/api/v1/auth/login", owner, source="127.0.0.3")
    print(f"| after both: the owner's login from the address they registered from | {home} | |")
    away = pod.request("POST", "/api/v1/auth/login", owner, source="127.0.0.6")
    print(f"| after both: the owner's login from a new address | {away} | |")
    pod.peak_rss_mib()

    for label, env in [
        ("bounded (defaults)", {}),
        ("unbounded (hash_concurrency 512, hash_queue 100000)",
         {"PARLOR_GUARD__HASH_CONCURRENCY": "512", "PARLOR_GUARD__HASH_QUEUE": "100000"}),
    ]:
        pod = Pod(binary, dict(env, PARLOR_GUARD__AUTH_PER_MIN="100000",
                               PARLOR_GUARD__REST_PER_MIN="100000",
                               PARLOR_GUARD__LOGIN_FAILURES_PER_MIN="100000"))

        def flood():
            with ThreadPoolExecutor(max_workers=200) as ex:
                return list(ex.map(lambda i: pod.request(
                    "POST", "/api/v1/auth/login",
                    {"login": f"nobody{i}", "password": "wrong password"}), range(200)))
        timed(f"200 logins at once, {label}", flood)
        print(f"| peak RSS of that pod | {pod.peak_rss_mib():.0f} MiB | |")


if __name__ == "__main__":
    main()
