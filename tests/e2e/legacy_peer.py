"""A plain-RTP SIP endpoint (a PBX or desk phone behind the softswitch) for
mid-call tests: it answers rtcgw's INVITE with PCMU/PCMA + telephone-event,
echoes audio, records RFC 4733 events, and can put the call on hold, resume
it on a new port or codec, and send digits by RFC 4733 or SIP INFO."""

import re
import socket
import struct
import threading
import time

import rtp_tools

PTS = {"PCMU": 0, "PCMA": 8}


def uri_host(host):
    """A host as a SIP URI writes it (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host else host


def response(req, status, reason, tag, contact_port, body="", user="pbx", host="127.0.0.1"):
    """A response copying the request's dialog fields (RFC 3261 8.2.6)."""
    lines = req.split("\r\n")
    keep = [l for l in lines if l.split(":", 1)[0].strip().lower() in ("via", "from", "call-id", "cseq", "record-route")]
    to = next(l for l in lines if l.lower().startswith("to:"))
    if ";tag=" not in to:
        to += f";tag={tag}"
    ct = "Content-Type: application/sdp\r\n" if body else ""
    return (f"SIP/2.0 {status} {reason}\r\n" + "\r\n".join(keep) + f"\r\n{to}\r\n"
            f"Contact: <sip:{user}@{uri_host(host)}:{contact_port}>\r\n{ct}Content-Length: {len(body.encode())}\r\n\r\n{body}")


