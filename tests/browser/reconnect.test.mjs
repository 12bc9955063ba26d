// A dropped connection: the client reconnects by itself and shows every
// message exactly once, in order. Bob reaches natter through a proxy that
// the test cuts, as a network failure would.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { api, clockShift, screenshot, startNatter, startProxy, useNatterAndBrowser } from './harness.mjs';
import {
  assertClean, chatItem, createChat, meetInChat, openApp, openChat, register, send, session, signUp, uniq, waitOnline,
  waitShown,
} from './client.mjs';

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

test('a reaction taken back while its message was out of view is not brought back by a catch-up', async () => {
  const { natter, browser } = env;
  const cut = await startProxy(natter.port);
  try {
    const alice = await openApp(await browser.newContext(), natter.base);
    const bob = await openApp(await browser.newContext(), `http://127.0.0.1:${cut.port}`);
    const bobName = uniq('bob'), room = uniq('room');
    await register(alice, uniq('alice'));
    await register(bob, bobName);
    await createChat(alice, room, [bobName]);
    const chatId = await chatItem(alice, room).getAttribute('data-chat-id');
    const { token } = await session(alice);
    const post = (content) => api(natter.base, 'POST', `/chats/${chatId}/messages`, token, { content });
    const first = await post('first');
    for (let i = 0; i < 60; i++) await post(`filler ${i}`); // more than a page: 'first' is out of view
    await chatItem(bob, room).waitFor();
    await openChat(bob, room);
    await waitShown(bob, 50, 0);
    const thumbs = `/chats/${chatId}/messages/${first.id}/reactions/${encodeURIComponent('👍')}`;

    // Alice reacts to 'first' while Bob does not show it: his client has nothing to apply it to
    await api(natter.base, 'PUT', thumbs, token);
    await post('after the reaction'); // pushed after it: once Bob shows this, the reaction reached him
    await bob.locator('#messages li[data-id] .content', { hasText: 'after the reaction' }).waitFor();
    // he scrolls up: history shows 'first' with the reaction; then Alice takes it back
    const firstItem = bob.locator(`#messages li[data-id="${first.id}"]`);
    while (!(await firstItem.count())) {
      await bob.locator('#messages').evaluate((el) => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); });
      await bob.waitForTimeout(100);
    }
    const chip = firstItem.locator('.chip[data-emoji="👍"]');
    await chip.waitFor();
    await api(natter.base, 'DELETE', thumbs, token);
    await chip.waitFor({ state: 'detached' });

    // Bob's connection drops and comes back: the catch-up reads the events from a margin back,
    // the reaction among them, older than its removal
    const feed = bob.waitForResponse((r) => r.url().includes(`/chats/${chatId}/events?after=`));
    cut.drop();
    await bob.waitForSelector('#status[data-state="offline"]');
    await waitOnline(bob);
    await feed;
    await post('after the catch-up');
    await bob.locator('#messages li[data-id] .content', { hasText: 'after the catch-up' }).waitFor();
    assert.equal(await chip.count(), 0, 'the reaction taken back is not shown again');
    assertClean(alice);
    assertClean(bob);
  } finally {
    await cut.close();
  }
});

test('a catch-up that fails is tried again while the socket stays up, from where the last one got to', async () => {
  // what was missed is older than the catch-up's margin (a minute) before the push that comes
  // between the refused catch-up and its retry: natter's clock jumps two minutes between them
  const shift = await clockShift();
  const natter = await startNatter([], shift.env);
  const cut = await startProxy(natter.port);
  try {
    const alice = await openApp(await env.browser.newContext(), natter.base);
    const bob = await openApp(await env.browser.newContext(), `http://127.0.0.1:${cut.port}`);
    const { chatId } = await meetInChat(alice, bob, 'one');
    const { token } = await session(alice);
    cut.setDown(true);
    await bob.waitForSelector('#status[data-state="offline"]');
    for (const text of ['two', 'three']) await send(alice, text);
    await waitShown(alice, 3);
    shift.set(120);
    // the first catch-up after the reconnection is refused; a push comes before it is tried again
    let refused = 0;
    const refuseOnce = (route) => (refused++ === 0
      ? route.fulfill({ status: 503, contentType: 'application/json',
        body: '{"error":{"code":"unavailable","message":"not now"}}' })
      : route.continue());
    await bob.route((u) => u.pathname.endsWith('/messages') && u.searchParams.has('after'), refuseOnce);
    cut.setDown(false);
    await waitOnline(bob);
    await api(natter.base, 'POST', `/chats/${chatId}/messages`, token, { content: 'four' });
    await bob.waitForFunction(() => document.querySelectorAll('#messages li[data-id]').length >= 4);
    assert.ok(refused >= 1, 'the first catch-up was refused');
    const all = (await api(natter.base, 'GET', `/chats/${chatId}/messages?after=0&limit=200`, token)).messages;
    assert.deepEqual(await waitShown(bob, 4), all.map((m) => ({ id: m.id, content: m.content })));
    assertClean(alice);
    assertClean(bob);
  } finally {
    await cut.close();
    await natter.stop();
    await shift.remove();
  }
});

test('a chat one was removed from while offline is closed at the reconnection, not asked for again', async () => {
  const { natter, browser } = env;
  const cut = await startProxy(natter.port);
  try {
    const alice = await openApp(await browser.newContext(), natter.base);
    const bob = await openApp(await browser.newContext(), `http://127.0.0.1:${cut.port}`);
    const { room, chatId } = await meetInChat(alice, bob, 'one');
    const { token } = await session(alice);
    const bobName = (await session(bob)).username;
    cut.setDown(true);
    await bob.waitForSelector('#status[data-state="offline"]');
    await api(natter.base, 'DELETE', `/chats/${chatId}/members/${bobName}`, token); // its push is lost
    let refused = 0;
    bob.on('response', (r) => {
      if (r.status() === 403 && new URL(r.url()).pathname.startsWith(`/chats/${chatId}/`)) refused++;
    });
    cut.setDown(false);
    await waitOnline(bob);
    await bob.locator('#chat-view').waitFor({ state: 'hidden' });
    await chatItem(bob, room).waitFor({ state: 'detached' });
    await bob.waitForTimeout(3000); // a retry would come after 1 s
    assert.equal(refused, 1, 'one refused catch-up, no retries');
    assertClean(bob);
  } finally {
    await cut.close();
  }
});

test('a socket closed right after it opened (a server shedding load) backs off', async () => {
  const page = await openApp(await env.browser.newContext(), env.natter.base);
  await page.routeWebSocket(/\/ws\?/, (ws) => {
    setTimeout(() => ws.close({ code: 1013, reason: 'overloaded: catch up from history' }), 50);
  });
  await signUp(page, uniq('dan')); // not waiting for "online": each socket is open for 50 ms only
  let tickets = 0;
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/ws/tickets') tickets++;
  });
  // backing off from 250-500 ms, doubling: at most 4 attempts in 6 s; starting over each time, a dozen or more
  await page.waitForTimeout(6000);
  assert.ok(tickets >= 1 && tickets <= 5, `${tickets} reconnections in 6 s`);
});
