//! Call statistics (issue 6): the WebRTC legs' voice channels (read in one
//! batch; getStats for the live API) and the legacy leg's RTP and NetEq
//! counters, polled per call into the typed model of
//! [`rtcgw_proto::stats::model`] with an ITU-T G.107 quality estimate,
//! exported as JSON Lines ([`export`]) and summed for /metrics
//! ([`collect`]). [`poller`] is the one place here that waits on anything:
//! its own tokio task, off the audio path. docs/stats.md documents the
//! records.

pub mod collect;
pub mod export;
pub mod metrics;
pub mod poller;
