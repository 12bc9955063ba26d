// Two people chatting both ways through the web client, and history paging.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { api, closeAll, launchBrowser, screenshot, startNatter } from './harness.mjs';
import { assertClean, createChat, openApp, openChat, register, send, session, shown, uniq, unread, waitShown }
  from './client.mjs';

let natter, browser;
before(async () => {
  natter = await startNatter();
  browser = await launchBrowser();
});
after(() => closeAll(browser, natter));

test('Alice and Bob chat both ways, live', async () => {
  const alice = await openApp(await browser.newContext(), natter.base);
  const bob = await openApp(await browser.newContext(), natter.base);
  const aliceName = uniq('alice'), bobName = uniq('bob'), room = uniq('room');
  await register(alice, aliceName);
  await register(bob, bobName);
  await createChat(alice, room, [bobName]);

  // Alice's own message shows at once, then carries its id: one item, never two.
  await send(alice, 'hello Bob');
  await alice.locator('#messages li', { hasText: 'hello Bob' }).waitFor();
  let mine = await waitShown(alice, 1);
  assert.deepEqual(mine.map((m) => m.content), ['hello Bob']);
  assert.equal(await alice.locator('#messages li').count(), 1);

  // Bob had never heard of the chat: it appears in his list, live, unread.
  await bob.locator('.chat-item', { hasText: room }).waitFor();
  assert.equal(await unread(bob, room), 1);
  await openChat(bob, room);
  const seen = await waitShown(bob, 1);
  assert.deepEqual(seen, mine);
  await bob.waitForFunction(() => document.querySelector('.chat-item[aria-current] .unread') === null);

  // Bob answers with two lines (Shift+Enter); Alice sees it live.
  const box = bob.getByLabel('Message', { exact: true });
  await box.fill('line one');
  await box.press('Shift+Enter');
  await box.pressSequentially('line two');
  await box.press('Enter');
  const onAlice = await waitShown(alice, 2);
  assert.deepEqual(onAlice.map((m) => m.content), ['hello Bob', 'line one\nline two']);
  assert.equal(await box.inputValue(), '');

  // and once more each way, in the same order on both sides and in history
  await send(alice, 'third');
  await waitShown(bob, 3);
  await send(bob, 'fourth');
  const a = await waitShown(alice, 4), b = await waitShown(bob, 4);
  assert.deepEqual(a, b);
  const history = await api(natter.base, 'GET', `/chats/${(await chatId(alice))}/messages`,
    (await session(alice)).token);
  assert.deepEqual(a, history.messages.map((m) => ({ id: m.id, content: m.content })));
  assert.equal(await alice.locator('#messages li.pending').count(), 0);

  await screenshot(alice, 'chat-alice');
  await screenshot(bob, 'chat-bob');
  assertClean(alice);
  assertClean(bob);
});

test('history loads older pages as one scrolls up', async () => {
  const page = await openApp(await browser.newContext(), natter.base);
  const name = uniq('carol'), room = uniq('long');
  await register(page, name);
  const { token } = await session(page);
  const chat = await api(natter.base, 'POST', '/chats', token, { name: room, members: [] });
  const posted = [];
  for (let i = 1; i <= 130; i++)
    posted.push((await api(natter.base, 'POST', `/chats/${chat.id}/messages`, token, { content: `m${i}` })).id);

  await page.reload();
  await openChat(page, room);
  const first = await waitShown(page, 50);
  assert.equal(first.length, 50, 'one page to start with');
  assert.deepEqual(first.map((m) => m.id), posted.slice(-50));

  for (let i = 0; i < 20 && (await shown(page)).length < 130; i++) {
    await page.locator('#messages').evaluate((el) => el.scrollTo(0, 0));
    await page.waitForTimeout(200);
  }
  const all = await shown(page);
  assert.deepEqual(all.map((m) => m.id), posted, 'every message once, in order');
  await screenshot(page, 'history-paged');
  assertClean(page);
});

async function chatId(page) {
  return page.locator('.chat-item[aria-current]').getAttribute('data-chat-id');
}
