// One open chat: its history (older pages load as one scrolls up), pushed
// messages, sending with an optimistic message reconciled by id, and the
// read marker, moved forward as messages are seen.
//
// The list holds, in order, every confirmed message by ascending id, then
// the messages being sent (no id yet, class "pending"). Each confirmed item
// is registered by id, so a message that arrives twice (a push and a
// catch-up page, a push and the answer to one's own post) is shown once.
import { api, idCompare } from './api.js';

const PAGE = 50;
const READ_DELAY_MS = 300;
const NEAR_TOP_PX = 120;

export function createChatView({ list, title, members, me, onRead }) {
  let chat = null; // {id, name}
  let names = new Map(); // user id -> username, from the chat's member list
  let asked = new Set(); // senders not among the members when the list was last fetched
  let byId = new Map(); // message id -> <li>
  let pending = new Map(); // client_id -> <li>
  let oldest = null, newest = null, hasOlder = false, loadingOlder = false;
  let visible = new Set(); // ids of the confirmed items on screen
  let readSent = null, readTimer = null;
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

  function render(li, m, sending) {
    const mine = m.sender_id === me.id;
    li.className = 'message' + (mine ? ' mine' : '') + (sending ? ' pending' : '');
    const meta = document.createElement('div');
    meta.className = 'meta';
    const who = document.createElement('span');
    who.className = 'sender';
    if (mine) who.textContent = 'You';
    else nameSender(who, m.sender_id);
    const when = document.createElement('time');
    if (m.created_at) {
      when.dateTime = m.created_at;
      when.textContent = new Date(m.created_at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    } else {
      when.textContent = 'sending…';
    }
    meta.append(who, ' ', when);
    const text = document.createElement('p');
    text.className = 'content';
    text.textContent = m.content;
    li.replaceChildren(meta, text);
  }

  function nameSender(span, userId) {
    span.dataset.userId = userId;
    span.textContent = names.get(userId) ?? 'unknown user';
    if (!names.has(userId) && !asked.has(userId) && chat) {
      asked.add(userId);
      loadMembers(chat.id).catch(() => asked.delete(userId));
    }
  }

  // The member list, and the names of the senders shown so far.
  async function loadMembers(id) {
    const full = await api('GET', `/chats/${id}`);
    if (!chat || chat.id !== id) return;
    names = new Map(full.members.map((u) => [u.id, u.username]));
    members.textContent = 'Members: ' + full.members.map((u) => u.username).join(', ');
    for (const span of list.querySelectorAll('.sender[data-user-id]')) {
      if (names.has(span.dataset.userId)) span.textContent = names.get(span.dataset.userId);
    }
  }

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

  // Adds one message of this chat unless it is already shown; a message of
  // one's own that is still pending (same client_id) becomes it.
  function add(m) {
    if (byId.has(m.id)) return false;
    let li = m.client_id ? pending.get(m.client_id) : undefined;
    if (li) pending.delete(m.client_id);
    else li = document.createElement('li');
    li.dataset.id = m.id;
    render(li, m, false);
    place(li, m.id);
    byId.set(m.id, li);
    observer.observe(li);
    if (oldest === null || idCompare(m.id, oldest) < 0) oldest = m.id;
    if (newest === null || idCompare(m.id, newest) > 0) newest = m.id;
    return true;
  }

  function addAll(messages) {
    const stick = nearBottom();
    const added = messages.filter(add).length;
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

  async function post(li, m) {
    li.querySelector('.retry')?.remove();
    render(li, m, true);
    try {
      const ack = await api('POST', `/chats/${m.chat_id}/messages`, { content: m.content, client_id: m.client_id });
      if (pending.get(m.client_id) === li) add({ ...m, id: ack.id, created_at: ack.created_at });
    } catch (err) {
      if (pending.get(m.client_id) !== li) return;
      li.classList.add('failed');
      const retry = document.createElement('button');
      retry.type = 'button';
      retry.className = 'retry';
      retry.textContent = `Not sent (${err.message}). Retry`;
      retry.addEventListener('click', () => post(li, m));
      li.append(retry);
    }
  }

  async function load(id) {
    const [, page] = await Promise.all([loadMembers(id), api('GET', `/chats/${id}/messages?limit=${PAGE}`)]);
    if (!chat || chat.id !== id) return;
    page.messages.forEach(add);
    hasOlder = page.has_more;
    list.scrollTop = list.scrollHeight;
    fillUp();
  }

  return {
    get openId() {
      return chat ? chat.id : null;
    },

    open(summary) {
      chat = { id: summary.id, name: summary.name };
      byId = new Map();
      pending = new Map();
      names = new Map();
      asked = new Set();
      visible = new Set();
      oldest = newest = readSent = null;
      hasOlder = false;
      observer.disconnect();
      list.replaceChildren();
      title.textContent = summary.name;
      members.textContent = '';
      ready = load(chat.id);
      return ready;
    },

    // A pushed message of any chat; true when it is this one's.
    onMessage(m) {
      if (!chat || m.chat_id !== chat.id) return false;
      addAll([m]);
      return true;
    },

    // After a reconnection: everything after the last message seen.
    async catchUp() {
      if (!chat) return;
      const id = chat.id;
      await ready.catch(() => {});
      if (!chat || chat.id !== id) return;
      if (newest === null) return (ready = load(id)); // nothing shown yet: the newest page
      for (let more = true; more && chat && chat.id === id;) {
        const page = await api('GET', `/chats/${id}/messages?after=${newest}&limit=200`);
        if (!chat || chat.id !== id) return;
        addAll(page.messages);
        more = page.has_more && page.messages.length > 0;
      }
    },

    send(content) {
      const m = { chat_id: chat.id, sender_id: me.id, content, client_id: crypto.randomUUID() };
      const li = document.createElement('li');
      pending.set(m.client_id, li);
      list.append(li);
      list.scrollTop = list.scrollHeight;
      post(li, m);
    },
  };
}
