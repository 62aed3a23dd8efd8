// Scenario 3: a roll of 2d20kh1+5 shows every die (two d20s, one kept and one dropped),
// the constant and the total in both browsers, and the two browsers agree on all of it.
import assert from "node:assert/strict";
import { createRoom, joinAndList, scenario, signInGuest, until } from "./support.js";

/** Every roll in the page's dice log, as shown. */
async function rolls(page) {
  return page.getByTestId("roll").evaluateAll((els) =>
    els.map((r) => ({
      nonce: r.getAttribute("data-nonce"),
      total: Number(r.getAttribute("data-total")),
      shownTotal: r.querySelector("[data-testid=roll-total]")?.textContent ?? "",
      rollerId: r.getAttribute("data-roller-id"),
      visibility: r.getAttribute("data-visibility"),
      notation: r.querySelector("code")?.textContent ?? "",
      groups: [...r.querySelectorAll("[data-testid=dice-group]")].map((g) => ({
        subtotal: Number(g.getAttribute("data-subtotal")),
        dice: [...g.querySelectorAll("[data-testid=die]")].map((d) => ({
          value: Number(d.getAttribute("data-value")),
          sides: d.getAttribute("data-sides"),
          kept: d.getAttribute("data-kept"),
          dropped: d.getAttribute("data-dropped"),
          cls: d.classList.contains("dropped") ? "dropped" : d.classList.contains("kept") ? "kept" : "",
        })),
      })),
      constants: [...r.querySelectorAll("[data-testid=dice-constant]")].map((c) => c.textContent),
    })),
  );
}

/** Checks one shown 2d20kh1+5 roll against the rules of the notation. */
function checkKeepHighest(r, who) {
  assert.equal(r.notation, "2d20kh1+5", who);
  assert.equal(r.groups.length, 1, `${who}: one dice group`);
  const [g] = r.groups;
  assert.equal(g.dice.length, 2, `${who}: two dice shown`);
  for (const d of g.dice) {
    assert.equal(d.sides, "20", `${who}: d20s`);
    assert.ok(d.value >= 1 && d.value <= 20, `${who}: a d20 shows ${d.value}`);
    assert.equal(d.kept, String(d.dropped === "false"), `${who}: kept is not dropped`);
    assert.equal(d.cls, d.kept === "true" ? "kept" : "dropped", `${who}: the die's class says what it is`);
  }
  const kept = g.dice.filter((d) => d.kept === "true");
  const dropped = g.dice.filter((d) => d.dropped === "true");
  assert.equal(kept.length, 1, `${who}: one die kept`);
  assert.equal(dropped.length, 1, `${who}: one die dropped`);
  assert.ok(kept[0].value >= dropped[0].value, `${who}: the higher die is kept (${kept[0].value} vs ${dropped[0].value})`);
  assert.equal(g.subtotal, kept[0].value, `${who}: the group counts the kept die only`);
  assert.deepEqual(r.constants, ["+5"], `${who}: the +5 is shown`);
  assert.equal(r.total, kept[0].value + 5, `${who}: total = kept + 5`);
  assert.equal(r.shownTotal, String(r.total), `${who}: the total shown is data-total`);
  assert.equal(r.visibility, "public", who);
}

scenario("dice: 2d20kh1+5 shows every die and the same total in both browsers", async (h) => {
  const pod = await h.pod({ name: "dice" });
  const ann = await h.user("ann");
  const bob = await h.user("bob");
  await signInGuest(ann, pod.url, "Ann");
  await signInGuest(bob, pod.url, "Bob");
  const room = await createRoom(ann, { name: "Dungeon night", kind: "dice" });
  await joinAndList(ann, bob, room);

  // Bob (a player) rolls with the form; Ann (the DM) rolls the same notation after him.
  for (const [roller, n] of [
    [bob, 1],
    [ann, 2],
  ]) {
    await roller.page.getByTestId("dice-notation").fill("2d20kh1+5");
    await roller.page.getByTestId("dice-label").fill(`attack ${n}`);
    await roller.page.getByTestId("dice-roll").click();
    for (const u of [ann, bob]) {
      await until(async () => (await rolls(u.page)).length === n, { what: `${u.label} to show roll ${n}` });
    }
  }
  assert.equal(await ann.page.getByTestId("dice-error").textContent(), "");
  assert.equal(await bob.page.getByTestId("dice-error").textContent(), "");

  const a = await rolls(ann.page);
  const b = await rolls(bob.page);
  assert.deepEqual(a, b, "both browsers show the same rolls: same dice, same totals");
  assert.equal(a[0].rollerId, bob.id);
  assert.equal(a[1].rollerId, ann.id);
  assert.ok(Number(a[1].nonce) > Number(a[0].nonce), "each roll draws a new nonce");
  a.forEach((r, i) => checkKeepHighest(r, `roll ${i + 1}`));
  // Four die elements in all, two kept and two dropped, in each browser.
  for (const u of [ann, bob]) {
    assert.equal(await u.page.getByTestId("die").count(), 4);
    assert.equal(await u.page.locator("[data-testid=die][data-kept=true]").count(), 2);
    assert.equal(await u.page.locator("[data-testid=die][data-dropped=true]").count(), 2);
  }
  // The fairness box moves on with the draws.
  assert.equal(await ann.page.getByTestId("next-nonce").textContent(), String(Number(a[1].nonce) + 1));
});
