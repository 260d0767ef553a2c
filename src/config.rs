//! The gateway's configuration: TOML, with an embedded default
//! (`rtcgw --print-default-config` prints it). Every key is optional in a
//! file; what is left out takes the default. Values are typed (enums,
//! networks, codec names), so a bad one is refused while parsing, with its
//! line; `validate` keeps the rules between keys. Either way the error
//! names the key, the value and what was expected.
//!
//! A leaf: nothing of the gateway is imported here; the value types it
//! shares come from the protocol crate.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use rtcgw_proto::sdp::legacy::CodecName;
use rtcgw_proto::sip::ua::IpNet;
use serde::{Deserialize, Serialize};

/// The embedded default configuration, documented.
pub const DEFAULT_TOML: &str = include_str!("default_config.toml");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub log: LogConfig,
    pub http: HttpConfig,
    pub media: MediaConfig,
    pub webrtc: WebrtcConfig,
    pub sip: SipConfig,
    pub ng: NgConfig,
    pub legacy: LegacyConfig,
    pub route: RouteConfig,
    pub bridge: BridgeConfig,
    pub demo: DemoConfig,
    pub stats: StatsConfig,
}

/// Where the stats export goes: "" (nowhere), "stdout" (or "-"; the log
/// then goes to stderr) or a file path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ExportTarget {
    #[default]
    None,
    Stdout,
    File(PathBuf),
}

impl From<String> for ExportTarget {
    fn from(s: String) -> Self {
        match s.as_str() {
            "" => Self::None,
            "stdout" | "-" => Self::Stdout,
            _ => Self::File(PathBuf::from(s)),
        }
    }
}

impl From<ExportTarget> for String {
    fn from(t: ExportTarget) -> Self {
        match t {
            ExportTarget::None => String::new(),
            ExportTarget::Stdout => "stdout".into(),
            ExportTarget::File(p) => p.display().to_string(),
        }
    }
}

/// Call statistics: polling, the JSON Lines export (docs/stats.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// Every call's stats are read this often (0: only at the end of calls).
    pub interval_ms: u64,
    pub export: ExportTarget,
    /// Rotate the export file past this size (0: never).
    pub rotate_bytes: u64,
    /// Rotated files kept (path.1 .. path.N).
    pub rotate_keep: u32,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            interval_ms: 5000,
            export: ExportTarget::None,
            rotate_bytes: 0,
            rotate_keep: 5,
        }
    }
}

/// Bridged calls' audio processing on the legacy-to-WebRTC direction: one
/// libwebrtc AudioProcessing per call, fed with both directions (what goes
/// to the legacy leg is the echo reference). All off by default: a legacy
/// phone usually cancels its own echo, and processing costs CPU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// AEC3 echo cancellation.
    pub echo_cancellation: bool,
    /// Noise suppression (moderate).
    pub noise_suppression: bool,
    /// AGC2 adaptive digital gain.
    pub automatic_gain_control: bool,
}

/// What SIP calls reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteMode {
    /// The demo target (play + record).
    Demo,
    /// An outbound leg of the other kind, INVITEd to `route.target`.
    Bridge,
}

/// What the outbound leg's From says about the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallerIdMode {
    /// The caller's user part and display name.
    Pass,
    /// `route.from_user`, no display name.
    Fixed,
}

/// Where calls go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    pub mode: RouteMode,
    /// Request-URI of the outbound legacy leg; `{user}` is the called user.
    pub target: String,
    pub caller_id: CallerIdMode,
    /// The From user when `caller_id` is "fixed", or when the caller's
    /// From has no user part.
    pub from_user: String,
    /// Pass the caller's P-Asserted-Identity (RFC 3325) and Privacy on to
    /// the outbound leg; believed only from `sip.trusted_sources`.
    pub pass_asserted_identity: bool,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            mode: RouteMode::Demo,
            target: "sip:{user}@127.0.0.1:5080".into(),
            caller_id: CallerIdMode::Pass,
            from_user: "rtcgw".into(),
            pass_asserted_identity: true,
        }
    }
}

/// The plain RTP leg (separate from the WebRTC leg's settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LegacyConfig {
    /// Addresses of the plain RTP leg (`LOCAL` or `LOCAL!ANNOUNCED`), when
    /// not `media.addresses` (e.g. a private interface towards the PBXs,
    /// a public one towards browsers). A leg takes the first of its peer's
    /// address family.
    pub addresses: Vec<MediaAddress>,
    /// Codecs we take, in the names SDP uses; the offerer's order wins.
    pub codecs: Vec<CodecName>,
    /// Packet time when the offer gives none.
    pub ptime_ms: u32,
    /// RTP/RTCP port pairs come from this range (even RTP ports).
    pub port_min: u16,
    pub port_max: u16,
    /// Accept media only from the SDP's address (no latching).
    pub strict_source: bool,
    /// Accept RTP/SAVP offers with SDES keys (RFC 4568).
    pub sdes_srtp: bool,
    /// No RTP for this long ends the call (0: never).
    pub media_timeout_s: u64,
    pub rtcp_interval_s: u64,
    /// NetEQ for the legacy leg.
    pub jitter_buffer_max_packets: u32,
    pub jitter_buffer_fast_accelerate: bool,
    pub jitter_buffer_min_delay_ms: u32,
}

