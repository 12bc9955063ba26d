// natter's web client: log-in, the chat list, the open chat and the live
// connection, wired together. Built only on the public API (docs/openapi.yaml).
import { api, ApiError, setToken, setUnauthorizedHandler } from './api.js';
import { createChatList } from './chats.js';
import { createChatView } from './chat.js';
import { connectLive } from './live.js';

const SESSION_KEY = 'natter.session';
const $ = (id) => document.getElementById(id);

function saved() {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY));
  } catch {
    return null;
  }
}

function showError(el, err) {
  el.textContent = err instanceof ApiError ? err.message : 'Cannot reach the server. Try again.';
}

function showLogin() {
  $('login-view').hidden = false;
  $('login-username').focus();
}

let current = null; // the session this tab runs on

// A fresh page: nothing of the last session is left behind. The stored
// session is forgotten only when it is this tab's: another tab may have
// logged in since, and a late 401 here must not log that one out.
function logOut() {
  const stored = saved();
  if (!stored || !current || stored.token === current.token) localStorage.removeItem(SESSION_KEY);
  location.reload();
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const username = $('login-username').value.trim(), password = $('login-password').value;
  $('login-error').textContent = '';
  try {
    if (ev.submitter && ev.submitter.value === 'register') await api('POST', '/users', { username, password });
    const s = await api('POST', '/sessions', { username, password });
    const session = { token: s.token, user_id: s.user_id, username };
    localStorage.setItem(SESSION_KEY, JSON.stringify(session));
    $('login-password').value = '';
    start(session);
    $('chats-title').focus(); // the form is gone: go on from the top of the list

  } catch (err) {
    showError($('login-error'), err);
  }
});

$('logout').addEventListener('click', async () => {
  await api('DELETE', '/sessions').catch(() => {}); // logged out here either way
  logOut();
});

setUnauthorizedHandler(logOut);

function start(session) {
  current = session;
  const me = { id: session.user_id, username: session.username };
  setToken(session.token);
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  $('logout').hidden = false;
  $('whoami').textContent = `Logged in as ${me.username}`;

  let live = null;
  const view = createChatView({
    list: $('messages'),
    title: $('chat-title'),
    members: $('chat-members'),
    typing: $('typing'),
    me,
    onRead: () => refreshList(),
    onGone: (id) => {
      if (view.openId === id) closeChat();
      refreshList();
    },
    send: (frame) => live?.send(frame),
  });
  const chats = createChatList({ element: $('chat-list'), me, onSelect: openChat });

  // A GET /chats that fails is tried again (1 s, doubling to 30 s) until
  // one gets through: the list would go on missing what changed meanwhile.
  let listRetry = null, listDelay = 1000;
  async function refreshList() {
    try {
      await chats.refresh();
      clearTimeout(listRetry);
      listRetry = null;
      listDelay = 1000;
    } catch {
      if (listRetry !== null) return;
      listRetry = setTimeout(() => {
        listRetry = null;
        refreshList();
      }, listDelay);
      listDelay = Math.min(listDelay * 2, 30000);
    }
  }

  function closeChat() {
    view.close();
    chats.setOpen(null);
    $('chat-view').hidden = true;
    $('no-chat').hidden = false;
  }

  async function openChat(c) {
    $('no-chat').hidden = true;
    $('chat-view').hidden = false;
    chats.setOpen(c.id);
    $('composer-input').focus();
    await view.open(c).catch(() => {
      $('chat-members').textContent = 'Could not load this chat. Pick it again to retry.';
    });
  }

  $('new-chat').onsubmit = async (ev) => {
    ev.preventDefault();
    const name = $('new-chat-name').value.trim();
    const members = $('new-chat-members').value.split(/[\s,]+/).filter(Boolean);
    $('new-chat-error').textContent = '';
    try {
      const chat = await api('POST', '/chats', { name, members });
      $('new-chat').reset();
      chats.add(chat);
      openChat(chat);
    } catch (err) {
      showError($('new-chat-error'), err);
    }
  };

  const input = $('composer-input');
  $('composer').onsubmit = (ev) => {
    ev.preventDefault();
    const content = input.value;
    if (!content.trim() || view.openId === null) return;
    input.value = '';
    view.send(content);
  };
  input.oninput = () => {
    if (input.value.trim()) view.typed();
  };
  input.onkeydown = (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      $('composer').requestSubmit();
    }
  };

  live = connectLive({
    ticket: async () => (await api('POST', '/ws/tickets')).ticket,
    onStatus: (s) => {
      $('status').textContent = { connecting: 'Connecting…', online: 'Connected', offline: 'Reconnecting…' }[s];
      $('status').dataset.state = s;
    },
    onOpen: () => {
      refreshList();
      view.catchUp(); // tried again by the view until it gets through
    },
    onMessage: (m) => {
      const atBottom = view.atBottom(); // scrolled up, a new message is not on screen: it stays unread
      const shown = view.onMessage(m) && document.visibilityState === 'visible' && atBottom;
      if (!chats.onMessage(m, shown)) refreshList(); // a chat one was just added to
    },
    onFrame: (f) => {
      if (f.type === 'membership' && f.op === 'removed' && f.user_id === me.id) {
        if (view.openId === f.chat_id) closeChat();
        refreshList(); // the chat leaves the list
        return;
      }
      view.onFrame(f);
      chats.onFrame(f);
      if (f.type === 'membership' && !chats.has(f.chat_id)) refreshList(); // one was added to it, or it was made
    },
    onRefused: () => api('GET', '/me').catch(() => {}), // a 401 there logs out
  });
  refreshList();
}

const session = saved();
if (session && session.token) start(session);
else showLogin();
