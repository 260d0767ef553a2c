"""A 1:1 NAT in userspace, on loopback aliases: what a cloud VM's public
address does for a gateway bound on its private one. Ports opened with
open() on the public address (127.0.0.2) are forwarded to the same port on
the private one (127.0.0.1); each outside peer gets its own inside socket
(on 127.0.0.3), and what the gateway sends back to it leaves from the
public address. A thread; stops on close() or after max_seconds."""

import selectors
import socket
import threading
import time

PUBLIC, PRIVATE, INSIDE = "127.0.0.2", "127.0.0.1", "127.0.0.3"


class Nat:
    def __init__(self, max_seconds=60):
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.public = {}  # port -> socket on PUBLIC
        self.inside = {}  # (outside peer, port) -> socket towards PRIVATE
        self.counts = {"in": 0, "out": 0}
        self.deadline = time.monotonic() + max_seconds
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def open(self, *ports):
        """Forwards PUBLIC:port to PRIVATE:port, UDP."""
        with self.lock:
            for port in ports:
                if port in self.public:
                    continue
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((PUBLIC, port))
                s.setblocking(False)
                self.public[port] = s
                self.sel.register(s, selectors.EVENT_READ, ("public", port, None))

    def run(self):
        while self.running and time.monotonic() < self.deadline:
            with self.lock:
                events = self.sel.select(timeout=0.05) if self.public else []
            if not events:
                time.sleep(0.01)
            for key, _ in events:
                kind, port, peer = key.data
                try:
                    data, src = key.fileobj.recvfrom(65535)
                except OSError:
                    continue
                if kind == "public":
                    s = self.inside.get((src, port))
                    if s is None:
                        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        s.bind((INSIDE, 0))
                        s.setblocking(False)
                        self.inside[(src, port)] = s
                        with self.lock:
                            self.sel.register(s, selectors.EVENT_READ, ("inside", port, src))
                    s.sendto(data, (PRIVATE, port))
                    self.counts["in"] += 1
                else:
                    self.public[port].sendto(data, peer)
                    self.counts["out"] += 1

    def close(self):
        self.running = False
        self.thread.join(5)
        for s in list(self.public.values()) + list(self.inside.values()):
            s.close()
