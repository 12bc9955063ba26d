// What happens to a message after it is sent, and around it: Alice and Bob,
// in two browser profiles, edit, delete and react, see each other typing,
// online, and what the other has seen — with the keyboard where it matters.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, screenshot, useNatterAndBrowser } from './harness.mjs';
import { assertClean, chatItem, createChat, meetInChat, openApp, register, send, session, shown, uniq, waitShown } from './client.mjs';

const env = useNatterAndBrowser();

function item(page, text) {
  return page.locator('#messages li[data-id]', { hasText: text });
}

async function twoInAChat(first) {
  const alice = await openApp(await env.browser.newContext(), env.natter.base);
  const bobContext = await env.browser.newContext();
  const bob = await openApp(bobContext, env.natter.base);
  const { room, chatId } = await meetInChat(alice, bob, first);
  return { alice, bob, bobContext, room, chatId };
}

test('Alice edits her message with the keyboard and deletes another; Bob sees both', async () => {
  const { alice, bob, chatId } = await twoInAChat('helo Bob');
  await send(alice, 'a regrettable message');
  await waitShown(bob, 2);

  // only one's own messages offer Edit and Delete
  assert.equal(await item(bob, 'helo Bob').getByRole('button', { name: 'Edit' }).count(), 0);
  await item(alice, 'helo Bob').getByRole('button', { name: 'Edit' }).focus();
  await alice.keyboard.press('Enter');
  const box = alice.getByLabel('Edit message');
  assert.equal(await box.evaluate((el) => el === document.activeElement), true, 'the edit box has the focus');
  await alice.keyboard.press('Control+A');
  await alice.keyboard.type('hello Bob');
  await alice.keyboard.press('Enter');
  await item(alice, 'hello Bob').locator('.edited').waitFor();
  await item(bob, 'hello Bob').locator('.edited').waitFor();
  assert.equal(await item(bob, 'hello Bob').locator('.content').textContent(), 'hello Bob');

  // Escape leaves an edit without changing anything
  await item(alice, 'hello Bob').getByRole('button', { name: 'Edit' }).click();
  await alice.keyboard.type(' and more');
  await alice.keyboard.press('Escape');
  assert.equal(await item(alice, 'hello Bob').locator('.content').textContent(), 'hello Bob');

  await item(alice, 'a regrettable message').getByRole('button', { name: 'Delete' }).click();
  await alice.locator('#messages li.deleted', { hasText: 'Message deleted' }).waitFor();
  await bob.locator('#messages li.deleted', { hasText: 'Message deleted' }).waitFor();
  assert.equal(await bob.locator('#messages li', { hasText: 'regrettable' }).count(), 0);
  assert.deepEqual((await shown(bob)).map((m) => m.content), ['hello Bob', 'Message deleted']);

  // what history says, after a reload
  const { token } = await session(bob);
  const history = (await api(env.natter.base, 'GET', `/chats/${chatId}/messages`, token)).messages;
  assert.equal(history[0].content, 'hello Bob');
  assert.equal(history[1].deleted, true);
  await bob.reload();
  await bob.locator('.chat-item').first().click();
  await bob.locator('#messages li.deleted').waitFor();
  await item(bob, 'hello Bob').locator('.edited').waitFor();
  await screenshot(alice, 'events-edit-delete-alice');
  await screenshot(bob, 'events-edit-delete-bob');
  assertClean(alice);
  assertClean(bob);
});

test('reactions from a small set, with counts, both ways, by keyboard too', async () => {
  const { alice, bob } = await twoInAChat('react to this');
  const onBob = item(bob, 'react to this');
  await onBob.getByRole('button', { name: 'React' }).click();
  await onBob.getByRole('button', { name: 'React with 👍' }).click();
  const chip = (page) => item(page, 'react to this').locator('.chip[data-emoji="👍"]');
  await chip(alice).waitFor();
  assert.equal(await chip(alice).textContent(), '👍 1');
  assert.equal(await chip(bob).getAttribute('aria-pressed'), 'true');
  assert.equal(await chip(alice).getAttribute('aria-pressed'), 'false');

  // Alice joins in from her keyboard: the chip is a button
  await chip(alice).focus();
  await alice.keyboard.press('Enter');
  // each sees it when it reaches them: Bob by his push, Alice by her PUT's
  // answer or her own push, whichever comes first
  await bob.waitForFunction(() => document.querySelector('.chip[data-emoji="👍"]')?.textContent === '👍 2');
  await alice.waitForFunction(() => document.querySelector('.chip[data-emoji="👍"]')?.textContent === '👍 2');
  assert.equal(await chip(alice).getAttribute('aria-pressed'), 'true');

  // another emoji, through the picker with the keyboard
  await item(alice, 'react to this').getByRole('button', { name: 'React' }).focus();
  await alice.keyboard.press('Enter'); // opens the picker, focus on its first emoji
  await alice.keyboard.press('Tab');
  await alice.keyboard.press('Enter'); // the second one: ❤️
  await item(bob, 'react to this').locator('.chip[data-emoji="❤️"]').waitFor();

  // Bob takes his back
  await chip(bob).click();
  await alice.waitForFunction(() => document.querySelector('.chip[data-emoji="👍"]')?.textContent === '👍 1');
  await screenshot(alice, 'events-reactions-alice');
  await screenshot(bob, 'events-reactions-bob');
  assertClean(alice);
  assertClean(bob);
});

