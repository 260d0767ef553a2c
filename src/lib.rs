//! rtcgw: a WebRTC <-> SIP media gateway around Google's libwebrtc.
//!
//! Layout: `rtc` is the libwebrtc bridge (C++ in `cpp/`), `config` the TOML
//! configuration, `media` the audio sources and sinks of calls, `call` the
//! call registry and demo target, `http` the call API and /metrics, `stats` call statistics (polling, quality, export), `loadgen` the load client used by benchmarks.

pub mod call;
pub mod config;
pub mod driver;
pub mod http;
pub mod loadgen;
pub mod media;
pub mod rtc;
pub mod stats;
