// The room's provably fair randomness: its commitment, and the owner's reveal.
import { h } from "../dom.ts";
import type { Fairness, SeedRevealed } from "../proto.ts";
import { num, type RoomCtx } from "./kind.ts";

export function fairnessBox() {
  const commitment = h("code", { "data-testid": "seed-commitment" });
  const next = h("span", { "data-testid": "next-nonce" });
  const el = h(
    "p",
    { class: "fairness" },
    "Seed commitment (SHA-256): ",
    commitment,
    ". Next draw: ",
    next,
    ".",
  );
  let nextNonce = 0;
  return {
    el,
    set(f: Fairness | undefined) {
      if (!f) return;
      commitment.textContent = f.seedCommitment || "none";
      nextNonce = num(f.nextNonce);
      next.textContent = String(nextNonce);
    },
    drew(nonce: bigint) {
      nextNonce = Math.max(nextNonce, num(nonce) + 1);
      next.textContent = String(nextNonce);
    },
    revealed(s: SeedRevealed) {
      commitment.textContent = s.nextCommitment;
    },
  };
}

export function revealSeedButton(ctx: RoomCtx): HTMLElement {
  const err = h("span", { class: "error", role: "alert" });
  return h(
    "div",
    { class: "row" },
    h(
      "button",
      {
        type: "button",
        class: "secondary",
        "data-testid": "reveal-seed",
        onclick: async () => {
          err.textContent = "";
          try {
            await ctx.action({ case: "revealSeed", value: {} });
          } catch (e) {
            err.textContent = (e as Error).message;
          }
        },
      },
      "Reveal the seed",
    ),
    err,
  );
}
