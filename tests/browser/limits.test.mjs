// The web client under the server's limits: a read answered 429 (the user's
// --rate-limit-reads) is asked again after its Retry-After.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { useNatterAndBrowser } from './harness.mjs';
import { assertClean, chatItem, meetInChat, openApp, openChat, waitOnline, waitShown } from './client.mjs';

const env = useNatterAndBrowser();

test('a history read answered 429 is asked again after Retry-After', async () => {
  const { natter, browser } = env;
  const alice = await openApp(await browser.newContext(), natter.base);
  const bobContext = await browser.newContext();
  let bob = await openApp(bobContext, natter.base);
  const { room } = await meetInChat(alice, bob, 'hello');
  await bob.close();
  // Bob comes back, and the server's first two answers to the chat's history say he read too much
  let refused = 0;
  bob = await openApp(bobContext, natter.base, (page) => page.route(/\/chats\/[0-9]+\/messages\?limit=/, (route) => {
    if (route.request().method() !== 'GET' || refused === 2) return route.continue();
    refused++;
    return route.fulfill({
      status: 429,
      headers: { 'Retry-After': '1', 'Content-Type': 'application/json' },
      body: JSON.stringify({ error: { code: 'rate_limited', message: 'too many reads, slow down' } }),
    });
  }));
  await waitOnline(bob);
  await openChat(bob, room);
  const seen = await waitShown(bob, 1);
  assert.deepEqual(seen.map((m) => m.content), ['hello']);
  assert.equal(refused, 2);
  assertClean(bob);
  assertClean(alice);
});
