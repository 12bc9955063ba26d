"""A TCP proxy on loopback for tests: forwards both ways until paused, which stops it reading either
side, as a peer whose network went away without a FIN would (its TCP stays open, nothing moves)."""

import selectors
import socket
import threading


class Proxy:
    def __init__(self, target_port, host="127.0.0.1"):
        self.target = (host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.paused = threading.Event()
        self.stopped = threading.Event()
        self.pairs = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ)
        peer = {}
        while not self.stopped.is_set():
            for key, _ in sel.select(timeout=0.05):
                s = key.fileobj
                if s is self.listener:
                    client, _ = self.listener.accept()
                    upstream = socket.create_connection(self.target)
                    for a, b in ((client, upstream), (upstream, client)):
                        peer[a] = b
                        sel.register(a, selectors.EVENT_READ)
                    self.pairs.append((client, upstream))
                    continue
                if self.paused.is_set():
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    for x in (s, peer[s]):
                        try:
                            sel.unregister(x)
                        except (KeyError, ValueError):
                            pass
                        x.close()
                    continue
                peer[s].sendall(data)
            if self.paused.is_set():
                self.stopped.wait(0.05)  # nothing is read: the kernel buffers fill, then both sides stall

    def pause(self):
        self.paused.set()

    def close(self):
        self.stopped.set()
        self.thread.join(timeout=2)
        self.listener.close()
        for a, b in self.pairs:
            for x in (a, b):
                try:
                    x.close()
                except OSError:
                    pass
