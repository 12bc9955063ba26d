// The WebSocket (GET /ws?ticket=…, a single-use ticket from POST /ws/tickets
// so the session token stays out of URLs): pushed messages and the chats' events,
// typing indicators going out, and reconnection with exponential backoff
// and jitter. Whoever uses it catches up from history in onOpen, which runs
// after every (re)connection: the socket is open before the catch-up is
// asked for, so nothing falls between the two, and what arrives twice is
// dropped by message id (and applied once by event id).

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;
// A socket closed before it was open this long (a server shedding load closes
// with 1013 right after the upgrade) does not start the backoff over.
const STEADY_MS = 10000;

export function connectLive({ ticket, onMessage, onFrame, onOpen, onStatus, onRefused }) {
  let ws = null;
  let attempt = 0;
  let timer = null;

  // A fresh ticket for every attempt: each opens one socket, once.
  async function open() {
    timer = null;
    onStatus('connecting');
    let t;
    try {
      t = await ticket();
    } catch {
      schedule(); // the server is away, or the session is gone (a 401 there logs out)
      return;
    }
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const sock = new WebSocket(`${scheme}//${location.host}/ws?ticket=${encodeURIComponent(t)}`);
    let opened = 0; // when it opened
    ws = sock;
    sock.onopen = () => {
      opened = Date.now();
      onStatus('online');
      onOpen();
    };
    sock.onmessage = (ev) => {
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (frame.type === 'message') onMessage(frame.message);
      else onFrame(frame);
    };
    sock.onclose = (ev) => {
      ws = null;
      // refused (perhaps the token expired), or 4001: the session ended (a logout elsewhere); let the owner check
      if (!opened || ev.code === 4001) onRefused();
      if (opened && Date.now() - opened >= STEADY_MS) attempt = 0;
      schedule();
    };
  }

  function schedule() {
    const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** attempt);
    attempt++;
    onStatus('offline');
    timer = setTimeout(open, ceiling / 2 + Math.random() * (ceiling / 2));
  }

  // The network came back: try now instead of at the end of the backoff.
  function onOnline() {
    if (ws === null && timer !== null) {
      clearTimeout(timer);
      attempt = 0;
      open();
    }
  }
  window.addEventListener('online', onOnline);
  open();

  return {
    // Sends a frame when connected; what cannot go now is dropped (typing indicators only).
    send(frame) {
      if (ws !== null && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
    },
  };
}