test('Alice sees Bob typing, and it goes once his message arrives', async () => {
  const { alice, bob } = await twoInAChat('what do you think?');
  const bobName = (await session(bob)).username;
  const box = bob.getByLabel('Message', { exact: true });
  await box.pressSequentially('I think', { delay: 30 });
  await alice.locator('#typing', { hasText: `${bobName} is typing…` }).waitFor();
  assert.equal(await bob.locator('#typing').textContent(), '', 'never told about oneself');
  await screenshot(alice, 'events-typing');
  await box.press('Enter');
  await waitShown(alice, 2);
  await alice.waitForFunction(() => document.querySelector('#typing').textContent === '');
  assertClean(alice);
  assertClean(bob);
});

test('online dots and "Seen by"', async () => {
  const { alice, bob, bobContext } = await twoInAChat('are you there?');
  const bobId = (await session(bob)).user_id;
  const dot = alice.locator(`#chat-members .member[data-user-id="${bobId}"] .dot`);
  await alice.locator(`#chat-members .member[data-user-id="${bobId}"] .dot[data-online="true"]`).waitFor();
  assert.equal(await dot.getAttribute('aria-label'), 'online');

  // Bob has the chat open: what Alice sends he sees, and she is told
  await send(alice, 'seen this?');
  await waitShown(bob, 2);
  const seen = item(alice, 'seen this?').locator('.seen');
  await seen.waitFor();
  assert.equal(await seen.textContent(), `Seen by ${(await session(bob)).username}`);
  assert.equal(await alice.locator('#messages .seen').count(), 1, 'only under the last message seen');
  await screenshot(alice, 'events-seen-online');

  // Bob leaves: offline once the grace is over
  await bob.close();
  await bobContext.close();
  await alice.locator(`#chat-members .member[data-user-id="${bobId}"] .dot[data-online="false"]`)
    .waitFor({ timeout: 20000 });
  assert.equal(await dot.getAttribute('aria-label'), 'offline');
  await screenshot(alice, 'events-offline');
  assertClean(alice);
});

test('an edit and a delete made while the chat loads are shown once it has', async () => {
  const alice = await openApp(await env.browser.newContext(), env.natter.base);
  const bob = await openApp(await env.browser.newContext(), env.natter.base);
  const bobName = uniq('bob'), room = uniq('room');
  await register(alice, uniq('alice'));
  await register(bob, bobName);
  await createChat(alice, room, [bobName]);
  await send(alice, 'my password is hunter2');
  await send(alice, 'meet at 5');
  const [mistake, plan] = (await waitShown(alice, 2)).map((m) => m.id);
  const { token } = await session(alice);
  const chatId = await chatItem(alice, room).getAttribute('data-chat-id');

  // Bob's history page comes late, as over a slow link; the changes are made meanwhile
  await bob.route(/\/chats\/\d+\/messages\?limit=/, async (route) => {
    const response = await route.fetch(); // read now, handed over late
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await route.fulfill({ response });
  });
  await chatItem(bob, room).click();
  await bob.waitForTimeout(300); // the page is read
  await api(env.natter.base, 'DELETE', `/chats/${chatId}/messages/${mistake}`, token);
  await api(env.natter.base, 'PATCH', `/chats/${chatId}/messages/${plan}`, token, { content: 'meet at 6' });
  await bob.locator('#messages li.deleted', { hasText: 'Message deleted' }).waitFor();
  await item(bob, 'meet at 6').waitFor();
  assert.equal(await bob.locator('#messages li', { hasText: 'hunter2' }).count(), 0);
  assertClean(alice);
  assertClean(bob);
});