impl Default for LegacyConfig {
    fn default() -> Self {
        Self {
            addresses: Vec::new(),
            codecs: CodecName::ALL.to_vec(),
            ptime_ms: 20,
            port_min: 30000,
            port_max: 39999,
            strict_source: false,
            sdes_srtp: true,
            media_timeout_s: 30,
            rtcp_interval_s: 5,
            jitter_buffer_max_packets: 50,
            jitter_buffer_fast_accelerate: false,
            jitter_buffer_min_delay_ms: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Answer SIP at all.
    pub enabled: bool,
    /// UDP and TCP are both bound to this address.
    pub listen: SocketAddr,
    /// Further addresses SIP listens on (UDP and TCP), e.g. an IPv6 one
    /// beside an IPv4 `listen`: a peer is answered, and told Via and
    /// Contact, in its own family.
    pub also_listen: Vec<SocketAddr>,
    /// Source networks allowed to send requests (the softswitch); others
    /// get 403.
    pub allowed_sources: Vec<IpNet>,
    /// Source networks whose P-Asserted-Identity is believed (RFC 3325);
    /// from others it is dropped.
    pub trusted_sources: Vec<IpNet>,
    /// Where requests we originate go (the softswitch), with the
    /// transport when it is a URI; unset: to the target URI's address, and
    /// in a dialog by its route set or back to the peer it came from.
    pub next_hop: Option<NextHop>,
    /// The address Via and Contact say instead of `listen`'s (a 1:1 NAT in
    /// front); the port stays `listen`'s.
    pub announce: Option<IpAddr>,
    /// RFC 3261 timers in ms.
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
    /// Sent as User-Agent / Server.
    pub user_agent: String,
    /// TCP and TLS connections accepted at once; more are closed.
    pub max_connections: usize,
    /// A TCP or TLS connection with no message for this long is closed,
    /// seconds.
    pub idle_timeout_s: u64,
    /// A message begun on TCP or TLS must be whole within this, seconds.
    pub message_timeout_s: u64,
    /// SIP over TLS (RFC 3261 section 26) on these addresses; empty: off.
    pub tls_listen: Vec<SocketAddr>,
    /// Our certificate chain and its private key (PEM), presented to TLS
    /// clients and, when a TLS server asks, to it. Reloaded on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that servers we connect to over TLS must be
    /// signed by; unset: the system's roots. Reloaded on SIGHUP.
    pub tls_ca: Option<PathBuf>,
    /// When set, TLS clients must present a certificate signed by one of
    /// these CAs (mutual TLS). Reloaded on SIGHUP.
    pub tls_client_ca: Option<PathBuf>,
    /// The name the certificate of `next_hop` must carry when we connect
    /// to it over TLS; unset: its IP address.
    pub tls_server_name: Option<String>,
    /// RFC 4028 session timers: refresh (UPDATE) or police dialogs so that
    /// a call whose peer vanished without a BYE does not live forever.
    pub session_timers: bool,
    /// Session-Expires we ask for and the largest we accept, seconds.
    pub session_expires_s: u32,
    /// Min-SE: the shortest interval we accept (RFC 4028 floor: 90).
    pub min_se_s: u32,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            also_listen: Vec::new(),
            allowed_sources: loopback(),
            trusted_sources: loopback(),
            next_hop: None,
            announce: None,
            max_connections: 1024,
            idle_timeout_s: 600,
            message_timeout_s: 10,
            tls_listen: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            tls_client_ca: None,
            tls_server_name: None,
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            user_agent: concat!("rtcgw/", env!("CARGO_PKG_VERSION")).into(),
            session_timers: false,
            session_expires_s: 1800,
            min_se_s: 90,
        }
    }
}

/// rtpengine's ng control protocol (what Kamailio's `rtpengine` module
/// speaks), so that Kamailio can use rtcgw as its media relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NgConfig {
    pub enabled: bool,
    /// UDP; Kamailio's `rtpengine_sock` points here.
    pub listen: SocketAddr,
    /// Source networks allowed to send ng commands; others get no reply.
    pub allowed_sources: Vec<IpNet>,
}

impl Default for NgConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 2223)),
            allowed_sources: loopback(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter, e.g. "info" or "rtcgw=debug,webrtc=info". RUST_LOG wins.
    pub filter: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Largest SDP body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Bearer tokens (RFC 6750) the API takes; empty: no authentication.
    pub tokens: Vec<String>,
    /// Listen beyond loopback without tokens: only when something in front
    /// (a reverse proxy) authenticates.
    pub allow_unauthenticated: bool,
    /// Origins (`https://app.example.com`, or `*`) whose pages may call the
    /// API (CORS).
    pub cors_origins: Vec<String>,
    /// ICE servers offered to WHIP clients in `Link` headers (RFC 9725
    /// section 4.6).
    pub ice_servers: Vec<IceServer>,
    /// How long the callee of a WHIP-to-SIP call may ring before it is
    /// given up (CANCEL; 504 to the client).
    pub ring_timeout_s: u64,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A request head must arrive within this (also how long an idle
    /// keep-alive connection is kept), seconds.
    pub header_timeout_s: u64,
    /// A request body must arrive within this, seconds (408 otherwise).
    pub body_timeout_s: u64,
    /// Largest request head (request line and headers), bytes (431).
    pub max_header_bytes: usize,
}

/// One STUN or TURN server for WHIP clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, `turns:...`.
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub credential: Option<String>,
}