class Media:
    """One RTP socket: echoes audio back (own SSRC) while `echo` is set,
    records telephone-events and audio payload types."""

    def __init__(self, host="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.echo = True
        self.events = []  # (pt, timestamp, payload bytes, marker)
        self.audio = []  # (arrival, pt, payload)
        self.peer = None
        self.seq = 1000
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            try:
                data, addr = self.sock.recvfrom(2048)
            except (socket.timeout, OSError):
                continue
            if len(data) < 12 or data[0] >> 6 != 2 or 72 <= data[1] & 0x7F <= 76:
                continue  # RTCP
            pt, marker = data[1] & 0x7F, bool(data[1] & 0x80)
            ts = struct.unpack("!I", data[4:8])[0]
            self.peer = addr
            if pt in (0, 8):
                self.audio.append((time.monotonic(), pt, data[12:]))
                if self.echo:
                    self.seq += 1
                    self.sock.sendto(rtp_tools.rtp(pt, self.seq, ts, 0xEC40, data[12:]), addr)
            else:
                self.events.append((pt, ts, data[12:16], marker))

    def packets_between(self, t0, t1):
        return [a for a in self.audio if t0 <= a[0] < t1]

    def digits(self):
        """Completed RFC 4733 events: (digit, duration field, timestamp)."""
        done, seen = [], set()
        for pt, ts, p, _ in self.events:
            if len(p) == 4 and p[1] & 0x80 and ts not in seen:
                seen.add(ts)
                done.append(("0123456789*#ABCD"[p[0]], struct.unpack("!H", p[2:4])[0], ts))
        return done

    def send_digit(self, event, dest, pt=101):
        packets, self.seq, _ = rtp_tools.dtmf_packets([event], self.seq + 1, int(time.monotonic() * 8000), 0xEC40, pt=pt)
        for p in packets:
            self.sock.sendto(p, dest)
            time.sleep(0.02)

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


class LegacyCallee:
    """Answers one INVITE from rtcgw on `sip` (a bound UDP socket)."""

    def __init__(self, sip, codec="PCMU", early_media=False):
        self.sip = sip
        self.port = sip.getsockname()[1]
        # The family of the SIP socket is the call's: SIP and media.
        self.host = sip.getsockname()[0]
        self.uhost = uri_host(self.host)
        self.ip = "IP6" if ":" in self.host else "IP4"
        self.codec = codec
        self.early_media = early_media
        self.media = Media(self.host)
        self.version = 1
        self.cseq = 1
        self.invite = None
        self.gw_media = None  # rtcgw's RTP address from its offer
        self.bye = threading.Event()

    def sdp(self, direction="sendrecv", codec=None, media=None):
        codec = codec or self.codec
        media = media or self.media
        pt = PTS[codec]
        return (f"v=0\r\no=pbx 7 {self.version} IN {self.ip} {self.host}\r\ns=-\r\nc=IN {self.ip} {self.host}\r\nt=0 0\r\n"
                f"m=audio {media.port} RTP/AVP {pt} 101\r\na=rtpmap:{pt} {codec}/8000\r\n"
                f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na={direction}\r\n")

    def answer(self):
        """Waits for rtcgw's INVITE and answers it (183 with SDP first when
        `early_media`); returns the offer."""
        while True:
            data, self.addr = self.sip.recvfrom(65535)
            req = data.decode()
            if req.startswith("INVITE"):
                break
        self.invite = req
        offer = req.split("\r\n\r\n", 1)[1]
        port = int(re.search(r"^m=audio (\d+)", offer, re.M).group(1))
        self.gw_media = (re.search(r"^c=IN IP[46] (\S+)", offer, re.M).group(1), port)
        self.call_id = re.search(r"^Call-ID: (.*)$", req, re.M).group(1).strip()
        self.remote_from = re.search(r"^From: (.*)$", req, re.M).group(1).strip()
        self.remote_to = re.search(r"^To: (.*)$", req, re.M).group(1).strip() + ";tag=pbx"
        self.target = re.search(r"^Contact: .*?<([^>]+)>", req, re.M).group(1)
        # Through a proxy: the route set is the INVITE's Record-Route, in
        # its order (RFC 3261 12.1.1), and it goes in every response too.
        self.record_route = re.findall(r"^Record-Route: (.*?)\r?$", req, re.M)
        if self.early_media:
            self.sip.sendto(response(req, 183, "Session Progress", "pbx", self.port, self.sdp(), host=self.host).encode(), self.addr)
            time.sleep(1.0)
        self.sip.sendto(response(req, 200, "OK", "pbx", self.port, self.sdp(), host=self.host).encode(), self.addr)
        return offer

    def route_headers(self):
        return "".join(f"Route: {r}\r\n" for r in getattr(self, "record_route", []))

    def request(self, method, body="", ctype="application/sdp"):
        """An in-dialog request from the callee (To/From swapped)."""
        self.cseq += 1
        ct = f"Content-Type: {ctype}\r\n" if body else ""
        text = (f"{method} {self.target} SIP/2.0\r\nVia: SIP/2.0/UDP {self.uhost}:{self.port};branch=z9hG4bKpbx{time.monotonic_ns()};rport\r\n"
                + self.route_headers()
                + f"From: {self.remote_to}\r\nTo: {self.remote_from}\r\nCall-ID: {self.call_id}\r\n"
                f"CSeq: {self.cseq} {method}\r\nContact: <sip:pbx@{self.uhost}:{self.port}>\r\nMax-Forwards: 70\r\n"
                f"{ct}Content-Length: {len(body.encode())}\r\n\r\n{body}")
        self.sip.sendto(text.encode(), self.addr)
        return self.final(self.cseq, method)

    def final(self, cseq, method):
        while True:
            data, _ = self.sip.recvfrom(65535)
            msg = data.decode()
            if msg.startswith("SIP/2.0") and f"CSeq: {cseq} {method}" in msg and int(msg.split()[1]) >= 200:
                return int(msg.split()[1]), msg
            if msg.startswith("BYE"):
                self.sip.sendto(response(msg, 200, "OK", "pbx", self.port).encode(), self.addr)
                self.bye.set()

    def reinvite(self, direction, codec=None, media=None):
        """Hold/resume or a new address/codec; returns rtcgw's answer."""
        self.version += 1
        status, resp = self.request("INVITE", self.sdp(direction, codec, media))
        assert status == 200, resp[:300]
        ack = (f"ACK {self.target} SIP/2.0\r\nVia: SIP/2.0/UDP {self.uhost}:{self.port};branch=z9hG4bKack{time.monotonic_ns()}\r\n"
               + self.route_headers()
               + f"From: {self.remote_to}\r\nTo: {self.remote_from}\r\nCall-ID: {self.call_id}\r\n"
               f"CSeq: {self.cseq} ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        self.sip.sendto(ack.encode(), self.addr)
        return resp.split("\r\n\r\n", 1)[1]

    def wait_bye(self, timeout=15):
        deadline = time.time() + timeout
        self.sip.settimeout(0.5)
        while not self.bye.is_set() and time.time() < deadline:
            try:
                data, _ = self.sip.recvfrom(65535)
            except socket.timeout:
                continue
            msg = data.decode()
            if msg.startswith("BYE"):
                self.sip.sendto(response(msg, 200, "OK", "pbx", self.port).encode(), self.addr)
                self.bye.set()
        return self.bye.is_set()


def plain_call(sip_addr, host="127.0.0.1", seconds=2.0, on_answer=None, sdp_host=None):
    """A plain RTP caller (PCMU, recorded speech) to the demo at `sip_addr`,
    from `host` (IPv4 or IPv6 loopback): INVITE, ACK, `seconds` of speech to
    the answer's c=/m= address while recording what comes back, BYE to
    the Contact. `on_answer(port)` runs between the 200 and the first RTP.
    `sdp_host`: the address the SDP gives instead of `host` (a phone behind
    NAT whose SDP names its private address).
    Returns (the 200, the datagrams received, whether the BYE got 200)."""
    import rtp_tools

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    uhost, ip = uri_host(host), "IP6" if ":" in host else "IP4"
    sig = socket.socket(family, socket.SOCK_DGRAM)
    sig.bind((host, 0))
    sig.settimeout(5)
    media = socket.socket(family, socket.SOCK_DGRAM)
    media.bind((host, 0))
    media.settimeout(0.02)
    sport, mport = sig.getsockname()[1], media.getsockname()[1]
    sdp_host = sdp_host or host
    sdp = (f"v=0\r\no=py 1 1 IN {ip} {sdp_host}\r\ns=-\r\nc=IN {ip} {sdp_host}\r\nt=0 0\r\n"
           f"m=audio {mport} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    ruri = f"sip:demo@{uri_host(sip_addr[0])}:{sip_addr[1]}"
    head = (f" SIP/2.0\r\nVia: SIP/2.0/UDP {uhost}:{sport};branch=z9hG4bK{{b}};rport\r\n"
            f"From: <sip:py@{uhost}>;tag=py\r\nTo: <{ruri}>{{to}}\r\nCall-ID: py-{ip}-{sport}\r\n"
            f"CSeq: {{cseq}}\r\nContact: <sip:py@{uhost}:{sport}>\r\nMax-Forwards: 70\r\n")
    try:
        sig.sendto((f"INVITE {ruri}" + head.format(b="inv", to="", cseq="1 INVITE")
                    + f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}").encode(), sip_addr)
        while True:
            ok = sig.recv(65535).decode()
            if int(ok.split()[1]) >= 200:
                break
        assert ok.startswith("SIP/2.0 200"), ok[:200]
        body = ok.split("\r\n\r\n", 1)[1]
        gw_media = (re.search(r"^c=IN IP[46] (\S+)", body, re.M).group(1),
                    int(re.search(r"^m=audio (\d+) ", body, re.M).group(1)))
        if on_answer:
            on_answer(gw_media[1])
        contact = re.search(r"^Contact: <([^>]+)>", ok, re.M).group(1)
        to_tag = re.search(r"^To: .*(;tag=\S+)", ok, re.M).group(1).strip()
        # Through a proxy: the route set is the Record-Route, reversed
        # (RFC 3261 section 12.1.2), and the requests go to the proxy.
        rr = [r.strip() for line in re.findall(r"^Record-Route: (.+)$", ok, re.M) for r in line.split(",")]
        route = "".join(f"Route: {r}\r\n" for r in reversed(rr))
        sig.sendto((f"ACK {contact}" + head.format(b="ack", to=to_tag, cseq="1 ACK") + route
                    + "Content-Length: 0\r\n\r\n").encode(), sip_addr)
        frames = int(seconds * 50)
        speech, got = rtp_tools.read_speech(seconds), []
        start = time.monotonic()
        for i in range(frames):
            payload = rtp_tools.ulaw_encode(speech[i * 160:(i + 1) * 160]).tobytes()
            media.sendto(rtp_tools.rtp(0, i, i * 160, 0x6666, payload, marker=i == 0), gw_media)
            while time.monotonic() < start + (i + 1) * 0.02:
                try:
                    got.append(media.recv(2048))
                except socket.timeout:
                    pass
        # The BYE goes where the Contact says (behind NAT: the public address,
        # which `sip_addr` is then too).
        sig.sendto((f"BYE {contact}" + head.format(b="bye", to=to_tag, cseq="2 BYE") + route
                    + "Content-Length: 0\r\n\r\n").encode(), sip_addr)
        while True:
            bye = sig.recv(65535).decode()
            if re.search(r"^CSeq: 2 BYE", bye, re.M):
                break
        return ok, got, bye.startswith("SIP/2.0 200")
    finally:
        sig.close()
        media.close()
