//! The demo target over a WebRTC leg: a clip or a tone played to the peer,
//! what the peer sends recorded, one frame each way per clock tick.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};

use super::audio::{FrameSink, FrameSource, Recorder, Tone};
use super::{CallError, CallId, Calls, Legs, Target, close_off_thread, codec_of, sdp_or_close};
use crate::rtc::{PcEvent, PeerConnection};

impl Calls {
    /// Answers a WebRTC offer with a demo-target call; returns the answer.
    pub(super) async fn create_demo(
        self: &Arc<Self>,
        id: &CallId,
        offer: &str,
    ) -> Result<String, CallError> {
        let (pc, events) = self.new_webrtc_leg(id)?;
        let answer = sdp_or_close(&pc, pc.answer(offer)).await?;
        self.launch(id, pc, events, &answer);
        Ok(answer)
    }

    /// A demo-target call where rtcgw makes the WebRTC offer (SIP late
    /// offer); [`Calls::apply_answer`] completes it.
    pub(super) async fn create_demo_offer(
        self: &Arc<Self>,
        id: &CallId,
    ) -> Result<String, CallError> {
        let (pc, events) = self.new_webrtc_leg(id)?;
        let offer = sdp_or_close(&pc, pc.offer()).await?;
        self.launch(id, pc, events, &offer);
        Ok(offer)
    }

    /// The demo's audio source: the configured clip, else a tone.
    pub(super) fn demo_source(&self) -> Box<dyn FrameSource> {
        match &self.clip {
            Some(c) => Box::new(c.player()),
            None => Box::new(Tone::new(self.config.demo.tone_hz)),
        }
    }

    /// Registers a call whose local SDP is ready and starts its media.
    fn launch(
        self: &Arc<Self>,
        id: &CallId,
        pc: Arc<PeerConnection>,
        events: mpsc::UnboundedReceiver<PcEvent>,
        local_sdp: &str,
    ) {
        let info = self.call_info(id, Target::Demo, Legs::Webrtc, codec_of(local_sdp));
        let recording = Recorder::with_limits(info.recording.clone().into(), self.record_limits());
        let codec = info.codec.clone();
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(demo_media(
            id.clone(),
            pc.clone(),
            self.runtime.ticks(),
            self.demo_source(),
            Box::new(recording),
            stop_rx,
        ));
        self.register_webrtc(id, pc, Arc::new(Mutex::new(info)), events, stop_tx);
        tracing::info!(call = %id, codec = codec.as_deref().unwrap_or("?"), "call set up");
    }
}

/// The demo target's audio: per clock tick, one frame out and every received
/// frame into the recording.
async fn demo_media(
    id: CallId,
    pc: Arc<PeerConnection>,
    mut ticks: watch::Receiver<u64>,
    mut source: Box<dyn FrameSource>,
    mut sink: Box<dyn FrameSink>,
    mut stop: oneshot::Receiver<()>,
) {
    const PREFILL: u64 = 2; // 20 ms cushion against scheduling jitter
    const MAX_CATCH_UP: u64 = 5;
    let mut frame = Vec::with_capacity(960);
    let mut rx = Vec::with_capacity(960);
    let mut last = *ticks.borrow_and_update();
    for _ in 0..PREFILL {
        source.next_frame(&mut frame);
        pc.push_audio(&frame, source.sample_rate());
    }
    loop {
        tokio::select! {
            _ = &mut stop => break,
            changed = ticks.changed() => {
                if changed.is_err() { break; }
                let now = *ticks.borrow_and_update();
                for _ in 0..now.saturating_sub(last).min(MAX_CATCH_UP) {
                    source.next_frame(&mut frame);
                    pc.push_audio(&frame, source.sample_rate());
                }
                last = now;
                while let Some(rate) = pc.pull_audio(&mut rx) {
                    sink.write_frame(rate, &rx);
                }
            }
        }
    }
    let counters = pc.audio_counters();
    let sink_report = sink.close();
    tracing::info!(
        call = %id, sink = %sink_report,
        tx_frames = counters.tx_frames, tx_underruns = counters.tx_underruns,
        rx_frames = counters.rx_frames, rx_overflows = counters.rx_overflows,
        "call ended"
    );
    close_off_thread(pc);
}