/// A media address: bound as `local`, and written into SDP and ICE
/// candidates as `announced` when one is given (a 1:1 NAT in front, e.g.
/// a cloud VM's private and public address): `"10.0.0.5!203.0.113.5"`,
/// or `"10.0.0.5"` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaAddress {
    pub local: IpAddr,
    pub announced: Option<IpAddr>,
}

impl MediaAddress {
    /// What peers are told.
    pub fn public(&self) -> IpAddr {
        self.announced.unwrap_or(self.local)
    }
}

impl From<IpAddr> for MediaAddress {
    fn from(local: IpAddr) -> Self {
        Self {
            local,
            announced: None,
        }
    }
}

impl std::str::FromStr for MediaAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ip = |t: &str| {
            t.trim()
                .parse::<IpAddr>()
                .map_err(|_| format!("{t:?} is not an IP address"))
        };
        Ok(match s.split_once('!') {
            Some((local, announced)) => Self {
                local: ip(local)?,
                announced: Some(ip(announced)?),
            },
            None => ip(s)?.into(),
        })
    }
}

impl std::fmt::Display for MediaAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.announced {
            Some(a) => write!(f, "{}!{a}", self.local),
            None => write!(f, "{}", self.local),
        }
    }
}

/// Serde as the type's text form (`Display` / `FromStr`).
macro_rules! serde_as_text {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_as_text!(MediaAddress);

/// `sip.next_hop`: `"ADDR:PORT"` (the transport the request's URI asks
/// for, UDP if it does not) or a SIP URI saying it:
/// `"sip:10.0.0.2:5060;transport=tcp"`, `"sips:10.0.0.2:5061"` (TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop(pub rtcgw_proto::sip::ua::NextHop);

impl std::str::FromStr for NextHop {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        use rtcgw_proto::sip::ua::{NextHop as Hop, uri_target};
        if let Ok(addr) = s.trim().parse::<SocketAddr>() {
            return Ok(Self(Hop {
                addr,
                transport: None,
            }));
        }
        match uri_target(s.trim()) {
            Some((addr, transport)) => Ok(Self(Hop { addr, transport })),
            None => Err(format!(
                "{s:?} is neither ADDR:PORT nor a sip:/sips: URI with an IP address"
            )),
        }
    }
}

impl std::fmt::Display for NextHop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use rtcgw_proto::sip::tsx::Transport;
        let h = &self.0;
        let host = match h.addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        match h.transport {
            None => write!(f, "{}", h.addr),
            Some(Transport::Tls) => write!(f, "sips:{host}:{}", h.addr.port()),
            Some(t) => write!(
                f,
                "sip:{host}:{};transport={}",
                h.addr.port(),
                t.as_str().to_ascii_lowercase()
            ),
        }
    }
}

serde_as_text!(NextHop);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Addresses the WebRTC leg's ICE host candidates are on, `LOCAL` or
    /// `LOCAL!ANNOUNCED`; the legacy leg's too unless `legacy.addresses`.
    pub addresses: Vec<MediaAddress>,
    pub port_min: u16,
    pub port_max: u16,
    /// Calls beyond this are refused with 503.
    pub max_calls: usize,
    /// Calls being set up at once (offer in, answer not yet out) beyond
    /// which new ones are refused with 503: a burst is refused cheaply
    /// instead of slowing every setup down.
    pub max_setting_up: usize,
    /// Admission by measured headroom: new calls get 503 (and OPTIONS
    /// too) while, over the last 2 s, this share (%) of 10 ms media frames
    /// was late; 0: off.
    pub admit_max_late_pct: f64,
    /// ...or the process used this share (%) of the cores it may run on;
    /// 0: off.
    pub admit_max_cpu_pct: f64,
    /// On SIGTERM: how long calls in progress may go on before they are
    /// ended with BYE (no new calls meanwhile).
    pub drain_timeout_s: u64,
    /// On SIGTERM with no calls left: when a dispatcher has been probing
    /// with OPTIONS, stay (answering 503) until it has seen a 503, at most
    /// this long.
    pub drain_linger_s: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebrtcConfig {
    /// NetEQ capacity in packets (libwebrtc enforces at least 20).
    pub jitter_buffer_max_packets: u32,
    /// Let NetEQ accelerate harder to drain a grown buffer.
    pub jitter_buffer_fast_accelerate: bool,
    /// NetEQ's minimum target delay in ms.
    pub jitter_buffer_min_delay_ms: u32,
    /// Non-trickle: how long to wait for ICE gathering before answering.
    pub ice_gathering_timeout_ms: u32,
    /// Threads that run libwebrtc's per-call task queues (fixed pool); 0 uses
    /// libwebrtc's stock factory, one thread per queue (for comparison only).
    pub task_queue_threads: u32,
    /// libwebrtc's own log lines forwarded at or above this level (to target
    /// "webrtc"): verbose, info, warning, error, none.
    pub log_level: WebrtcLogLevel,
    pub opus: OpusSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// WAV file played (looping) to every demo call; empty: a tone.
    pub play_file: Option<PathBuf>,
    /// Frequency of the built-in tone when no file is configured.
    pub tone_hz: f32,
    /// Directory where each call's received audio is recorded as WAV.
    pub record_dir: PathBuf,
    /// A recording stops after this many seconds.
    pub record_max_s: u64,
    /// No recording starts, and one in progress stops, when the file system
    /// of `record_dir` has less free space than this, MiB.
    pub record_min_free_mb: u64,
}

fn loopback() -> Vec<IpNet> {
    vec![
        "127.0.0.0/8".parse().expect("literal"),
        "::1/128".parse().expect("literal"),
    ]
}

