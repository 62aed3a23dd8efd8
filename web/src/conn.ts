// The connection banner in the header: connecting, connected with the latency,
// reconnecting (with the attempt), or closed (with a button to connect again).
import { client, describe } from "./app.ts";
import { h, replace } from "./dom.ts";

type Shown = "idle" | "connecting" | "connected" | "reconnecting" | "closed";

let setState: ((s: Shown, detail?: string) => void) | undefined;

/** The page itself is connecting (sign-in, page load, the Reconnect button). */
export function bannerConnecting(): void {
  setState?.("connecting");
}

export function connectionBanner(el: HTMLElement, reconnect: () => void): void {
  let shown: Shown = "idle";
  let detail = "";
  const latency = h("span", { "data-testid": "latency" });

  const render = () => {
    el.dataset.state = shown;
    const ms = client.smoothedLatencyMs ?? client.latencyMs;
    latency.textContent = ms === undefined ? "" : `${Math.round(ms)} ms`;
    switch (shown) {
      case "idle":
        replace(el);
        break;
      case "connecting":
        replace(el, "Connecting…");
        break;
      case "connected":
        replace(el, h("span", null, "Connected"), ms === undefined ? null : [" · latency ", latency]);
        break;
      case "reconnecting":
        replace(el, h("span", null, "Reconnecting…"), detail ? h("span", { class: "visually-hidden" }, ` ${detail}`) : null);
        break;
      case "closed":
        replace(
          el,
          h("span", null, "Disconnected", detail ? `: ${detail}` : ""),
          " ",
          h("button", { type: "button", class: "small", "data-testid": "reconnect", onclick: reconnect }, "Reconnect"),
        );
        break;
    }
  };

  const set = (s: Shown, d = "") => {
    // Latency ticks change only the number, so screen readers are not told every 5 s.
    if (s === shown && d === detail) return;
    shown = s;
    detail = d;
    render();
  };

  client.on("connected", () => set("connected"));
  client.on("reconnected", () => set("connected"));
  client.on("disconnected", () => set("reconnecting"));
  client.on("reconnecting", (r) => set("reconnecting", `attempt ${r.attempt}`));
  client.on("closed", (c) => set(client.user ? "closed" : "idle", c.error ? describe(c.error) : c.reason));
  client.on("latency", () => {
    if (shown === "connected") {
      const ms = client.smoothedLatencyMs ?? client.latencyMs;
      if (!latency.isConnected) render();
      else latency.textContent = ms === undefined ? "" : `${Math.round(ms)} ms`;
    }
  });
  setState = set;
}
