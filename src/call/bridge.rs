//! Bridged calls (B2BUA media): a WebRTC leg joined to a legacy RTP leg.
//! The legacy leg is the gateway's sound card for the WebRTC leg: what the
//! browser sends is encoded onto the RTP leg, what NetEq plays out of the
//! RTP leg is what the browser hears. Both legs run on the one 10 ms clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use super::legacy::run;
use super::{Active, CallError, CallId, Calls, Leg, close_off_thread, watch_events};
use crate::media::{FrameSink, FrameSource};
use crate::rtc::PeerConnection;
use crate::rtp::ports::PortLease;
use crate::sdp::{self, legacy};

/// What the browser sends, as the legacy leg's source.
struct FromWebrtc {
    pc: Arc<PeerConnection>,
}

impl FrameSource for FromWebrtc {
    fn sample_rate(&self) -> u32 {
        48000
    }

    fn next_frame(&mut self, out: &mut Vec<i16>) {
        if self.pc.pull_audio(out).is_none() {
            out.clear();
            out.resize(480, 0); // nothing yet: silence keeps the RTP clock going
        }
    }
}

/// What the legacy leg plays out, as the browser's audio.
struct ToWebrtc {
    pc: Arc<PeerConnection>,
}

impl FrameSink for ToWebrtc {
    fn write_frame(&mut self, sample_rate: u32, pcm: &[i16]) {
        self.pc.push_audio(pcm, sample_rate);
    }

    fn close(self: Box<Self>) -> String {
        close_off_thread(self.pc);
        "bridged to WebRTC".into()
    }
}

/// A bridge whose legacy leg is still being set up (outbound INVITE).
pub(super) struct PendingBridge {
    pair: (PortLease, UdpSocket, UdpSocket),
    pc: Arc<PeerConnection>,
}

pub(super) type Pending = Mutex<HashMap<CallId, PendingBridge>>;

impl Calls {
    /// Answers a WebRTC offer for a bridged call and prepares its legacy
    /// leg; returns the call id, the WebRTC answer (to send once the legacy
    /// side answers) and the RTP/AVP offer for the outbound INVITE.
    pub async fn create_bridge(
        self: &Arc<Self>,
        offer: &str,
    ) -> Result<(CallId, String, String), CallError> {
        sdp::check_webrtc_offer(offer)?;
        let pair = self.bind_pair().await?;
        let (id, pc, events) = self.new_call()?;
        let answer = match pc.answer(offer).await {
            Ok(a) => a,
            Err(e) => {
                close_off_thread(pc);
                return Err(e.into());
            }
        };
        let cfg = &self.config.legacy;
        let session_id = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let legacy_offer = legacy::offer(
            &cfg.codecs,
            self.config.media.addresses[0],
            pair.0.rtp(),
            cfg.ptime_ms,
            session_id,
        );
        let info = self.call_info(
            &id,
            "bridge",
            sdp::first_audio_codec(&answer).unwrap_or_default(),
        );
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        self.pending.lock().expect("pending lock").insert(
            id.clone(),
            PendingBridge {
                pair,
                pc: pc.clone(),
            },
        );
        // Until the legacy leg is up, a hangup only has the WebRTC leg to close.
        let (calls, pid) = (self.clone(), id.clone());
        tokio::spawn(async move {
            let _ = stop_rx.await;
            if let Some(p) = calls.pending.lock().expect("pending lock").remove(&pid) {
                close_off_thread(p.pc);
            }
        });
        tokio::spawn(watch_events(self.clone(), id.clone(), info.clone(), events));
        self.active.lock().expect("calls lock").insert(
            id.clone(),
            Active {
                info,
                leg: Leg::Webrtc(pc),
                stop: Some(stop_tx),
            },
        );
        tracing::info!(call = %id, "bridge: WebRTC leg answered, legacy leg offered");
        Ok((id, answer, legacy_offer))
    }

    /// The legacy side answered: start the bridged media.
    pub fn complete_bridge(
        self: &Arc<Self>,
        id: &CallId,
        legacy_answer: &str,
    ) -> Result<(), CallError> {
        let cfg = &self.config.legacy;
        let neg = legacy::accept_answer(legacy_answer, &cfg.codecs, cfg.ptime_ms)?;
        let p = self
            .pending
            .lock()
            .expect("pending lock")
            .remove(id)
            .ok_or(CallError::NoSuchCall)?;
        let info = self
            .active
            .lock()
            .expect("calls lock")
            .get(id)
            .map(|a| a.info.clone())
            .ok_or(CallError::NoSuchCall)?;
        let pc = p.pc.clone();
        let media = match self.build_media(id, p.pair, neg, info) {
            Ok(m) => m,
            Err(e) => {
                close_off_thread(pc);
                return Err(e);
            }
        };
        let (stop_tx, stop_rx) = oneshot::channel();
        if let Some(a) = self.active.lock().expect("calls lock").get_mut(id) {
            a.stop = Some(stop_tx); // the pending waiter's sender is dropped
        }
        tokio::spawn(run(
            self.clone(),
            media,
            self.runtime.ticks(),
            Box::new(FromWebrtc { pc: pc.clone() }),
            Box::new(ToWebrtc { pc }),
            stop_rx,
        ));
        tracing::info!(call = %id, "bridge: media up");
        Ok(())
    }
}
