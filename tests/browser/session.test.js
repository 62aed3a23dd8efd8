// The browser session: the refresh token lives in an HttpOnly, Secure cookie (kept on
// http://localhost, a secure context), so a reload comes back signed in and in the same
// room; signing out ends it, and a reload then stays on the sign-in page.
import assert from "node:assert/strict";
import { chatLines, createRoom, joinByCode, say, scenario, signInGuest, waitConnection, waitForChat, waitForMembers } from "./support.js";

scenario("session: a reload comes back signed in, in the room; sign-out ends the session", async (h) => {
  const pod = await h.pod({ name: "session" });
  const ann = await h.user("ann");
  const bob = await h.user("bob");
  await signInGuest(ann, pod.url, "Ann");
  await signInGuest(bob, pod.url, "Bob");
  const room = await createRoom(ann, { name: "Keep my seat", kind: "dice" });
  await joinByCode(bob, room);
  const both = [
    { userId: ann.id, role: "owner" },
    { userId: bob.id, role: "player" },
  ];
  await waitForMembers(ann.page, both);
  await say(ann, "see you after the reload");
  await waitForChat(bob.page, "see you after the reload", ann.id);

  // The refresh token is a cookie the page cannot read; nothing secret is in storage.
  const [cookie] = (await bob.context.cookies()).filter((c) => c.name === "parlor_refresh");
  assert.ok(cookie, "a refresh cookie is set");
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.secure, true);
  assert.equal(cookie.sameSite, "Strict");
  const storage = await bob.page.evaluate(() => JSON.stringify({ ...localStorage, ...sessionStorage }));
  assert.equal(storage, JSON.stringify({ "parlor.signed-in": "1" }), "only the non-secret flag is stored");

  // Bob reloads the room's page: same user, same room, the chat history back.
  await bob.page.reload();
  await bob.page.locator(`[data-testid=room][data-room-id="${room.id}"]`).waitFor();
  await waitConnection(bob.page, "connected");
  assert.equal(await bob.page.getByTestId("current-user").getAttribute("data-user-id"), bob.id);
  await waitForMembers(bob.page, both);
  await waitForChat(bob.page, "see you after the reload", ann.id);
  await say(bob, "back, same seat");
  await waitForChat(ann.page, "back, same seat", bob.id);
  assert.deepEqual(
    (await chatLines(ann.page)).map((l) => l.text),
    ["see you after the reload", "back, same seat"],
  );
  // For Ann it was a seat kept, not a leave and a join.
  assert.deepEqual(await ann.page.getByTestId("chat-system").allTextContents(), ["Bob joined."]);

  // Bob signs out: back to sign-in, the room loses him, and a reload stays signed out.
  await bob.page.getByTestId("sign-out").click();
  await bob.page.getByTestId("guest-form").waitFor();
  await waitForMembers(ann.page, [{ userId: ann.id, role: "owner" }]);
  await bob.page.reload();
  await bob.page.getByTestId("guest-form").waitFor();
  assert.equal(await bob.page.getByTestId("current-user").count(), 0);
  assert.equal((await bob.context.cookies()).filter((c) => c.name === "parlor_refresh").length, 0, "the cookie is gone");
});

scenario(
  "session: after sign-out the banner is idle, with no Reconnect button",
  async (h) => {
    const pod = await h.pod({ name: "signout-banner" });
    const ann = await h.user("ann");
    await signInGuest(ann, pod.url, "Ann");
    await ann.page.getByTestId("sign-out").click();
    await ann.page.getByTestId("guest-form").waitFor();
    await waitConnection(ann.page, "idle", 3000);
    assert.equal(await ann.page.getByTestId("reconnect").count(), 0);
  },
);

scenario(
  "session: signing in again after sign-out gives a socket of the new account",
  async (h) => {
    const pod = await h.pod({ name: "signin-again" });
    const ann = await h.user("ann");
    await signInGuest(ann, pod.url, "Ann");
    await ann.page.getByTestId("sign-out").click();
    await ann.page.getByTestId("guest-form").waitFor();
    await signInGuest(ann, pod.url, "Zed");
    assert.equal(await ann.page.getByTestId("current-user").getAttribute("data-role"), "guest");
    assert.match((await ann.page.getByTestId("current-user").textContent()) ?? "", /Zed/);
    await createRoom(ann, { name: "after sign-out", kind: "piano" });
  },
);
