// A dropped connection: the client reconnects by itself and shows every
// message exactly once, in order. Bob reaches natter through a proxy that
// the test cuts, as a network failure would.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { api, screenshot, startProxy, useNatterAndBrowser } from './harness.mjs';
import { assertClean, meetInChat, openApp, send, session, waitOnline, waitShown } from './client.mjs';

const env = useNatterAndBrowser();
let proxy;
after(() => proxy?.close());

async function history(chatId, token) {
  return (await api(env.natter.base, 'GET', `/chats/${chatId}/messages?after=0&limit=200`, token)).messages
    .map((m) => ({ id: m.id, content: m.content }));
}

test('messages sent while the connection is down arrive once, in order, after it comes back', async () => {
  const { natter, browser } = env;
  proxy = await startProxy(natter.port);
  const alice = await openApp(await browser.newContext(), natter.base);
  const bob = await openApp(await browser.newContext(), `http://127.0.0.1:${proxy.port}`);
  const { chatId } = await meetInChat(alice, bob, 'one');
  const { token } = await session(alice);

  // The network goes away: Bob's client notices and keeps trying.
  proxy.setDown(true);
  await bob.waitForSelector('#status[data-state="offline"]');
  for (const text of ['two', 'three', 'four']) await send(alice, text);
  await waitShown(alice, 4);
  await bob.waitForTimeout(1500); // a few reconnection attempts fail meanwhile
  assert.equal((await waitShown(bob, 1, 0)).length, 1, 'nothing reached Bob while he was cut off');
  await screenshot(bob, 'reconnect-offline');

  proxy.setDown(false);
  await waitOnline(bob);
  const back = await waitShown(bob, 4);
  assert.deepEqual(back, await history(chatId, token), 'every message once, in order');

  // Cut while Alice keeps posting, with natter's answers reaching Bob 400 ms
  // late: the new socket's pushes and the catch-up overlap by that much,
  // and what arrives both ways must be shown once.
  proxy.setLatency(400);
  let posting = true, posted = 0;
  const poster = (async () => {
    while (posting) {
      await api(natter.base, 'POST', `/chats/${chatId}/messages`, token, { content: `burst ${++posted}` });
      await bob.waitForTimeout(50);
    }
  })();
  await bob.waitForTimeout(300);
  proxy.drop();
  await bob.waitForSelector('#status[data-state="offline"]');
  await waitOnline(bob);
  await bob.waitForTimeout(1000);
  posting = false;
  await poster;
  const all = await waitShown(bob, 4 + posted, 1500);
  const ids = all.map((m) => m.id);
  assert.equal(new Set(ids).size, ids.length, 'no message shown twice');
  assert.deepEqual(all, await history(chatId, token), 'every message once, in order');
  assert.equal(await bob.locator('#messages li').count(), 4 + posted);
  await screenshot(bob, 'reconnect-after');
  assertClean(alice);
  assertClean(bob);
});

test('a message others posted while the socket was down, before one of ours, is caught up after it', async () => {
  const { natter, browser } = env;
  const cut = await startProxy(natter.port);
  try {
    const alice = await openApp(await browser.newContext(), natter.base);
    const bob = await openApp(await browser.newContext(), `http://127.0.0.1:${cut.port}`);
    const { chatId } = await meetInChat(alice, bob, 'one');
    const { token } = await session(alice);

    // Bob's socket goes and cannot come back (no ticket), while his HTTP requests go on
    const noTicket = (route) => route.fulfill({ status: 503, contentType: 'application/json',
      body: '{"error":{"code":"unavailable","message":"not now"}}' });
    await bob.route('**/ws/tickets', noTicket);
    cut.drop();
    await bob.waitForSelector('#status[data-state="offline"]');
    await send(alice, 'two');
    await waitShown(alice, 2);
    await send(bob, 'three'); // answered over HTTP while the socket is down
    await bob.locator('#messages li[data-id] .content', { hasText: 'three' }).waitFor();

    await bob.unroute('**/ws/tickets', noTicket);
    await waitOnline(bob);
    const back = await waitShown(bob, 3);
    assert.deepEqual(back, await history(chatId, token), "Alice's message before Bob's is caught up");
    assertClean(alice);
    assertClean(bob);
  } finally {
    await cut.close();
  }
});
