// Driving natter's web client (web/) the way a person does: by labels,
// buttons and keys. The selectors here are the few the tests read back
// (message items by data-id, chat items by data-chat-id, the unread badge).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

export const PASSWORD = 'correct horse battery';

export function uniq(prefix) {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

// A page of the client in context; uncaught errors in it, or a WebSocket
// opened with anything but a ticket in its URL, fail assertClean().
export async function openApp(context, base, prepare = async () => {}) {
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  page.errors = [];
  page.sockets = [];
  page.on('pageerror', (e) => page.errors.push(e));
  page.on('websocket', (ws) => page.sockets.push(ws.url()));
  await prepare(page); // e.g. routes, before the page loads
  await page.goto(base + '/');
  return page;
}

export function assertClean(page) {
  assert.deepEqual(page.errors.map(String), [], 'uncaught errors in the page');
  assert.ok(page.sockets.length > 0, 'the page opened no WebSocket');
  for (const url of page.sockets) {
    assert.match(url, /\/ws\?ticket=[A-Za-z0-9_-]{43}$/, 'a WebSocket opened with a ticket');
    assert.doesNotMatch(url, /token=/, 'the session token stays out of URLs');
  }
}

export async function waitOnline(page) {
  await page.waitForSelector('#status[data-state="online"]');
}

// Creates the account and logs in; register also waits for the socket.
export async function signUp(page, username) {
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByText(`Logged in as ${username}`).waitFor();
}

export async function register(page, username) {
  await signUp(page, username);
  await waitOnline(page);
}

export async function createChat(page, name, members) {
  await page.getByLabel('Name', { exact: true }).fill(name);
  await page.getByLabel('Members').fill(members.join(', '));
  await page.getByRole('button', { name: 'Create chat' }).click();
  await page.locator('#chat-title', { hasText: name }).waitFor();
}

export function chatItem(page, name) {
  return page.locator('.chat-item', { has: page.locator('.chat-name', { hasText: name }) });
}

export async function openChat(page, name) {
  await chatItem(page, name).click();
  await page.locator('#chat-title', { hasText: name }).waitFor();
}

// Types into the composer and presses Enter, as one sends.
export async function send(page, text) {
  const box = page.getByLabel('Message', { exact: true });
  await box.fill(text);
  await box.press('Enter');
}

// The chat's unread badge as a number (0 while it has none), read until it
// shows `expected` or 10 s have passed: the badge follows a push, so a first
// reading can come before it. The caller asserts on what it returns.
export async function unread(page, name, expected) {
  const badge = chatItem(page, name).locator('.unread');
  const deadline = Date.now() + 10000;
  for (;;) {
    const seen = (await badge.count()) ? Number(await badge.textContent()) : 0;
    if (seen === expected || Date.now() > deadline) return seen;
    await sleep(50);
  }
}

// [{id, content}] of the confirmed messages shown, in order.
export function shown(page) {
  return page.$$eval('#messages li[data-id]', (lis) =>
    lis.map((li) => ({ id: li.dataset.id, content: li.querySelector('.content').textContent })));
}

// Waits until n confirmed messages are shown, then a little longer, so that
// a late double would still be counted by the caller.
export async function waitShown(page, n, settleMs = 500) {
  await page.waitForFunction((k) => document.querySelectorAll('#messages li[data-id]').length >= k, n);
  await sleep(settleMs);
  return shown(page);
}

// Both register; Alice creates a chat with Bob and writes `first`; Bob
// opens the chat and sees it. Returns the chat's name and id.
export async function meetInChat(alice, bob, first) {
  const bobName = uniq('bob'), room = uniq('room');
  await register(alice, uniq('alice'));
  await register(bob, bobName);
  await createChat(alice, room, [bobName]);
  await send(alice, first);
  await chatItem(bob, room).waitFor();
  await openChat(bob, room);
  await waitShown(bob, 1);
  return { room, chatId: await chatItem(alice, room).getAttribute('data-chat-id') };
}

export async function session(page) {
  return page.evaluate(() => JSON.parse(localStorage.getItem('natter.session')));
}
