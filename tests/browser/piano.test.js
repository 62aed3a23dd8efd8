// Scenario 1: two guests meet in a piano room, and a note played in one browser lights up
// in the other: once with the mouse held on a key, once with a mapped computer key.
import assert from "node:assert/strict";
import { CHROMIUM_FLAGS, createRoom, joinAndList, scenario, signInGuest } from "./support.js";

/** Waits until `page`'s key for `note` is lit (or not) with the class `cls`. */
async function keyIs(page, note, active, cls) {
  await page.waitForFunction(
    ([n, on, c]) => {
      const k = document.querySelector(`[data-testid=piano-key-${n}]`);
      if (!k || k.getAttribute("data-active") !== String(on)) return false;
      return on ? k.classList.contains(c) : !k.classList.contains("on-mine") && !k.classList.contains("on-theirs");
    },
    [note, active, cls],
  );
}

scenario("piano: a note played in one browser lights up in the other", async (h) => {
  const pod = await h.pod({ name: "piano" });
  const ann = await h.user("ann");
  const bob = await h.user("bob");

  // The flags asked for are the ones Chromium runs with, the profile a fresh temp dir.
  const cmd = await ann.commandLine();
  for (const flag of CHROMIUM_FLAGS) assert.ok(cmd.split(/\s+/).includes(flag), `Chromium runs without ${flag}: ${cmd}`);
  assert.ok(cmd.includes(`--user-data-dir=${ann.profile}`), `Chromium's profile is not ${ann.profile}: ${cmd}`);

  await signInGuest(ann, pod.url, "Ann");
  await signInGuest(bob, pod.url, "Bob");
  const room = await createRoom(ann, { name: "Jam session", kind: "piano" });
  await joinAndList(ann, bob, room);

  // Ann holds E4 down with the mouse: lit as hers at home, as theirs at Bob's.
  const e4 = ann.page.getByTestId("piano-key-64");
  await e4.hover();
  await ann.page.mouse.down();
  await keyIs(ann.page, 64, true, "on-mine");
  await keyIs(bob.page, 64, true, "on-theirs");
  assert.equal(await bob.page.getByTestId("piano-key-64").getAttribute("aria-pressed"), "false", "a note of theirs is not pressed by me");
  const last = bob.page.getByTestId("piano-last");
  assert.equal(await last.getAttribute("data-last-note"), "64");
  assert.equal(await last.getAttribute("data-user-id"), ann.id);
  assert.match((await last.textContent()) ?? "", /Ann played E4/);
  // Releasing the mouse releases the note on both sides.
  await ann.page.mouse.up();
  await keyIs(ann.page, 64, false);
  await keyIs(bob.page, 64, false);

  // Bob plays D5 with the computer keyboard (W), outside any text field.
  await bob.page.evaluate(() => (document.activeElement instanceof HTMLElement ? document.activeElement.blur() : undefined));
  await bob.page.keyboard.down("w");
  await keyIs(bob.page, 74, true, "on-mine");
  await keyIs(ann.page, 74, true, "on-theirs");
  assert.equal(await ann.page.getByTestId("piano-last").getAttribute("data-user-id"), bob.id);
  await bob.page.keyboard.up("w");
  await keyIs(bob.page, 74, false);
  await keyIs(ann.page, 74, false);

  // A chord: Z (C4) and C (E4) held together by Ann, both lit at Bob's.
  await ann.page.evaluate(() => (document.activeElement instanceof HTMLElement ? document.activeElement.blur() : undefined));
  await ann.page.keyboard.down("z");
  await ann.page.keyboard.down("c");
  await keyIs(bob.page, 60, true, "on-theirs");
  await keyIs(bob.page, 64, true, "on-theirs");
  await ann.page.keyboard.up("z");
  await ann.page.keyboard.up("c");
  await keyIs(bob.page, 60, false);
  await keyIs(bob.page, 64, false);
});