/// libwebrtc's own log lines forwarded at or above this level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebrtcLogLevel {
    Verbose,
    Info,
    Warning,
    Error,
    None,
}

/// Opus encoder settings applied on top of what SDP negotiated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpusSettings {
    /// Target bitrate in bit/s; 0 keeps libwebrtc's choice.
    pub bitrate_bps: u32,
    /// Encoder complexity 0..=10; omitted keeps libwebrtc's default.
    pub complexity: Option<u8>,
    /// In-band forward error correction (RFC 6716 LBRR).
    pub fec: bool,
    /// Discontinuous transmission during silence.
    pub dtx: bool,
    /// Frame size in ms (10, 20, 40, 60); 0 keeps what SDP negotiated.
    pub ptime_ms: u32,
    /// Code no more audio bandwidth than the sound sent has (narrowband
    /// on a G.711 call, wideband on G.722): media/band.rs.
    pub match_bandwidth: bool,
}

impl Default for OpusSettings {
    fn default() -> Self {
        Self {
            bitrate_bps: 0,
            complexity: None,
            fec: true,
            dtx: false,
            ptime_ms: 0,
            match_bandwidth: true,
        }
    }
}

// Defaults in code; a unit test keeps DEFAULT_TOML (the documented file)
// equal to them.
impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".into(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 65536,
            tokens: Vec::new(),
            allow_unauthenticated: false,
            cors_origins: Vec::new(),
            ice_servers: Vec::new(),
            ring_timeout_s: 60,
            max_connections: 1024,
            header_timeout_s: 10,
            body_timeout_s: 10,
            max_header_bytes: 16 * 1024,
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            addresses: vec![IpAddr::from([127, 0, 0, 1]).into()],
            port_min: 20000,
            port_max: 29999,
            max_calls: 500,
            max_setting_up: 64,
            admit_max_late_pct: 0.5,
            admit_max_cpu_pct: 90.0,
            drain_linger_s: 15,
            drain_timeout_s: 30,
        }
    }
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        Self {
            jitter_buffer_max_packets: 200,
            jitter_buffer_fast_accelerate: false,
            jitter_buffer_min_delay_ms: 0,
            ice_gathering_timeout_ms: 2000,
            task_queue_threads: 2,
            log_level: WebrtcLogLevel::Warning,
            opus: OpusSettings::default(),
        }
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            play_file: None,
            tone_hz: 440.0,
            record_dir: PathBuf::from("recordings"),
            record_max_s: 600,
            record_min_free_mb: 256,
        }
    }
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(#[from] toml::de::Error),
    #[error("{key} = {value}: expected {expected}")]
    Invalid {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Something the startup self-check found ([`Config::self_check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// It cannot work (rtcgw refuses to start) rather than it may not.
    pub fatal: bool,
    pub text: String,
}

impl Config {
    /// The plain RTP leg's address for a peer of this family (`Some(true)`:
    /// IPv6), or the first when the peer is not known yet.
    pub fn legacy_address(&self, ipv6: Option<bool>) -> MediaAddress {
        let list = if self.legacy.addresses.is_empty() {
            &self.media.addresses
        } else {
            &self.legacy.addresses
        };
        ipv6.and_then(|v6| list.iter().find(|a| a.public().is_ipv6() == v6))
            .or(list.first())
            .copied()
            .unwrap_or_else(|| IpAddr::from([127, 0, 0, 1]).into())
    }

    /// What peers are told for a socket bound on `local`.
    pub fn public_of(&self, local: IpAddr) -> IpAddr {
        self.media
            .addresses
            .iter()
            .chain(&self.legacy.addresses)
            .find(|a| a.local == local)
            .map_or(local, MediaAddress::public)
    }

    /// Configurations that cannot work, or are likely not to, in plain
    /// words (logged at start; fatal ones stop it). What needs the host
    /// (is an address ours?) is checked where the sockets are bound.
    pub fn self_check(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut say = |fatal, text: String| out.push(Finding { fatal, text });
        let sip_ip = self.sip.announce.unwrap_or(self.sip.listen.ip());
        let media = self.media.addresses.iter().chain(&self.legacy.addresses);
        if self.sip.enabled && !sip_ip.is_loopback() {
            for a in media.clone().filter(|a| a.public().is_loopback()) {
                say(
                    true,
                    format!(
                        "media address {a} announces loopback while SIP is on {sip_ip}: peers \
                         elsewhere would send their audio to themselves (one-way or no audio). \
                         Put the address peers reach in media.addresses (LOCAL!PUBLIC behind NAT)"
                    ),
                );
            }
        }
        if self.sip.enabled
            && sip_ip.is_loopback()
            && let Some(a) = media.clone().find(|a| !a.public().is_loopback())
        {
            say(
                false,
                format!(
                    "SIP is on loopback ({sip_ip}) but media on {a}: only local peers can \
                     reach the SIP side"
                ),
            );
        }
        let webrtc_ports = usize::from(self.media.port_max - self.media.port_min) + 1;
        if webrtc_ports < self.media.max_calls {
            say(
                false,
                format!(
                    "media.port_min..port_max has {webrtc_ports} ports for media.max_calls = {}: \
                     every WebRTC leg needs one per address; calls beyond that fail",
                    self.media.max_calls
                ),
            );
        }
        let legacy_pairs = usize::from(self.legacy.port_max - self.legacy.port_min).div_ceil(2);
        if legacy_pairs < self.media.max_calls {
            say(
                false,
                format!(
                    "legacy.port_min..port_max has {legacy_pairs} RTP/RTCP pairs for \
                     media.max_calls = {}: plain RTP legs beyond that get 503",
                    self.media.max_calls
                ),
            );
        }
        out
    }

    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        Self::for_run(Some(path), None)
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let c: Config = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    /// The configuration a run uses: the file (or the embedded default)
    /// plus the bearer tokens in `env_tokens` (`RTCGW_HTTP_TOKENS`,
    /// comma-separated: secrets from a container's environment), checked
    /// together.
    pub fn for_run(
        path: Option<&std::path::Path>,
        env_tokens: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?,
            None => DEFAULT_TOML.to_string(),
        };
        let mut c: Config = toml::from_str(&text)?;
        if let Some(tokens) = env_tokens {
            let tokens = tokens.split(',').map(str::trim).filter(|t| !t.is_empty());
            c.http.tokens.extend(tokens.map(String::from));
        }
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &'static str, value: impl ToString, expected: &'static str) -> ConfigError {
            ConfigError::Invalid {
                key,
                value: value.to_string(),
                expected,
            }
        }
        let h = &self.http;
        if !h.listen.ip().is_loopback() && h.tokens.is_empty() && !h.allow_unauthenticated {
            return Err(bad(
                "http.listen",
                h.listen,
                "a loopback address while http.tokens is empty: an open call API \
                 beyond loopback lets anyone place calls (toll fraud). Set http.tokens, \
                 or http.allow_unauthenticated = true when a proxy in front authenticates",
            ));
        }
        if let Some(t) = h
            .tokens
            .iter()
            .find(|t| t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) || t.contains(','))
        {
            return Err(bad(
                "http.tokens",
                format!("{:.4}... ({} bytes)", t, t.len()),
                "tokens of at least 16 printable characters, no spaces or commas",
            ));
        }
        let origin_ok = |o: &str| {
            o == "*"
                || ((o.starts_with("http://") || o.starts_with("https://"))
                    && !o.ends_with('/')
                    && !o.contains(|c: char| c.is_whitespace() || c == ','))
        };
        if let Some(o) = h.cors_origins.iter().find(|o| !origin_ok(o)) {
            return Err(bad(
                "http.cors_origins",
                o,
                "\"*\" or origins such as \"https://app.example.com\" (scheme, host, port; no path)",
            ));
        }
        if let Some(u) = h.ice_servers.iter().flat_map(|s| &s.urls).find(|u| {
            !["stun:", "stuns:", "turn:", "turns:"]
                .iter()
                .any(|p| u.starts_with(p))
                || u.contains(['<', '>', '"', ',', ' '])
        }) {
            return Err(bad(
                "http.ice_servers.urls",
                u,
                "stun:, stuns:, turn: or turns: URLs",
            ));
        }
        if h.cors_origins.iter().any(|o| o == "*") && h.tokens.is_empty() {
            return Err(bad(
                "http.cors_origins",
                "[\"*\"]",
                "named origins while http.tokens is empty: with \"*\" any web page a browser on \
                 this host opens could place calls through the API",
            ));
        }
        // Replies and Via/Contact are chosen by family: one address each.
        let also = &self.sip.also_listen;
        if also.len() > 1
            || also
                .iter()
                .any(|a| a.is_ipv6() == self.sip.listen.is_ipv6())
        {
            return Err(bad(
                "sip.also_listen",
                format!("{:?}", self.sip.also_listen),
                "at most one address, of the other family than sip.listen (one IPv4, one IPv6)",
            ));
        }
        let s = &self.sip;
        if !s.tls_listen.is_empty() && (s.tls_cert.is_none() || s.tls_key.is_none()) {
            return Err(bad(
                "sip.tls_listen",
                format!("{:?}", s.tls_listen),
                "sip.tls_cert and sip.tls_key (PEM files) with it",
            ));
        }
        if s.tls_listen.is_empty() && s.tls_client_ca.is_some() {
            return Err(bad(
                "sip.tls_client_ca",
                "set",
                "sip.tls_listen with it (it checks the clients of our TLS listener)",
            ));
        }
        if s.max_connections == 0 {
            return Err(bad("sip.max_connections", 0, "at least 1"));
        }
        if !(1..=86_400).contains(&s.idle_timeout_s) {
            return Err(bad("sip.idle_timeout_s", s.idle_timeout_s, "1..=86400"));
        }
        if !(1..=600).contains(&s.message_timeout_s) {
            return Err(bad("sip.message_timeout_s", s.message_timeout_s, "1..=600"));
        }
        let tls_target = |u: &str| {
            let u = u.to_ascii_lowercase();
            u.starts_with("sips:") || u.contains(";transport=tls")
        };
        let tls_hop = s
            .next_hop
            .is_some_and(|h| h.0.transport == Some(rtcgw_proto::sip::tsx::Transport::Tls));
        if s.tls_listen.is_empty() && (tls_hop || tls_target(&self.route.target)) {
            return Err(bad(
                "sip.tls_listen",
                "[]",
                "a TLS listener when sip.next_hop or route.target is TLS (sips:, transport=tls): \
                 Via and Contact must name where we take TLS",
            ));
        }
        if s.tls_server_name.is_some() && s.next_hop.is_none() {
            return Err(bad(
                "sip.tls_server_name",
                "set",
                "sip.next_hop with it (it is the name next_hop's certificate carries)",
            ));
        }
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            return Err(bad(
                "sip.tls_cert",
                "one of tls_cert and tls_key",
                "both, or neither",
            ));
        }
        let v6 = s.tls_listen.iter().filter(|a| a.is_ipv6()).count();
        if v6 > 1 || s.tls_listen.len() - v6 > 1 {
            return Err(bad(
                "sip.tls_listen",
                format!("{:?}", s.tls_listen),
                "at most one address per family (one IPv4, one IPv6)",
            ));
        }
        if h.max_connections == 0 {
            return Err(bad("http.max_connections", 0, "at least 1"));
        }
        if !(1..=600).contains(&h.header_timeout_s) {
            return Err(bad("http.header_timeout_s", h.header_timeout_s, "1..=600"));
        }
        if !(1..=600).contains(&h.body_timeout_s) {
            return Err(bad("http.body_timeout_s", h.body_timeout_s, "1..=600"));
        }
        if !(1024..=1024 * 1024).contains(&h.max_header_bytes) {
            return Err(bad(
                "http.max_header_bytes",
                h.max_header_bytes,
                "1024..=1048576",
            ));
        }
        if !(1..=86_400).contains(&self.demo.record_max_s) {
            return Err(bad(
                "demo.record_max_s",
                self.demo.record_max_s,
                "1..=86400",
            ));
        }
        if !(1..=3600).contains(&h.ring_timeout_s) {
            return Err(bad("http.ring_timeout_s", h.ring_timeout_s, "1..=3600"));
        }
        let m = &self.media;
        if m.addresses.is_empty() {
            return Err(bad("media.addresses", "[]", "at least one IP address"));
        }
        if let Some(a) =
            m.addresses.iter().chain(&self.legacy.addresses).find(|a| {
                a.local.is_unspecified() || a.announced.is_some_and(|p| p.is_unspecified())
            })
        {
            return Err(bad(
                "media.addresses",
                a,
                "a concrete address, not a wildcard",
            ));
        }
        if m.port_min == 0 || m.port_min > m.port_max {
            return Err(bad(
                "media.port_min",
                format!("{}..{}", m.port_min, m.port_max),
                "1 <= port_min <= port_max",
            ));
        }
        if m.max_calls == 0 {
            return Err(bad("media.max_calls", 0, "at least 1"));
        }
        if m.max_setting_up == 0 {
            return Err(bad("media.max_setting_up", 0, "at least 1"));
        }
        for (key, v) in [
            ("media.admit_max_late_pct", m.admit_max_late_pct),
            ("media.admit_max_cpu_pct", m.admit_max_cpu_pct),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return Err(bad(key, v, "a percentage, 0 (off) to 100"));
            }
        }
        let w = &self.webrtc;
        if !(20..=10_000).contains(&w.jitter_buffer_max_packets) {
            return Err(bad(
                "webrtc.jitter_buffer_max_packets",
                w.jitter_buffer_max_packets,
                "20..=10000",
            ));
        }
        if w.jitter_buffer_min_delay_ms > 10_000 {
            return Err(bad(
                "webrtc.jitter_buffer_min_delay_ms",
                w.jitter_buffer_min_delay_ms,
                "0..=10000",
            ));
        }
        if !(100..=30_000).contains(&w.ice_gathering_timeout_ms) {
            return Err(bad(
                "webrtc.ice_gathering_timeout_ms",
                w.ice_gathering_timeout_ms,
                "100..=30000",
            ));
        }
        if w.task_queue_threads > 64 {
            return Err(bad(
                "webrtc.task_queue_threads",
                w.task_queue_threads,
                "0 (libwebrtc's thread per queue) or 1..=64",
            ));
        }
        let o = &w.opus;
        if o.bitrate_bps != 0 && !(6_000..=510_000).contains(&o.bitrate_bps) {
            return Err(bad(
                "webrtc.opus.bitrate_bps",
                o.bitrate_bps,
                "0 (auto) or 6000..=510000",
            ));
        }
        if o.complexity.is_some_and(|c| c > 10) {
            return Err(bad(
                "webrtc.opus.complexity",
                o.complexity.unwrap_or(0),
                "0..=10",
            ));
        }
        if ![0, 10, 20, 40, 60, 120].contains(&o.ptime_ms) {
            return Err(bad(
                "webrtc.opus.ptime_ms",
                o.ptime_ms,
                "0 (negotiated), 10, 20, 40, 60 or 120",
            ));
        }
        let sip = &self.sip;
        if sip.t1_ms == 0 || sip.t2_ms < sip.t1_ms || sip.t4_ms == 0 {
            return Err(bad(
                "sip.t1_ms",
                format!("t1={} t2={} t4={}", sip.t1_ms, sip.t2_ms, sip.t4_ms),
                "0 < t1_ms <= t2_ms and t4_ms > 0",
            ));
        }
        if sip.min_se_s < 90 || sip.session_expires_s < sip.min_se_s {
            return Err(bad(
                "sip.min_se_s",
                format!(
                    "min_se_s={} session_expires_s={}",
                    sip.min_se_s, sip.session_expires_s
                ),
                "90 <= min_se_s <= session_expires_s (RFC 4028 section 4)",
            ));
        }
        let l = &self.legacy;
        let repeated = l
            .codecs
            .iter()
            .enumerate()
            .any(|(i, c)| l.codecs[..i].contains(c));
        if l.codecs.is_empty() || repeated {
            let names: Vec<String> = l.codecs.iter().map(|c| c.to_string()).collect();
            return Err(bad(
                "legacy.codecs",
                format!("{names:?}"),
                "a non-empty list of PCMU, PCMA, G722, opus, each once",
            ));
        }
        if ![10, 20, 30, 40, 60].contains(&l.ptime_ms) {
            return Err(bad("legacy.ptime_ms", l.ptime_ms, "10, 20, 30, 40 or 60"));
        }
        if l.port_min < 1024 || l.port_min >= l.port_max {
            return Err(bad(
                "legacy.port_min",
                format!("{}..{}", l.port_min, l.port_max),
                "1024 <= port_min < port_max",
            ));
        }
        if !(20..=10_000).contains(&l.jitter_buffer_max_packets) {
            return Err(bad(
                "legacy.jitter_buffer_max_packets",
                l.jitter_buffer_max_packets,
                "20..=10000",
            ));
        }
        if l.rtcp_interval_s == 0 {
            return Err(bad("legacy.rtcp_interval_s", 0, "at least 1"));
        }
        if !self.route.target.starts_with("sip:") {
            return Err(bad(
                "route.target",
                &self.route.target,
                "a sip: URI such as sip:{user}@127.0.0.1:5080",
            ));
        }
        let st = &self.stats;
        if st.interval_ms != 0 && !(100..=3_600_000).contains(&st.interval_ms) {
            return Err(bad(
                "stats.interval_ms",
                st.interval_ms,
                "0 (end-of-call records only) or 100..=3600000",
            ));
        }
        if !(1..=1000).contains(&st.rotate_keep) {
            return Err(bad("stats.rotate_keep", st.rotate_keep, "1..=1000"));
        }
        if st.rotate_bytes != 0 && st.rotate_bytes < 4096 {
            return Err(bad(
                "stats.rotate_bytes",
                st.rotate_bytes,
                "0 (never) or at least 4096",
            ));
        }
        let user = &self.route.from_user;
        if user.is_empty()
            || user
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "<>\"@:".contains(c))
        {
            return Err(bad(
                "route.from_user",
                format!("{user:?}"),
                "a SIP user part (no spaces, quotes, <, >, @ or :)",
            ));
        }
        if !(20.0..=20_000.0).contains(&self.demo.tone_hz) {
            return Err(bad("demo.tone_hz", self.demo.tone_hz, "20..=20000"));
        }
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_round_trips() {
        let c = Config::default();
        assert_eq!(
            Config::parse(DEFAULT_TOML).unwrap(),
            c,
            "DEFAULT_TOML drifted from Default"
        );
        c.validate().unwrap();
        assert_eq!(Config::parse(&c.to_toml()).unwrap(), c);
        assert_eq!(c.http.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            c.media.addresses,
            vec!["127.0.0.1".parse::<MediaAddress>().unwrap()]
        );
    }

    #[test]
    fn an_open_call_api_beyond_loopback_needs_tokens_or_an_explicit_yes() {
        let open = "[http]\nlisten = \"0.0.0.0:8080\"\n";
        let e = Config::parse(open).unwrap_err().to_string();
        assert!(e.contains("http.listen") && e.contains("toll fraud"), "{e}");
        let token = "tokens = [\"0123456789abcdef0123\"]\n";
        assert!(Config::parse(&format!("{open}{token}")).is_ok());
        assert!(Config::parse(&format!("{open}allow_unauthenticated = true\n")).is_ok());
        let short = Config::parse("[http]\ntokens = [\"secret\"]\n").unwrap_err();
        assert!(short.to_string().contains("http.tokens"), "{short}");
        let origin = Config::parse("[http]\ncors_origins = [\"https://a.example/\"]\n");
        assert!(origin.is_err());
        let ice = Config::parse("[http]\nice_servers = [{ urls = [\"http://x\"] }]\n");
        assert!(ice.is_err());
        assert!(Config::parse("[http]\ncors_origins = [\"*\"]\n").is_err());
        let two_v4 = Config::parse("[sip]\nalso_listen = [\"127.0.0.2:5060\"]\n");
        assert!(two_v4.is_err());
        assert!(Config::parse("[sip]\nalso_listen = [\"[::1]:5060\"]\n").is_ok());
    }

    #[test]
    fn addresses_behind_nat_and_the_self_check() {
        let c = Config::parse(
            "[media]\naddresses = [\"10.0.0.5!203.0.113.5\", \"fd00::5\"]\n\
             [legacy]\naddresses = [\"192.168.1.5\", \"fd00::6!2001:db8::6\"]\n",
        )
        .unwrap();
        let m = c.media.addresses[0];
        assert_eq!(m.to_string(), "10.0.0.5!203.0.113.5");
        assert_eq!(m.public(), "203.0.113.5".parse::<IpAddr>().unwrap());
        assert_eq!(
            c.legacy_address(Some(true)).to_string(),
            "fd00::6!2001:db8::6"
        );
        assert_eq!(c.legacy_address(Some(false)).to_string(), "192.168.1.5");
        assert_eq!(c.legacy_address(None).to_string(), "192.168.1.5");
        assert_eq!(
            c.public_of("fd00::6".parse().unwrap()),
            "2001:db8::6".parse::<IpAddr>().unwrap()
        );
        assert_eq!(Config::parse(&c.to_toml()).unwrap(), c);
        assert!(Config::parse("[media]\naddresses = [\"10.0.0.5!nat\"]\n").is_err());
        assert!(Config::parse("[media]\naddresses = [\"0.0.0.0\"]\n").is_err());
        // Loopback media announced while SIP listens publicly cannot work.
        let c = Config::parse("[sip]\nlisten = \"192.0.2.1:5060\"\n").unwrap();
        let f = c.self_check();
        assert!(
            f.iter().any(|f| f.fatal && f.text.contains("loopback")),
            "{f:?}"
        );
        // A port range too small for max_calls is said.
        let c = Config::parse("[legacy]\nport_min = 30000\nport_max = 30099\n").unwrap();
        let f = c.self_check();
        assert!(
            f.iter()
                .any(|f| !f.fatal && f.text.contains("50 RTP/RTCP pairs")),
            "{f:?}"
        );
        assert!(Config::default().self_check().is_empty());
    }

    #[test]
    fn readme_shows_the_embedded_default() {
        assert!(
            include_str!("../README.md").contains(DEFAULT_TOML),
            "README's config block drifted"
        );
    }

    #[test]
    fn next_hop_forms() {
        use rtcgw_proto::sip::tsx::Transport;
        let hop = |v: &str| v.parse::<NextHop>();
        assert!(Config::parse("[sip]\nnext_hop = \"127.0.0.1:5080\"\n").is_ok());
        let h = hop("127.0.0.1:5080").unwrap();
        assert_eq!((h.0.addr.port(), h.0.transport), (5080, None));
        let h = hop("sips:127.0.0.1").unwrap();
        assert_eq!(
            (h.0.addr.port(), h.0.transport),
            (5061, Some(Transport::Tls))
        );
        assert_eq!(h.to_string(), "sips:127.0.0.1:5061");
        let h = hop("sip:[::1]:5070;transport=tcp").unwrap();
        assert_eq!(h.0.transport, Some(Transport::Tcp));
        assert_eq!(h.to_string(), "sip:[::1]:5070;transport=tcp");
        let e = hop("sips:sbc.example.com").unwrap_err().to_string();
        assert!(e.contains("neither ADDR:PORT nor a sip:/sips: URI"), "{e}");
    }

    #[test]
    fn tls_settings_are_checked_together() {
        let e = |t: &str| {
            Config::parse(&format!("[sip]\n{t}"))
                .unwrap_err()
                .to_string()
        };
        assert!(e("tls_listen = [\"127.0.0.1:5061\"]\n").contains("sip.tls_cert and sip.tls_key"));
        assert!(e("tls_client_ca = \"/ca.pem\"\n").contains("sip.tls_listen with it"));
        assert!(e("tls_cert = \"/c.pem\"\n").contains("both, or neither"));
        assert!(e("tls_server_name = \"sbc\"\n").contains("sip.next_hop with it"));
        assert!(
            e("next_hop = \"sips:127.0.0.1:5061\"\n").contains("a TLS listener when sip.next_hop")
        );
        let two = "tls_listen = [\"127.0.0.1:5061\", \"127.0.0.2:5061\"]\ntls_cert = \"/c\"\ntls_key = \"/k\"\n";
        assert!(e(two).contains("at most one address per family"));
    }

    #[test]
    fn partial_section_keeps_other_defaults() {
        let c = Config::parse("[webrtc]\njitter_buffer_max_packets = 77\n").unwrap();
        assert_eq!(c.webrtc.jitter_buffer_max_packets, 77);
        assert_eq!(
            c.webrtc.ice_gathering_timeout_ms,
            Config::default().webrtc.ice_gathering_timeout_ms
        );
    }

    #[test]
    fn errors_name_key_value_and_expectation() {
        let e = Config::parse("[media]\nport_min = 30000\nport_max = 20000\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "media.port_min = 30000..20000: expected 1 <= port_min <= port_max"
        );
        let e = Config::parse("[webrtc]\njitter_buffer_max_packets = 5\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("webrtc.jitter_buffer_max_packets = 5"),
            "{e}"
        );
        let e = Config::parse("[stats]\ninterval_ms = 5\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "stats.interval_ms = 5: expected 0 (end-of-call records only) or 100..=3600000"
        );
        let e = Config::parse("[media]\nbogus = 1\n").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    /// Typed values are refused while parsing, with the key's line, the
    /// value and what was expected.
    #[test]
    fn typed_values_say_what_they_expected() {
        let e = Config::parse("[route]\nmode = \"proxy\"\n").unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("mode = \"proxy\"") && e.contains("`demo`") && e.contains("`bridge`"),
            "{e}"
        );
        let e = Config::parse("[sip]\nallowed_sources = [\"10.0.0.0/33\"]\n").unwrap_err();
        assert!(
            e.to_string().contains("allowed_sources") && e.to_string().contains("/33"),
            "{e}"
        );
        let e = Config::parse("[legacy]\ncodecs = [\"GSM\"]\n").unwrap_err();
        assert!(e.to_string().contains("unknown codec \"GSM\""), "{e}");
        let e = Config::parse("[legacy]\ncodecs = [\"PCMU\", \"pcmu\"]\n").unwrap_err();
        assert!(e.to_string().starts_with("legacy.codecs = "), "{e}");
        let c = Config::parse("[stats]\nexport = \"-\"\n[legacy]\ncodecs = [\"opus\"]\n").unwrap();
        assert_eq!(c.stats.export, ExportTarget::Stdout);
        assert_eq!(c.legacy.codecs, vec![CodecName::Opus]);
    }
}
