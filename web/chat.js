// One open chat: its history (older pages load as one scrolls up), pushed
// messages and events, sending with an optimistic message reconciled by id,
// editing, deleting and reacting, who is typing, who is online, who has
// seen what, and the read marker, moved forward as messages are seen.
//
// The list holds, in order, every confirmed message by ascending id, then
// the messages being sent (no id yet, class "pending"). Each confirmed item
// is registered by id, so a message that arrives twice (a push and a
// catch-up page, a push and the answer to one's own post) is shown once.
// The chat's events (edits, deletes, reactions) are applied once each: the
// last event id applied is kept, pushes carry theirs, and a reconnection
// asks for the messages and events from a margin before the newest seen.
// Reactions are kept as sets of users, so an add or a remove seen twice
// changes nothing, and an older event of a user's emoji than one applied
// changes nothing either.
import { api, idBefore, idCompare } from './api.js';

const PAGE = 50;
const READ_DELAY_MS = 300;
const NEAR_TOP_PX = 120;
const TYPING_SEND_MS = 2000; // the server drops more than one per 2 s anyway
const TYPING_SHOW_MS = 3500; // an indicator not renewed by then goes
const APPLIED_KEPT = 1000;
const REACTIONS_KEPT = 10000; // (message, user, emoji) whose newest reaction event is remembered
const CATCH_UP_MARGIN_MS = 60000; // far past a post's way to the log (--kafka-timeout) and nodes' clock skew
const CATCH_UP_RETRY_MS = 1000; // a failed catch-up is tried again after this, doubling
const CATCH_UP_RETRY_MAX_MS = 30000;
export const REACTIONS = ['👍', '❤️', '😂', '😮', '😢', '🎉'];

