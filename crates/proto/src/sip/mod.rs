//! SIP signalling (RFC 3261), sans-IO: the message edge, transactions
//! (section 17) and, on top, the user agent core that rtcgw's calls use.
//! Nothing here owns a socket or reads a clock: time is passed in.

pub mod dtmf_info;
pub mod message;
pub mod session_timer;
pub mod tsx;
pub mod ua;
