//! Call statistics as data: the typed records rtcgw exports
//! ([`model`], docs/stats.md) and the ITU-T G.107 E-model ([`emodel`]).
//! Reading the figures out of libwebrtc and the RTP sessions is the
//! gateway's job (its `stats` module).

pub mod emodel;
pub mod model;
