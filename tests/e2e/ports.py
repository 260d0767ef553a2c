"""Port choice for tests, so that peers started by a test never race the
gateway (or the kernel) for a port.

- free_port(): a port the kernel hands out as ephemeral for UDP that is also
  free for TCP right now (SIP and RTP peers bind UDP, HTTP binds TCP).
- media_range(): a block for a gateway's or rtpengine's RTP sockets *below*
  the kernel's ephemeral range. Such ports are allocated and released by
  the hundred during a load test; inside the ephemeral range one of them
  could be handed out by free_port() and then be taken by the next call
  before the peer binds it (seen in CI: SIPp "Unable to bind main socket,
  errno = 98" after 400 bridged calls).
"""

import os
import socket

# libwebrtc's default port range in src/default_config.toml ([webrtc]), which
# every test gateway shares: media_range() stays clear of it.
_WEBRTC_DEFAULT = range(20000, 30000)


def free_port():
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            try:
                with socket.socket() as t:
                    t.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no port free for both UDP and TCP")


def udp_socket(timeout):
    """A UDP socket on 127.0.0.1, any port, with a receive timeout."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(timeout)
    return s


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def media_range(size=2000, slot=None):
    """(port_min, port_max) of `size` ports below the ephemeral range and
    outside libwebrtc's default range and the well-known ports below 10000; `slot` spreads concurrent users (by
    default the process id)."""
    low = _ephemeral_low()
    blocks = [b for b in range(10000, low - size + 1, size)  # 10000, 12000, ...
              if not (set(range(b, b + size)) & set(_WEBRTC_DEFAULT))]
    if not blocks:
        raise OSError(f"no {size}-port block below the ephemeral range ({low})")
    base = blocks[(os.getpid() if slot is None else slot) % len(blocks)]
    return base, base + size - 2
