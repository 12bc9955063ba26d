// Bob is away while Alice writes; he comes back to exactly what he missed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, screenshot, useNatterAndBrowser } from './harness.mjs';
import { assertClean, chatItem, meetInChat, openApp, openChat, send, session, shown, unread, waitOnline, waitShown }
  from './client.mjs';

const env = useNatterAndBrowser();

test('three messages sent while Bob was offline are his three unread, then read', async () => {
  const { natter, browser } = env;
  const alice = await openApp(await browser.newContext(), natter.base);
  const bobContext = await browser.newContext();
  let bob = await openApp(bobContext, natter.base);
  const { room, chatId } = await meetInChat(alice, bob, 'before you left');
  await bob.waitForFunction(() => document.querySelector('.chat-item[aria-current] .unread') === null);
  const { token } = await session(bob);
  const unreadByApi = async () => (await api(natter.base, 'GET', '/chats', token)).chats
    .find((c) => c.id === chatId).unread;
  assert.equal(await unreadByApi(), 0, 'Bob read the first message');

  await bob.close(); // Bob is offline
  const missed = ['are you there?', 'I have news', 'call me'];
  for (const text of missed) await send(alice, text);
  await waitShown(alice, 4);
  assert.equal(await unreadByApi(), 3);

  bob = await openApp(bobContext, natter.base); // same browser profile: still logged in
  await waitOnline(bob);
  await chatItem(bob, room).locator('.unread').waitFor();
  assert.equal(await unread(bob, room, 3), 3);
  assert.equal(await chatItem(bob, room).locator('.chat-last').textContent(), 'call me');
  await screenshot(bob, 'unread-list');

  await openChat(bob, room);
  const seen = await waitShown(bob, 4);
  assert.deepEqual(seen.slice(1).map((m) => m.content), missed, 'exactly the three he missed, once each, in order');
  assert.equal(seen.length, 4);
  await chatItem(bob, room).locator('.unread').waitFor({ state: 'detached' });
  assert.equal(await unreadByApi(), 0, 'the read marker moved past all three');
  await screenshot(bob, 'unread-read');

  // Alice's list never counts her own messages as unread
  assert.equal(await unread(alice, room, 0), 0);
  assert.deepEqual((await shown(alice)).map((m) => m.id), seen.map((m) => m.id));
  assertClean(alice);
  assertClean(bob);
});

test('a chat read in one tab is no longer unread in the other', async () => {
  const { natter, browser } = env;
  const alice = await openApp(await browser.newContext(), natter.base);
  const bobContext = await browser.newContext();
  const bob1 = await openApp(bobContext, natter.base);
  const { room } = await meetInChat(alice, bob1, 'hello');
  await bob1.reload(); // nothing open in the first tab
  await waitOnline(bob1);
  const bob2 = await openApp(bobContext, natter.base); // the same session in a second tab
  await waitOnline(bob2);
  await send(alice, 'unread one');
  assert.equal(await unread(bob1, room, 1), 1);
  await openChat(bob2, room);
  await waitShown(bob2, 2);
  assert.equal(await unread(bob1, room, 0), 0, 'the first tab follows the read marker');
  assertClean(bob1);
  assertClean(bob2);
});

test('more than 999 unread show as 999+', async () => {
  const { natter, browser } = env;
  const alice = await openApp(await browser.newContext(), natter.base);
  const bobContext = await browser.newContext();
  let bob = await openApp(bobContext, natter.base);
  const { room, chatId } = await meetInChat(alice, bob, 'before you left');
  await bob.close();
  const { token } = await session(alice);
  for (let i = 0; i < 1001; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, 1001 - i) }, (_, k) =>
      api(natter.base, 'POST', `/chats/${chatId}/messages`, token, { content: `news ${i + k}` })));
  }
  bob = await openApp(bobContext, natter.base);
  await waitOnline(bob);
  const badge = chatItem(bob, room).locator('.unread');
  await badge.waitFor();
  assert.equal(await badge.textContent(), '999+');
  assert.equal(await badge.getAttribute('aria-label'), '999+ unread');
  assertClean(bob);
});

test('one\'s read receipt that comes before its message leaves nothing unread', async () => {
  const { natter, browser } = env;
  const alice = await openApp(await browser.newContext(), natter.base);
  const bobContext = await browser.newContext();
  const bob1 = await openApp(bobContext, natter.base);
  const { room } = await meetInChat(alice, bob1, 'hello'); // the chat is open in Bob's first tab
  // Bob's second tab gets its message pushes 1.5 s late (as from another
  // node of a cluster), everything else at once
  const bob2 = await openApp(bobContext, natter.base, (page) => page.routeWebSocket(/\/ws\?/, (ws) => {
    const server = ws.connectToServer();
    server.onMessage((m) => {
      if (JSON.parse(m).type === 'message') setTimeout(() => ws.send(m), 1500);
      else ws.send(m);
    });
  }));
  await waitOnline(bob2);
  await send(alice, 'read at once');
  await waitShown(bob1, 2); // the first tab reads it: its receipt reaches the second before the message
  await bob2.waitForFunction((r) => [...document.querySelectorAll('.chat-item')].some((b) =>
    b.querySelector('.chat-name').textContent === r && b.querySelector('.chat-last').textContent === 'read at once'),
  room);
  assert.equal(await unread(bob2, room, 0), 0);
  assertClean(bob2);
});
