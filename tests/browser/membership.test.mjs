// Who is in a chat, live: a chat one is added to shows in the list before
// any message, the members shown follow who comes and goes, and a member
// removed sees the chat close and leave the list.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, screenshot, useNatterAndBrowser } from './harness.mjs';
import {
  assertClean, chatItem, createChat, meetInChat, openApp, openChat, register, send, session, uniq, waitOnline, waitShown,
} from './client.mjs';

const env = useNatterAndBrowser();

test('a chat one is added to shows at once; members come and go; one removed sees it go', async () => {
  const alice = await openApp(await env.browser.newContext(), env.natter.base);
  const bob = await openApp(await env.browser.newContext(), env.natter.base);
  const aliceName = uniq('alice'), bobName = uniq('bob'), carolName = uniq('carol'), room = uniq('room');
  await register(alice, aliceName);
  await register(bob, bobName);
  await api(env.natter.base, 'POST', '/users', null, { username: carolName, password: 'correct horse battery' });

  // Alice makes a chat with Bob and writes nothing: it is in Bob's list all the same
  await createChat(alice, room, [bobName]);
  await chatItem(bob, room).waitFor();
  assert.equal(await chatItem(bob, room).locator('.chat-last').textContent(), 'No messages yet');
  await openChat(bob, room);
  await bob.locator('#chat-members .member', { hasText: aliceName }).waitFor();

  // Alice adds Carol: Bob's members show her, without a reload
  const chatId = await chatItem(alice, room).getAttribute('data-chat-id');
  const { token } = await session(alice);
  await api(env.natter.base, 'PUT', `/chats/${chatId}/members/${carolName}`, token);
  await bob.locator('#chat-members .member', { hasText: carolName }).waitFor();
  await screenshot(bob, 'membership-added');

  // Alice removes Bob: his open chat closes and leaves his list
  await api(env.natter.base, 'DELETE', `/chats/${chatId}/members/${bobName}`, token);
  await bob.locator('#chat-view').waitFor({ state: 'hidden' });
  await bob.locator('#no-chat').waitFor();
  await chatItem(bob, room).waitFor({ state: 'detached' });
  assert.equal(await bob.locator('#messages li').count(), 0);
  // and Alice's members no longer show him
  await openChat(alice, room);
  await alice.locator('#chat-members .member', { hasText: carolName }).waitFor();
  assert.equal(await alice.locator('#chat-members .member', { hasText: bobName }).count(), 0);
  await screenshot(bob, 'membership-removed');
  assertClean(alice);
  assertClean(bob);
});

test("a former member's messages still show who wrote them", async () => {
  const alice = await openApp(await env.browser.newContext(), env.natter.base);
  const bob = await openApp(await env.browser.newContext(), env.natter.base);
  const { room, chatId } = await meetInChat(alice, bob, 'hi');
  await send(bob, 'from bob');
  await waitShown(alice, 2);
  const { token } = await session(alice);
  const bobName = (await session(bob)).username;
  await api(env.natter.base, 'DELETE', `/chats/${chatId}/members/${bobName}`, token);
  await alice.reload();
  await waitOnline(alice);
  await openChat(alice, room);
  await waitShown(alice, 2);
  await alice.locator('#messages li[data-id] .sender', { hasText: bobName }).waitFor();
  assert.deepEqual(await alice.$$eval('#messages li[data-id] .sender', (s) => s.map((x) => x.textContent)),
    ['You', bobName]);
  assertClean(alice);
});

test('a chat list that fails to load is asked again until it does', async () => {
  const alice = await openApp(await env.browser.newContext(), env.natter.base);
  const bob = await openApp(await env.browser.newContext(), env.natter.base);
  const bobName = uniq('bob'), room = uniq('room');
  await register(alice, uniq('alice'));
  await register(bob, bobName);
  let refused = 0;
  await bob.route((u) => u.pathname === '/chats', async (route) => {
    if (route.request().method() === 'GET' && refused < 2) {
      refused++;
      await route.fulfill({ status: 503, contentType: 'application/json',
        body: '{"error":{"code":"unavailable","message":"the store is unreachable"}}' });
    } else {
      await route.continue();
    }
  });
  // the push of the new chat makes Bob's list ask; its first two answers are 503
  await createChat(alice, room, [bobName]);
  await chatItem(bob, room).waitFor();
  assert.equal(refused, 2);
  assertClean(bob);
});
