//! The legacy leg's RTP, sans-IO: packets (RFC 3550), RFC 4733 events, and
//! the session that latches, reports and paces.

pub mod dtmf;
pub mod event_clock;
pub mod id;
pub mod packet;
pub mod session;
