//! SIP signalling (RFC 3261), sans-IO: the message edge, stream framing,
//! transactions (section 17) and, on top, the user agent core that rtcgw's
//! calls use. Nothing here owns a socket or reads a clock: time is passed
//! in.

pub mod dtmf_info;
pub mod framing;
pub mod message;
pub mod metrics;
pub mod session_timer;
pub mod tsx;
pub mod ua;
pub mod uri;