export function createChatView({ list, title, members, typing, me, onRead, onGone, send }) {
  let chat = null; // {id, name}
  let people = new Map(); // user id -> {username, online, lastRead}, from the chat's member list
  let asked = new Set(); // senders not among the members when the list was last fetched
  const names = new Map(); // user id -> username of senders who are no longer members (GET /users/{id})
  let byId = new Map(); // message id -> <li>
  let states = new Map(); // message id -> {m, reactions: Map(emoji -> {count, users: Set}), editing}
  let pending = new Map(); // client_id -> <li>: the open chat's posts on screen not confirmed yet
  // client_id -> {m, err}: every post of any chat not confirmed yet (err: its
  // last failure, null while it is on its way), so that one still sending or
  // failed is shown again, to retry, when its chat opens again
  const outbox = new Map();
  let oldest = null, hasOlder = false, loadingOlder = false;
  // The newest message the chat's own order brought (history or a push),
  // where a catch-up starts. Not one's own post answered over HTTP: while the
  // socket was down, others may have posted before it.
  let caughtUp = null;
  // A reconnection's catch-up has not got through yet: pushes since then do not
  // follow on from caughtUp and lastEvent, so they move neither.
  let behind = false;
  let catchUps = 0; // catch-ups begun: a newer one (or another chat opened) ends an older one's retries
  let visible = new Set(); // ids of the confirmed items on screen
  let readSent = null, readTimer = null;
  let lastEvent = '0'; // the newest of the chat's events applied here: where a catch-up starts
  let applied = new Set(); // ids of the events applied here, the newest APPLIED_KEPT
  // message id, user id, emoji -> the newest reaction event applied to it: a
  // catch-up starts a margin back, and an older add must not undo a newer remove
  let reactionNewest = new Map();
  let typers = new Map(); // user id -> timer
  let typingSent = 0;
  let ready = Promise.resolve(); // the open chat's first page

  // Seen: half of it on screen, or half the screen filled by it (a long one).
  const observer = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const seen = e.intersectionRatio >= 0.5 || (e.rootBounds && e.intersectionRect.height >= e.rootBounds.height / 2);
      if (seen) visible.add(e.target.dataset.id);
      else visible.delete(e.target.dataset.id);
    }
    scheduleRead();
  }, { root: list, threshold: [0, 0.25, 0.5, 0.75, 1] });

  list.addEventListener('scroll', () => {
    if (list.scrollTop < NEAR_TOP_PX) loadOlder().catch(() => {}); // the next scroll tries again
  });
  document.addEventListener('visibilitychange', scheduleRead);

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function button(text, onClick, className) {
    const b = el('button', className, text);
    b.type = 'button';
    b.addEventListener('click', onClick);
    return b;
  }

  // ---------------------------------------------------------------- rendering

  function render(li, m, sending) {
    const mine = m.sender_id === me.id;
    const st = m.id ? states.get(m.id) : null;
    li.className = 'message' + (mine ? ' mine' : '') + (sending ? ' pending' : '') + (m.deleted ? ' deleted' : '');
    const meta = el('div', 'meta');
    const who = el('span', 'sender');
    if (mine) who.textContent = 'You';
    else nameSender(who, m.sender_id);
    const when = el('time');
    if (m.created_at) {
      when.dateTime = m.created_at;
      when.textContent = new Date(m.created_at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    } else {
      when.textContent = 'sending…';
    }
    meta.append(who, ' ', when);
    if (m.edited_at && !m.deleted) {
      const mark = el('span', 'edited', 'edited');
      mark.title = `edited ${new Date(m.edited_at).toLocaleString()}`;
      meta.append(' ', mark);
    }
    const parts = [meta];
    if (m.deleted) parts.push(el('p', 'content deleted-note', 'Message deleted'));
    else if (st && st.editing) parts.push(st.editing);
    else parts.push(el('p', 'content', m.content));
    if (st && !m.deleted) {
      const chips = reactionChips(st);
      if (chips) parts.push(chips);
      if (!st.editing) parts.push(actions(st, mine));
    }
    li.replaceChildren(...parts);
  }

  function rerender(id) {
    const li = byId.get(id), st = states.get(id);
    if (li && st) render(li, st.m, false);
    renderSeen();
  }

  function nameOf(userId) {
    return people.get(userId)?.username ?? names.get(userId);
  }

  // A sender not among the members: one just added (the members again), or
  // one who left (their name by id).
  function nameSender(span, userId) {
    span.dataset.userId = userId;
    span.textContent = nameOf(userId) ?? 'unknown user';
    if (nameOf(userId) === undefined && !asked.has(userId) && chat) {
      asked.add(userId);
      lookUp(chat.id, userId).catch(() => asked.delete(userId));
    }
  }

  async function lookUp(id, userId) {
    await loadMembers(id);
    if (!chat || chat.id !== id || people.has(userId)) return;
    names.set(userId, (await api('GET', `/users/${userId}`)).username);
    renameSenders();
  }

  function renameSenders() {
    for (const span of list.querySelectorAll('.sender[data-user-id]')) {
      const name = nameOf(span.dataset.userId);
      if (name !== undefined) span.textContent = name;
    }
  }

  function reactionChips(st) {
    if (st.reactions.size === 0) return null;
    const div = el('div', 'reactions');
    div.setAttribute('role', 'group');
    div.setAttribute('aria-label', 'Reactions');
    for (const [emoji, r] of st.reactions) {
      const mine = r.users.has(me.id);
      const chip = button(`${emoji} ${r.count}`, () => react(st, emoji, !mine), 'chip');
      chip.setAttribute('aria-pressed', String(mine));
      chip.dataset.emoji = emoji;
      div.append(chip);
    }
    return div;
  }

  function actions(st, mine) {
    const bar = el('div', 'actions');
    const picker = el('div', 'picker');
    picker.hidden = true;
    picker.setAttribute('role', 'group');
    picker.setAttribute('aria-label', 'Pick a reaction');
    for (const emoji of REACTIONS) {
      const b = button(emoji, () => {
        picker.hidden = true;
        react(st, emoji, !(st.reactions.get(emoji)?.users.has(me.id)));
      }, 'pick');
      b.setAttribute('aria-label', `React with ${emoji}`);
      picker.append(b);
    }
    const toggle = button('React', () => {
      picker.hidden = !picker.hidden;
      toggle.setAttribute('aria-expanded', String(!picker.hidden));
      if (!picker.hidden) picker.querySelector('button').focus();
    }, 'react');
    toggle.setAttribute('aria-expanded', 'false');
    bar.append(toggle);
    if (mine) bar.append(button('Edit', () => startEdit(st), 'edit'), button('Delete', () => remove(st), 'delete'));
    bar.append(picker);
    return bar;
  }

  // "Seen by …" under the newest message another member has read up to.
  function renderSeen() {
    for (const p of list.querySelectorAll('.seen')) p.remove();
    const readers = [...people].filter(([id, p]) => id !== me.id && p.lastRead);
    if (readers.length === 0) return;
    const ids = [...byId.keys()].sort(idCompare);
    for (let i = ids.length - 1; i >= 0; i--) {
      const names = readers.filter(([, p]) => idCompare(p.lastRead, ids[i]) >= 0).map(([, p]) => p.username);
      if (names.length > 0) {
        byId.get(ids[i]).append(el('p', 'seen', `Seen by ${names.join(', ')}`));
        return;
      }
    }
  }

  function renderMembers() {
    const items = [...people].map(([id, p]) => {
      const span = el('span', 'member');
      span.dataset.userId = id;
      const dot = el('span', 'dot');
      dot.dataset.online = String(p.online);
      dot.setAttribute('role', 'img');
      dot.setAttribute('aria-label', p.online ? 'online' : 'offline');
      span.append(dot, p.username);
      return span;
    });
    members.replaceChildren('Members: ', ...items);
  }

  function renderTyping() {
    const names = [...typers.keys()].map((id) => people.get(id)?.username).filter(Boolean);
    typing.textContent = names.length === 0 ? '' :
      names.length === 1 ? `${names[0]} is typing…` : `${names.join(', ')} are typing…`;
  }

  // ---------------------------------------------------------------- the member list

  // The member list (names, presence, read markers), and the names of the senders shown so far.
  async function loadMembers(id) {
    const full = await api('GET', `/chats/${id}`);
    if (!chat || chat.id !== id) return;
    people = new Map(full.members.map((u) => [u.id, { username: u.username, online: u.online, lastRead: u.last_read_id }]));
    renderMembers();
    renameSenders();
    renderSeen();
  }

  // ---------------------------------------------------------------- messages

  // Puts a confirmed item at its place by id: after every smaller id,
  // before the pending ones.
  function place(li, id) {
    li.remove();
    const first = list.firstElementChild;
    if (first && first.dataset.id && idCompare(id, first.dataset.id) < 0) return list.prepend(li); // an older page
    let next = list.querySelector('li.pending');
    let prev = next ? next.previousElementSibling : list.lastElementChild;
    while (prev && idCompare(prev.dataset.id, id) > 0) {
      next = prev;
      prev = prev.previousElementSibling;
    }
    list.insertBefore(li, next);
  }

  function reactionsOf(m) {
    return new Map((m.reactions ?? []).map((r) => [r.emoji, { count: r.count, users: new Set(r.user_ids) }]));
  }

  // Adds one message of this chat unless it is already shown; a message of
  // one's own that is still pending (same client_id) becomes it. fromFeed:
  // it came in the chat's order (history, or a push while not behind), see caughtUp.
  function add(m, fromFeed = true) {
    if (fromFeed && (caughtUp === null || idCompare(m.id, caughtUp) > 0)) caughtUp = m.id;
    if (byId.has(m.id)) return false;
    if (m.client_id && m.sender_id === me.id) outbox.delete(m.client_id); // it got through
    let li = m.client_id ? pending.get(m.client_id) : undefined;
    if (li) pending.delete(m.client_id);
    else li = document.createElement('li');
    li.dataset.id = m.id;
    states.set(m.id, { m, reactions: reactionsOf(m), editing: null });
    byId.set(m.id, li);
    render(li, m, false);
    place(li, m.id);
    observer.observe(li);
    if (oldest === null || idCompare(m.id, oldest) < 0) oldest = m.id;
    return true;
  }

  function addAll(messages, fromFeed = true) {
    const stick = nearBottom();
    const added = messages.filter((m) => add(m, fromFeed)).length;
    if (added > 0) renderSeen();
    if (added > 0 && stick) list.scrollTop = list.scrollHeight;
  }

  async function loadOlder() {
    if (!chat || !hasOlder || loadingOlder) return;
    loadingOlder = true;
    const id = chat.id;
    try {
      const page = await api('GET', `/chats/${id}/messages?before=${oldest}&limit=${PAGE}`);
      if (!chat || chat.id !== id) return;
      const fromBottom = list.scrollHeight - list.scrollTop;
      for (let i = page.messages.length - 1; i >= 0; i--) add(page.messages[i]); // newest first: each goes on top
      list.scrollTop = list.scrollHeight - fromBottom; // keep what one was reading in place
      hasOlder = page.has_more;
      renderSeen();
    } finally {
      loadingOlder = false;
    }
    fillUp();
  }

  // Until the list can scroll, there is no scrolling up to ask for more.
  function fillUp() {
    if (hasOlder && list.scrollHeight <= list.clientHeight) loadOlder();
  }

  function scheduleRead() {
    if (readTimer === null) readTimer = setTimeout(sendRead, READ_DELAY_MS);
  }

  async function sendRead() {
    readTimer = null;
    if (!chat || document.visibilityState !== 'visible') return;
    let top = null;
    for (const id of visible) if (top === null || idCompare(id, top) > 0) top = id;
    if (top === null || (readSent !== null && idCompare(top, readSent) <= 0)) return;
    const id = chat.id;
    readSent = top;
    try {
      await api('PUT', `/chats/${id}/read`, { message_id: top });
      onRead(id);
    } catch {
      if (chat && chat.id === id && readSent === top) readSent = null; // try again on the next change
    }
  }

  // Sends a post and shows how it went on whatever item shows it when the
  // answer comes: its chat may have been left and opened again meanwhile.
  async function post(m) {
    outbox.set(m.client_id, { m, err: null });
    const shown = pending.get(m.client_id);
    if (shown) {
      shown.querySelector('.retry')?.remove();
      shown.classList.remove('failed');
      render(shown, m, true);
    }
    try {
      const ack = await api('POST', `/chats/${m.chat_id}/messages`, { content: m.content, client_id: m.client_id });
      outbox.delete(m.client_id);
      if (pending.has(m.client_id) && add({ ...m, id: ack.id, created_at: ack.created_at }, false)) renderSeen();
    } catch (err) {
      if (!outbox.has(m.client_id)) return; // confirmed meanwhile (pushed, or in a page)
      outbox.get(m.client_id).err = err;
      const li = pending.get(m.client_id);
      if (li) notSent(li, m, err);
    }
  }

  function notSent(li, m, err) {
    li.classList.add('failed');
    li.append(button(`Not sent (${err.message}). Retry`, () => post(m), 'retry'));
  }

  // The chat's posts not confirmed yet, after its messages: still sending, or failed, to retry.
  function showOutbox(id) {
    for (const { m, err } of outbox.values()) {
      if (m.chat_id !== id || pending.has(m.client_id)) continue;
      const li = document.createElement('li');
      pending.set(m.client_id, li);
      list.append(li);
      render(li, m, true);
      if (err) notSent(li, m, err);
    }
  }

  // ---------------------------------------------------------------- edit, delete, react

  function startEdit(st) {
    const form = el('form', 'edit-form');
    const label = el('label', 'visually-hidden', 'Edit message');
    const box = el('textarea');
    box.id = `edit-${st.m.id}`;
    label.htmlFor = box.id;
    box.value = st.m.content;
    box.rows = 2;
    box.maxLength = 4000;
    const error = el('p', 'error');
    error.setAttribute('role', 'alert');
    const done = (focusEdit) => {
      st.editing = null;
      rerender(st.m.id);
      if (focusEdit) byId.get(st.m.id)?.querySelector('button.edit')?.focus();
    };
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const content = box.value;
      if (!content.trim()) return;
      if (content === st.m.content) return done(true);
      try {
        const edited = await api('PATCH', `/chats/${st.m.chat_id}/messages/${st.m.id}`, { content });
        if (!st.m.deleted) st.m = { ...st.m, ...edited };
        done(true);
      } catch (err) {
        error.textContent = `Not saved (${err.message}).`;
      }
    });
    box.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        form.requestSubmit();
      } else if (ev.key === 'Escape') {
        ev.preventDefault();
        done(true);
      }
    });
    form.append(label, box, button('Cancel', () => done(true), 'secondary'), el('button', null, 'Save'), error);
    st.editing = form;
    rerender(st.m.id);
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }

  function markDeleted(st) {
    const { id, chat_id, sender_id, created_at } = st.m;
    st.m = { id, chat_id, sender_id, created_at, deleted: true };
    st.reactions = new Map();
    st.editing = null;
    rerender(id);
  }

  async function remove(st) {
    try {
      await api('DELETE', `/chats/${st.m.chat_id}/messages/${st.m.id}`);
      markDeleted(st);
      list.focus();
    } catch {
      // stays as it was: the button can be pressed again
    }
  }

  // One user's reaction added or taken back (event eventId; null: one's own,
  // answered 204, whose event comes later): sets, so seeing it twice changes
  // nothing, and one older than the newest applied to the same user's emoji
  // on this message changes nothing either.
  function applyReaction(st, eventId, userId, emoji, add) {
    if (eventId !== null) {
      const key = `${st.m.id} ${userId} ${emoji}`;
      const newest = reactionNewest.get(key);
      if (newest !== undefined && idCompare(eventId, newest) <= 0) return;
      reactionNewest.delete(key); // re-inserted: the map's order is by last use
      reactionNewest.set(key, eventId);
      if (reactionNewest.size > REACTIONS_KEPT) reactionNewest.delete(reactionNewest.keys().next().value);
    }
    let r = st.reactions.get(emoji);
    if (add) {
      if (!r) st.reactions.set(emoji, r = { count: 0, users: new Set() });
      if (r.users.has(userId)) return;
      r.users.add(userId);
      r.count++;
    } else {
      if (!r || (!r.users.has(userId) && r.count <= r.users.size)) return;
      r.users.delete(userId);
      if (--r.count <= 0) st.reactions.delete(emoji);
    }
    st.reactions = new Map([...st.reactions].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  async function react(st, emoji, add) {
    const path = `/chats/${st.m.chat_id}/messages/${st.m.id}/reactions/${encodeURIComponent(emoji)}`;
    try {
      await api(add ? 'PUT' : 'DELETE', path);
      applyReaction(st, null, me.id, emoji, add);
      rerender(st.m.id);
      byId.get(st.m.id)?.querySelector(`.chip[data-emoji="${emoji}"]`)?.focus();
    } catch {
      // stays as it was
    }
  }

  // ---------------------------------------------------------------- events

  // Applies one of the chat's events, a push or an item of the events feed,
  // once: by event id (ids, not their order: two nodes' clocks may differ).
  // One about a message not shown is not kept as applied: history brings
  // the message's state when it is shown, and while the chat loads, a page
  // read before the event is put right by the feed after it (load).
  function applyEvent(eventId, messageId, apply, inOrder = true) {
    if (applied.has(eventId)) return;
    if (inOrder && idCompare(eventId, lastEvent) > 0) lastEvent = eventId;
    const st = states.get(messageId);
    if (!st) return;
    applied.add(eventId);
    if (applied.size > APPLIED_KEPT) applied.delete(applied.values().next().value);
    apply(st);
    rerender(messageId);
  }

  // The chat's events after `after`, applied: pages of the feed in order.
  async function applyFeed(id, after) {
    for (let more = true; more && chat && chat.id === id;) {
      const page = await api('GET', `/chats/${id}/events?after=${after}&limit=200`);
      if (!chat || chat.id !== id) return;
      page.events.forEach(applyFeedItem);
      if (page.events.length > 0) after = page.events[page.events.length - 1].id;
      more = page.has_more && page.events.length > 0;
    }
  }

  function onFrame(f) {
    if (!chat) return false;
    switch (f.type) {
    case 'membership': // someone came or went: the members shown (one's own removal closes the chat: app.js)
      if (f.chat_id !== chat.id) return false;
      loadMembers(chat.id).catch(() => {});
      return true;
    case 'message_edited':
      if (f.message.chat_id !== chat.id) return false;
      applyEvent(f.event_id, f.message.id, (st) => {
        if (!st.m.deleted) st.m = { ...f.message };
      }, !behind);
      return true;
    case 'message_deleted':
      if (f.chat_id !== chat.id) return false;
      applyEvent(f.event_id, f.id, markDeleted, !behind);
      return true;
    case 'reaction':
      if (f.chat_id !== chat.id) return false;
      applyEvent(f.event_id, f.message_id, (st) => {
        if (!st.m.deleted) applyReaction(st, f.event_id, f.user_id, f.emoji, f.op === 'add'); // Kafka: may cross its delete
      }, !behind);
      return true;
    case 'typing':
      if (f.chat_id !== chat.id || f.user_id === me.id) return false;
      clearTimeout(typers.get(f.user_id));
      typers.set(f.user_id, setTimeout(() => {
        typers.delete(f.user_id);
        renderTyping();
      }, TYPING_SHOW_MS));
      renderTyping();
      return true;
    case 'presence':
      if (!people.has(f.user_id)) return false;
      people.get(f.user_id).online = f.online;
      renderMembers();
      return true;
    case 'read': {
      if (f.chat_id !== chat.id || !people.has(f.user_id)) return false;
      const p = people.get(f.user_id);
      if (!p.lastRead || idCompare(f.message_id, p.lastRead) > 0) p.lastRead = f.message_id;
      renderSeen();
      return true;
    }
    default:
      return false;
    }
  }

  // An item of GET /chats/{id}/events: an edit carries its message as it is now.
  function applyFeedItem(e) {
    applyEvent(e.id, e.message_id, (st) => {
      if (e.type === 'message_deleted') markDeleted(st);
      else if (st.m.deleted) return; // a change that crossed its delete (listed on Cassandra)
      else if (e.type === 'message_edited') st.m = { ...e.message };
      else applyReaction(st, e.id, e.user_id, e.emoji, e.op === 'add');
    });
  }

  async function load(id) {
    // the newest event first: whatever comes after it, history or a catch-up shows
    const [, newestEvent, page] = await Promise.all([
      loadMembers(id),
      api('GET', `/chats/${id}/events?limit=1`),
      api('GET', `/chats/${id}/messages?limit=${PAGE}`),
    ]);
    if (!chat || chat.id !== id) return;
    const since = newestEvent.events.length > 0 ? newestEvent.events[0].id : '0';
    if (idCompare(since, lastEvent) > 0) lastEvent = since;
    page.messages.forEach((m) => add(m));
    showOutbox(id);
    hasOlder = page.has_more;
    renderSeen();
    list.scrollTop = list.scrollHeight;
    fillUp();
    // events pushed while the page was on its way found none of its messages
    // shown: the feed since the load began brings them to what is shown now
    await applyFeed(id, since);
  }

  // Catch-up `run` of chat `id` is still the one going: no newer one began, no other chat was opened.
  function current(id, run) {
    return run === catchUps && chat !== null && chat.id === id;
  }

  async function catchUpFrom(id, run) {
    await ready.catch(() => {});
    if (!current(id, run)) return;
    if (caughtUp === null) return (ready = load(id)); // nothing from the chat's order yet: the newest page
    for (let more = true, after = idBefore(caughtUp, CATCH_UP_MARGIN_MS); more;) {
      const page = await api('GET', `/chats/${id}/messages?after=${after}&limit=200`);
      if (!current(id, run)) return;
      addAll(page.messages);
      more = page.has_more && page.messages.length > 0;
      if (more) after = page.messages[page.messages.length - 1].id;
    }
    await applyFeed(id, idBefore(lastEvent, CATCH_UP_MARGIN_MS));
    await loadMembers(id); // presence and read markers may have moved meanwhile
  }

  // An empty screen under the title: no messages, members or typists.
  function show(name) {
    for (const t of typers.values()) clearTimeout(t);
    typers = new Map();
    observer.disconnect();
    list.replaceChildren();
    title.textContent = name;
    members.textContent = '';
    typing.textContent = '';
  }

  return {
    get openId() {
      return chat ? chat.id : null;
    },

    // The open chat's newest messages are on screen (a new one will be too).
    atBottom: nearBottom,

    open(summary) {
      show(summary.name);
      chat = { id: summary.id, name: summary.name };
      byId = new Map();
      states = new Map();
      pending = new Map();
      people = new Map();
      asked = new Set();
      visible = new Set();
      oldest = readSent = caughtUp = null;
      lastEvent = '0';
      behind = false;
      catchUps++;
      applied = new Set();
      reactionNewest = new Map();
      hasOlder = false;
      ready = load(chat.id);
      return ready;
    },

    // Nothing open (one was removed from the chat that was).
    close() {
      chat = null;
      show('');
    },

    // A pushed message of any chat; true when it is this one's.
    onMessage(m) {
      if (!chat || m.chat_id !== chat.id) return false;
      if (typers.delete(m.sender_id)) renderTyping(); // they were typing this
      addAll([m], !behind);
      return true;
    },

    // A pushed frame other than a message; true when it was for this chat.
    onFrame,

    // After a reconnection: everything after the last message and the last
    // event seen, asked from CATCH_UP_MARGIN_MS before them (repeats are dropped
    // by id): a chat's pushes come in the log's order, which another node's post
    // or a retried one can reach under an id older than one already shown.
    // Until it gets through, pushes do not move where it starts, and it is
    // tried again (with backoff) until it does, or another one or chat takes
    // over; a 403 or 404 (one was removed while away) hands the chat to onGone.
    async catchUp() {
      if (!chat) return;
      const id = chat.id, run = ++catchUps;
      behind = true;
      for (let delay = CATCH_UP_RETRY_MS; ; delay = Math.min(2 * delay, CATCH_UP_RETRY_MAX_MS)) {
        try {
          await catchUpFrom(id, run);
          if (run === catchUps) behind = false;
          return;
        } catch (err) {
          if (err.status === 403 || err.status === 404) { // removed (or gone) while away: no retry brings it back
            if (current(id, run)) onGone(id);
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, delay));
          if (!current(id, run)) return;
        }
      }
    },

    send(content) {
      const m = { chat_id: chat.id, sender_id: me.id, content, client_id: crypto.randomUUID() };
      const li = document.createElement('li');
      pending.set(m.client_id, li);
      list.append(li);
      list.scrollTop = list.scrollHeight;
      post(m);
    },

    // The composer changed: tell the others, at most every 2 s.
    typed() {
      const now = Date.now();
      if (!chat || now - typingSent < TYPING_SEND_MS) return;
      typingSent = now;
      send({ type: 'typing', chat_id: chat.id });
    },
  };
}
