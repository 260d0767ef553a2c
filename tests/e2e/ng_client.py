"""rtpengine's ng control protocol from the client side: bencode, and a
client that sends `<cookie> <dict>` over UDP and waits for its reply. Used
to drive rtpengine (the QoS lab) and to test rtcgw's ng front end."""

import os
import socket
import time


def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    if isinstance(v, dict):
        return b"d" + b"".join(bencode(k) + bencode(v[k]) for k in sorted(v)) + b"e"
    raise TypeError(type(v))


def bdecode(b, i=0):
    c = b[i:i + 1]
    if c == b"i":
        j = b.index(b"e", i)
        return int(b[i + 1:j]), j + 1
    if c == b"l":
        out, i = [], i + 1
        while b[i:i + 1] != b"e":
            v, i = bdecode(b, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        out, i = {}, i + 1
        while b[i:i + 1] != b"e":
            k, i = bdecode(b, i)
            v, i = bdecode(b, i)
            out[k.decode()] = v
        return out, i + 1
    j = b.index(b":", i)
    n = int(b[i:j])
    return b[j + 1:j + 1 + n], j + 1 + n


class NgClient:
    def __init__(self, port, host="127.0.0.1", timeout=2.0, bind="127.0.0.1"):
        self.addr = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((bind, 0))
        self.sock.settimeout(timeout)

    def raw(self, datagram):
        """Sends a datagram as it is; the reply datagram, or None."""
        self.sock.sendto(datagram, self.addr)
        try:
            return self.sock.recv(65535)
        except socket.timeout:
            return None

    def cookie(self):
        return f"{os.getpid()}_{time.monotonic_ns()}"

    def __call__(self, msg, cookie=None):
        """Sends a command; its reply dictionary (bytes values)."""
        cookie = cookie or self.cookie()
        self.sock.sendto(cookie.encode() + b" " + bencode(msg), self.addr)
        while True:
            data = self.sock.recv(65535)
            c, _, body = data.partition(b" ")
            if c.decode() == cookie:
                return bdecode(body)[0]

    def close(self):
        self.sock.close()
