//! The legacy leg's RTP, sans-IO: packets, RFC 4733 events, and (with
//! bridging) the session that latches, reports and paces.

pub mod dtmf;
pub mod packet;
pub mod ports;
pub mod session;
