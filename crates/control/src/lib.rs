//! rtcgw's call control, sans-IO: the B2BUA core between the front ends
//! (SIP through the user agent it owns, the HTTP API) and the media side
//! (libwebrtc's PeerConnections and the plain-RTP legs, which it commands
//! but never touches).
//!
//! - [`CallControl`]: admission, routing, bridging (early media included),
//!   refusals, endings, re-offers and DTMF routing, for every call.
//! - [`Refusal`]: the one table from a refusal to SIP and HTTP statuses,
//!   reason, metric label and Retry-After.
//! - [`MediaCommand`] / [`MediaEvent`]: the media boundary.
//! - [`NgRequest`]: calls driven over rtpengine's ng protocol (Kamailio's
//!   `rtpengine` module), on the same calls and media.
//!
//! The driver (the gateway's one I/O loop) runs it like every other core:
//!
//! ```no_run
//! # use std::time::Instant;
//! # use rtcgw_control::{CallControl, Output, MediaEvent};
//! # let mut control: CallControl = unimplemented!();
//! # fn sip_recv() -> Option<(rtcgw_proto::sip::tsx::Peer, Vec<u8>)> { None }
//! # fn media_done() -> Option<MediaEvent> { None }
//! loop {
//!     let now = Instant::now();
//!     if let Some((peer, bytes)) = sip_recv() {
//!         control.handle_sip(now, peer, &bytes);
//!     }
//!     if let Some(ev) = media_done() {
//!         control.handle_media(now, ev);
//!     }
//!     control.handle_timeout(now);
//!     while let Some(out) = control.poll_output() {
//!         match out {
//!             Output::Transmit(_bytes) => { /* send on its transport */ }
//!             Output::Media(_cmd) => { /* run it; its MediaEvent comes back */ }
//!             Output::Reply { .. } => { /* answer the API request */ }
//!             Output::NgReply { .. } => { /* send the ng reply */ }
//!         }
//!     }
//!     // ...and sleep until control.poll_timeout() or the next input.
//! }
//! ```

mod core;
mod end;
pub mod headroom;
mod id;
mod media;
mod metrics;
mod ng;
mod refusal;

pub use core::{ApiCall, ApiRequest, CallControl, CallerId, ControlConfig, Output, Route};
pub use end::{EndReason, Party};
pub use id::{ApiToken, CallId};
pub use media::{Created, FarLeg, MediaCommand, MediaEvent, Plan, ReofferFrom};
pub use metrics::{CallMetrics, CallOutcomes, OutcomeLabel};
pub use ng::{NgCallInfo, NgRequest};
pub use refusal::{CAPACITY_RETRY_AFTER_S, DRAIN_RETRY_AFTER_S, Disposition, Refusal, Refused};
