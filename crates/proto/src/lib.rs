//! rtcgw's protocol cores: everything that can be decided from bytes and
//! time alone, with no sockets, threads, clocks or libwebrtc.
//!
//! - [`sip`]: RFC 3261 messages, the section 17 transaction machines, and
//!   the user agent (dialogs, UAS, UAC, re-INVITE/UPDATE, INFO, RFC 4028
//!   session timers, access control).
//! - [`sdp`]: offers parsed once into typed WebRTC or plain-RTP offers;
//!   RFC 3264 offer/answer for the plain-RTP (legacy) leg.
//! - [`rtp`]: RTP/RTCP packets, the legacy leg's session (latching,
//!   reports, media timeout) and RFC 4733 events.
//! - [`stats`]: the call statistics records and the E-model.
//!
//! Every core is driven the same way: inputs with the time they happened
//! (`handle_*(now, ..)`), outputs polled (`poll_output`, `poll_event`,
//! `poll_timeout`). The gateway's driver owns the sockets and timers:
//!
//! ```no_run
//! # use std::time::Instant;
//! # use rtcgw_proto::sip::ua::{UserAgent, UaConfig};
//! # fn recv() -> (rtcgw_proto::sip::tsx::Peer, Vec<u8>) { unimplemented!() }
//! # fn send(_: rtcgw_proto::sip::ua::Outgoing) {}
//! # fn sleep_until(_: Option<Instant>) {}
//! # let mut ua: UserAgent = unimplemented!();
//! loop {
//!     let (peer, bytes) = recv(); // or a timer fired
//!     ua.handle_input(Instant::now(), peer, &bytes);
//!     ua.handle_timeout(Instant::now());
//!     while let Some(out) = ua.poll_output() {
//!         send(out);
//!     }
//!     while let Some(_event) = ua.poll_event() { /* decide */ }
//!     sleep_until(ua.poll_timeout());
//! }
//! ```

pub mod log_gate;
pub mod ng;
pub mod rtp;
pub mod sdp;
pub mod sip;
pub mod stats;
