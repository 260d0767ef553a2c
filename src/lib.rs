//! rtcgw: a WebRTC <-> SIP media gateway around Google's libwebrtc.
//!
//! The protocol cores (SIP, SDP, RTP, stats records) are in the
//! `rtcgw-proto` crate and call control (the B2BUA) in `rtcgw-control`,
//! both sans-IO. This crate is the gateway around them:
//!
//! - [`driver`]: the one I/O loop: SIP sockets, timers, the channels that
//!   feed call control and carry out what it decides;
//! - [`media`]: each call's media (libwebrtc PeerConnections, plain-RTP
//!   legs, the demo target, bridges), commanded by call control;
//! - [`rtc`]: the libwebrtc bridge (C++ in `cpp/`);
//! - [`http`]: the call API and `/metrics`; [`metrics`]: the one registry;
//! - [`stats`]: polling, quality estimates and the JSON Lines export;
//! - [`config`]: the TOML configuration; [`notify`]: systemd readiness;
//! - [`tls`]: SIP over TLS's certificates (the driver owns its sockets).

pub mod accept;
pub mod config;
pub mod driver;
pub mod http;
pub mod media;
pub mod metrics;
pub mod ng;
pub mod notify;
pub mod rtc;
pub mod stats;
pub mod tls;
