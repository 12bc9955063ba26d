// The list of one's chats: unread counts and last message, newest activity
// first. Kept from GET /chats, and updated by pushed messages in between.
import { api, idCompare } from './api.js';

export function createChatList({ element, me, onSelect }) {
  let chats = [];
  let openId = null;
  let refreshing = 0; // GET /chats requests in flight
  let asked = 0, shown = 0; // GET /chats requests made, and the newest one whose answer is shown
  let during = [];    // messages pushed meanwhile: a snapshot read before them must not lose them
  const readTo = new Map(); // chat id → one's newest read marker pushed (it can come before its message)

  // A pushed message into the list; false when its chat is not in it.
  function take(msg, seen) {
    const c = chats.find((x) => x.id === msg.chat_id);
    if (!c) return false;
    if (c.last_message && idCompare(msg.id, c.last_message.id) <= 0) return true; // already counted
    c.last_message = msg;
    const read = readTo.get(c.id);
    if (msg.sender_id !== me.id && !seen && !(read && idCompare(msg.id, read) <= 0)) c.unread++;
    return true;
  }

  function activity(c) {
    return c.last_message ? c.last_message.id : '0';
  }

  function render() {
    const focused = document.activeElement && document.activeElement.dataset.chatId;
    chats.sort((a, b) => idCompare(activity(b), activity(a)) || idCompare(b.id, a.id));
    element.replaceChildren(...chats.map(item));
    if (focused) element.querySelector(`[data-chat-id="${focused}"]`)?.focus();
  }

  function item(c) {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'chat-item';
    button.dataset.chatId = c.id;
    if (c.id === openId) button.setAttribute('aria-current', 'true');
    const name = document.createElement('span');
    name.className = 'chat-name';
    name.textContent = c.name;
    const last = document.createElement('span');
    last.className = 'chat-last';
    if (c.last_message) {
      const text = c.last_message.deleted ? 'Message deleted' : c.last_message.content;
      last.textContent = (c.last_message.sender_id === me.id ? 'You: ' : '') + text;
    } else {
      last.textContent = 'No messages yet';
    }
    button.append(name, last);
    if (c.unread > 0) {
      const badge = document.createElement('span');
      badge.className = 'unread';
      // natter counts up to 1,000
      const shown = c.unread > 999 ? '999+' : String(c.unread);
      badge.textContent = shown;
      badge.setAttribute('aria-label', `${shown} unread`);
      button.append(badge);
    }
    button.addEventListener('click', () => onSelect(c));
    li.append(button);
    return li;
  }

  // The whole list, page by page (newest activity first; each page names
  // the next's cursor).
  async function allChats() {
    const out = [];
    let before = null;
    do {
      const page = await api('GET', `/chats?limit=200${before ? `&before=${before}` : ''}`);
      out.push(...page.chats);
      before = page.next_before;
    } while (before);
    return out;
  }

  // An answer older than one shown is dropped: it may predate a read.
  async function refresh() {
    const mine = ++asked;
    refreshing++;
    try {
      const answer = await allChats();
      if (mine < shown) return;
      shown = mine;
      chats = answer;
      for (const [msg, seen] of during) take(msg, seen);
    } finally {
      if (--refreshing === 0) during = [];
    }
    render();
  }

  // One's own read marker moved (here, or in another tab or device).
  function onRead(f) {
    const read = readTo.get(f.chat_id);
    if (!read || idCompare(f.message_id, read) > 0) readTo.set(f.chat_id, f.message_id);
    const c = chats.find((x) => x.id === f.chat_id);
    if (!c || c.unread === 0) return;
    if (c.last_message && idCompare(f.message_id, c.last_message.id) >= 0) {
      c.unread = 0;
      render();
    } else {
      refresh().catch(() => {}); // read part of it: the server counts the rest
    }
  }

  return {
    refresh,

    // A pushed message; returns false when its chat is not in the list yet.
    onMessage(msg, seen) {
      if (refreshing > 0) during.push([msg, seen]);
      if (!take(msg, seen)) return false;
      render();
      return true;
    },

    // A pushed edit or delete: the list shows the last message as it is now;
    // one's own read receipt: the chat's unread count follows.
    onFrame(f) {
      if (f.type === 'read') return void (f.user_id === me.id && onRead(f));
      const id = f.type === 'message_edited' ? f.message.id : f.type === 'message_deleted' ? f.id : null;
      const c = id && chats.find((x) => x.last_message && x.last_message.id === id);
      if (!c || (f.type === 'message_edited' && c.last_message.deleted)) return; // an edit that crossed its delete
      c.last_message = f.type === 'message_edited' ? f.message : { ...c.last_message, deleted: true };
      render();
    },

    has(id) {
      return chats.some((x) => x.id === id);
    },

    setOpen(id) {
      openId = id;
      render();
    },

    add(chat) {
      if (!chats.some((x) => x.id === chat.id)) chats.push({ ...chat, unread: 0, last_message: null });
      render();
    },
  };
}
