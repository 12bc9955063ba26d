// Two people chatting both ways through the web client, and history paging.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, screenshot, useNatterAndBrowser } from './harness.mjs';
import { assertClean, chatItem, createChat, openApp, openChat, PASSWORD, register, send, session, shown, uniq, unread,
  waitOnline, waitShown } from './client.mjs';

const env = useNatterAndBrowser();

test('Alice and Bob chat both ways, live', async () => {
  const alice = await openApp(await env.browser.newContext(), env.natter.base);
  const bob = await openApp(await env.browser.newContext(), env.natter.base);
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
  assert.equal(await unread(bob, room, 1), 1);
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
  const history = await api(env.natter.base, 'GET', `/chats/${(await chatId(alice))}/messages`,
    (await session(alice)).token);
  assert.deepEqual(a, history.messages.map((m) => ({ id: m.id, content: m.content })));
  assert.equal(await alice.locator('#messages li.pending').count(), 0);

  await screenshot(alice, 'chat-alice');
  await screenshot(bob, 'chat-bob');
  assertClean(alice);
  assertClean(bob);
});

test('history loads older pages as one scrolls up', async () => {
  const page = await openApp(await env.browser.newContext(), env.natter.base);
  const name = uniq('carol'), room = uniq('long');
  await register(page, name);
  const { token } = await session(page);
  const chat = await api(env.natter.base, 'POST', '/chats', token, { name: room, members: [] });
  const posted = [];
  for (let i = 1; i <= 130; i++)
    posted.push((await api(env.natter.base, 'POST', `/chats/${chat.id}/messages`, token, { content: `m${i}` })).id);

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

test('keyboard only: log in, move through the page, open a chat, send', async () => {
  const name = uniq('dave'), room = uniq('keys');
  await api(env.natter.base, 'POST', '/users', null, { username: name, password: PASSWORD });
  const { token } = await api(env.natter.base, 'POST', '/sessions', null, { username: name, password: PASSWORD });
  const chat = await api(env.natter.base, 'POST', '/chats', token, { name: room, members: [] });

  const page = await openApp(await env.browser.newContext(), env.natter.base);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'login-username');
  await screenshot(page, 'login');
  await page.keyboard.type(name);
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await waitOnline(page);
  await page.locator('.chat-item').waitFor();

  // every field has a label, every button a name, and Tab follows the page
  const unlabelled = await page.$$eval('input, textarea', (els) => els.filter((e) => e.labels.length === 0).length);
  assert.equal(unlabelled, 0);
  const nameless = await page.$$eval('button', (els) => els.filter((e) => !e.textContent.trim()).length);
  assert.equal(nameless, 0);
  const focused = () => page.evaluate(() => {
    const el = document.activeElement;
    return el.id || el.dataset.chatId || el.textContent.trim();
  });
  assert.equal(await focused(), 'chats-title', 'after logging in, focus is at the top of the chat list');
  const order = [];
  for (let i = 0; i < 4; i++) {
    await page.keyboard.press('Tab');
    order.push(await focused());
  }
  assert.deepEqual(order, [chat.id, 'new-chat-name', 'new-chat-members', 'Create chat']);
  for (let i = 0; i < 3; i++) await page.keyboard.press('Shift+Tab');
  assert.equal(await focused(), chat.id);

  await page.keyboard.press('Enter'); // opens the focused chat and moves to the composer
  await page.locator('#chat-title', { hasText: room }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), 'composer-input');
  await page.keyboard.type('typed, not clicked');
  await page.keyboard.press('Enter');
  assert.deepEqual((await waitShown(page, 1)).map((m) => m.content), ['typed, not clicked']);
  assert.equal(await page.locator('#messages').getAttribute('aria-live'), 'polite');
  await screenshot(page, 'keyboard');
  assertClean(page);
});

async function chatId(page) {
  return page.locator('.chat-item[aria-current]').getAttribute('data-chat-id');
}

test('a message whose post fails after its chat was left is shown there, to retry', async () => {
  const alice = await openApp(await env.browser.newContext(), env.natter.base);
  await register(alice, uniq('alice'));
  const room = uniq('room'), other = uniq('other');
  await createChat(alice, other, []);
  await createChat(alice, room, []);
  let failed;
  const answered = new Promise((resolve) => (failed = resolve));
  const slowFailure = async (route) => {
    if (route.request().method() !== 'POST') return route.continue();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await route.fulfill({ status: 503, contentType: 'application/json',
      body: '{"error":{"code":"unavailable","message":"try again"}}' });
    failed();
  };
  await alice.route(/\/chats\/\d+\/messages$/, slowFailure);
  await send(alice, 'lost in transit');
  await openChat(alice, other); // left before the answer
  await answered;
  await alice.unroute(/\/chats\/\d+\/messages$/, slowFailure);
  await openChat(alice, room);
  const unsent = alice.locator('#messages li.failed', { hasText: 'lost in transit' });
  await unsent.waitFor();
  await unsent.getByRole('button', { name: /Retry/ }).click();
  await alice.locator('#messages li[data-id]', { hasText: 'lost in transit' }).waitFor();
  assertClean(alice);
});

const isPost = (route) => route.request().method() === 'POST';
const unavailable = (route) => route.fulfill({ status: 503, contentType: 'application/json',
  body: '{"error":{"code":"unavailable","message":"try again"}}' });

test('a post shown as not sent is still there to retry after another chat was opened and this one again', async () => {
  const alice = await openApp(await env.browser.newContext(), env.natter.base);
  await register(alice, uniq('alice'));
  const room = uniq('room'), other = uniq('other');
  await createChat(alice, other, []);
  await createChat(alice, room, []);
  const failing = (route) => (isPost(route) ? unavailable(route) : route.continue());
  await alice.route(/\/chats\/\d+\/messages$/, failing);
  await send(alice, 'my long careful answer');
  await alice.locator('#messages li.failed', { hasText: 'my long careful answer' }).waitFor();
  await alice.unroute(/\/chats\/\d+\/messages$/, failing);
  await openChat(alice, other);
  await openChat(alice, room);
  const unsent = alice.locator('#messages li.failed', { hasText: 'my long careful answer' });
  await unsent.waitFor();
  await unsent.getByRole('button', { name: /Retry/ }).click();
  await alice.locator('#messages li[data-id]', { hasText: 'my long careful answer' }).waitFor();
  assertClean(alice);
});

test('a post on its way when its open chat is picked again, and then failing, is shown to retry', async () => {
  const alice = await openApp(await env.browser.newContext(), env.natter.base);
  await register(alice, uniq('alice'));
  const room = uniq('room');
  await createChat(alice, room, []);
  let answered;
  const done = new Promise((resolve) => (answered = resolve));
  const slowFailure = async (route) => {
    if (!isPost(route)) return route.continue();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await unavailable(route);
    answered();
  };
  await alice.route(/\/chats\/\d+\/messages$/, slowFailure);
  await send(alice, 'words on their way');
  await alice.locator('#messages li.pending', { hasText: 'words on their way' }).waitFor();
  await chatItem(alice, room).click(); // the open chat, again: its screen is built anew
  await done;
  await alice.unroute(/\/chats\/\d+\/messages$/, slowFailure);
  const unsent = alice.locator('#messages li.failed', { hasText: 'words on their way' });
  await unsent.waitFor();
  await unsent.getByRole('button', { name: /Retry/ }).click();
  await alice.locator('#messages li[data-id]', { hasText: 'words on their way' }).waitFor();
  assertClean(alice);
});
