//! Bridged calls (B2BUA media): a WebRTC leg joined to a legacy RTP leg.
//! The legacy leg is the gateway's sound card for the WebRTC leg: what the
//! browser sends is encoded onto the RTP leg, what NetEq plays out of the
//! RTP leg is what the browser hears. Both legs run on the one 10 ms clock.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use rtcgw_control::FarLeg;
use rtcgw_proto::sdp::LegacyOffer;
use rtcgw_proto::sdp::legacy::{self, CodecName, OfferExtras};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::audio::{FrameSink, FrameSource};
use super::legacy::{run, session_id};
use super::ports::PortLease;
use super::{
    CallError, CallId, CallInfo, Calls, Leg, Legs, Target, close_off_thread, codec_of, sdp_or_close,
};
use crate::rtc::apm::{Apm, ApmSettings};
use crate::rtc::{PcEvent, PeerConnection};

/// What the browser sends, as the legacy leg's source.
struct FromWebrtc {
    pc: Arc<PeerConnection>,
    /// Per-call AEC3/NS/AGC (config switches): what goes to the legacy
    /// leg is its echo reference.
    apm: Option<Arc<Apm>>,
    /// Frames pulled from the receive ring and not yet encoded.
    queued: VecDeque<Vec<i16>>,
    spare: Vec<Vec<i16>>,
    /// Fewest frames left queued after a pull, in the current window.
    min_left: usize,
    pulls: u32,
}

/// A standing backlog is trimmed to this many frames. The receive ring fills
/// while the legacy leg is still being set up (the WebRTC leg is answered
/// first), and with one frame in and one out per tick that backlog would stay
/// for the whole call as added delay (about 140 ms, measured by the QoS lab).
/// Only a backlog that lasts a whole window is trimmed, so catching up after
/// a late wake-up (several frames taken at once) loses nothing.
const MAX_STANDING_FRAMES: usize = 1;
const TRIM_WINDOW_PULLS: u32 = 50;

impl FromWebrtc {
    fn new(pc: Arc<PeerConnection>, apm: Option<Arc<Apm>>) -> Self {
        Self {
            pc,
            apm,
            queued: VecDeque::new(),
            spare: Vec::new(),
            min_left: usize::MAX,
            pulls: 0,
        }
    }
}

impl FrameSource for FromWebrtc {
    fn sample_rate(&self) -> u32 {
        48000
    }

    fn next_frame(&mut self, out: &mut Vec<i16>) {
        loop {
            let mut buf = self.spare.pop().unwrap_or_default();
            if self.pc.pull_audio(&mut buf).is_none() {
                self.spare.push(buf);
                break;
            }
            self.queued.push_back(buf);
        }
        match self.queued.pop_front() {
            Some(mut frame) => {
                std::mem::swap(out, &mut frame);
                self.spare.push(frame);
            }
            None => {
                out.clear();
                out.resize(480, 0); // nothing yet: silence keeps the RTP clock going
            }
        }
        if let Some(apm) = &self.apm {
            apm.render(out, 48000); // the echo reference
        }
        self.min_left = self.min_left.min(self.queued.len());
        self.pulls += 1;
        if self.pulls == TRIM_WINDOW_PULLS {
            for _ in MAX_STANDING_FRAMES..self.min_left {
                if let Some(stale) = self.queued.pop_front() {
                    self.spare.push(stale);
                }
            }
            self.min_left = usize::MAX;
            self.pulls = 0;
        }
    }
}

/// What the legacy leg plays out, as the browser's audio.
struct ToWebrtc {
    pc: Arc<PeerConnection>,
    apm: Option<Arc<Apm>>,
    scratch: Vec<i16>,
}

impl FrameSink for ToWebrtc {
    fn write_frame(&mut self, sample_rate: u32, pcm: &[i16]) {
        match &self.apm {
            Some(apm) => {
                self.scratch.clear();
                self.scratch.extend_from_slice(pcm);
                apm.capture(&mut self.scratch, sample_rate);
                self.pc.push_audio(&self.scratch, sample_rate);
            }
            None => {
                self.pc.push_audio(pcm, sample_rate);
            }
        }
    }

    fn close(self: Box<Self>) -> String {
        close_off_thread(self.pc);
        "bridged to WebRTC".into()
    }
}

/// A bridge whose far leg is still being set up (outbound INVITE).
pub(super) struct PendingBridge {
    pair: (PortLease, UdpSocket, UdpSocket),
    pc: Arc<PeerConnection>,
    far: Far,
    /// Our legacy SDP's o= session id.
    session_id: u64,
}

/// What the far leg's answer completes.
enum Far {
    /// A WebRTC caller: our plain-RTP offer is out, with these codecs and
    /// (SDES-SRTP) our key.
    LegacyOffered {
        codecs: Vec<CodecName>,
        sdes_key: Option<Vec<u8>>,
    },
    /// A plain-RTP caller: its leg is negotiated (we answered it); the
    /// WebRTC callee's answer is to come.
    WebrtcOffered(Box<legacy::Negotiated>),
}

pub(super) type Pending = Mutex<HashMap<CallId, PendingBridge>>;

impl Calls {
    /// Answers a WebRTC offer for a bridged call and prepares its legacy
    /// leg; returns the WebRTC answer (to send once the legacy side
    /// answers) and the RTP/AVP offer for the outbound INVITE.
    pub(super) async fn create_bridge(
        self: &Arc<Self>,
        id: &CallId,
        offer: &str,
        far: &FarLeg,
    ) -> Result<(String, String), CallError> {
        let cfg = &self.config.legacy;
        let codecs: Vec<CodecName> = if far.codecs.is_empty() {
            (cfg.codecs.iter())
                .filter(|c| !far.exclude.contains(c))
                .copied()
                .collect()
        } else {
            far.codecs.clone()
        };
        if codecs.is_empty() {
            return Err(CallError::NoCodec);
        }
        // The callee is not known yet: the first legacy address.
        let addr = self.config.legacy_address(None);
        let pair = self.bind_pair(addr).await?;
        let (pc, events) = self.new_webrtc_leg(id)?;
        let answer = sdp_or_close(&pc, pc.answer(offer)).await?;
        let session_id = session_id();
        let extras = OfferExtras {
            sdes_key: far.sdes.then(|| rand::random::<[u8; 30]>().to_vec()),
            rtcp_mux: far.rtcp_mux,
        };
        let legacy_offer = legacy::offer_with(
            &codecs,
            addr.public(),
            pair.0.rtp(),
            cfg.ptime_ms,
            session_id,
            &extras,
        );
        let info = self.call_info(id, Target::Bridge, Legs::Bridge, codec_of(&answer));
        self.park(
            id,
            PendingBridge {
                pair,
                pc,
                far: Far::LegacyOffered {
                    codecs,
                    sdes_key: extras.sdes_key,
                },
                session_id,
            },
            info,
            events,
        );
        tracing::info!(call = %id, "bridge: WebRTC leg answered, legacy leg offered");
        Ok((answer, legacy_offer))
    }

    /// A legacy caller (plain RTP offer) for a WebRTC callee: answers the
    /// legacy leg (answer held back) and makes the WebRTC offer for the
    /// outbound INVITE. Returns the legacy answer and the WebRTC offer.
    pub(super) async fn create_bridge_from_legacy(
        self: &Arc<Self>,
        id: &CallId,
        offer: &LegacyOffer,
    ) -> Result<(String, String), CallError> {
        let addr = self.legacy_address_for(offer);
        let pair = self.bind_pair(addr).await?;
        let session_id = session_id();
        let (answer, neg) = self.answer_legacy(offer, (addr.public(), pair.0.rtp()), session_id)?;
        let (pc, events) = self.new_webrtc_leg(id)?;
        let webrtc_offer = sdp_or_close(&pc, pc.offer()).await?;
        let codec = format!("{}/{}", neg.codec.name, neg.codec.clock_rate);
        let info = self.call_info(id, Target::Bridge, Legs::Bridge, Some(codec));
        self.park(
            id,
            PendingBridge {
                pair,
                pc,
                far: Far::WebrtcOffered(Box::new(neg)),
                session_id,
            },
            info,
            events,
        );
        tracing::info!(call = %id, "bridge: legacy leg answered, WebRTC leg offered");
        Ok((answer, webrtc_offer))
    }

    /// Registers a bridge waiting for its far leg. Until then a hangup only
    /// has the WebRTC leg to close.
    fn park(
        self: &Arc<Self>,
        id: &CallId,
        p: PendingBridge,
        info: CallInfo,
        events: mpsc::UnboundedReceiver<PcEvent>,
    ) {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let pc = p.pc.clone();
        self.pending
            .lock()
            .expect("pending lock")
            .insert(id.clone(), p);
        let (calls, pid) = (self.clone(), id.clone());
        tokio::spawn(async move {
            let _ = stop_rx.await;
            if let Some(p) = calls.pending.lock().expect("pending lock").remove(&pid) {
                close_off_thread(p.pc);
            }
        });
        self.register_webrtc(id, pc, Arc::new(Mutex::new(info)), events, stop_tx);
    }

    /// The far leg answered (a legacy answer to our RTP offer, or a WebRTC
    /// answer to our WebRTC offer): start the bridged media.
    pub(super) async fn complete_bridge(
        self: &Arc<Self>,
        id: &CallId,
        far_answer: &str,
    ) -> Result<(), CallError> {
        let cfg = &self.config.legacy;
        let p = self
            .pending
            .lock()
            .expect("pending lock")
            .remove(id)
            .ok_or(CallError::NoSuchCall)?;
        let settled: Result<legacy::Negotiated, CallError> = match p.far {
            Far::WebrtcOffered(neg) => {
                p.pc.apply_answer(far_answer)
                    .await
                    .map(|()| *neg)
                    .map_err(Into::into)
            }
            Far::LegacyOffered { codecs, sdes_key } => {
                legacy::accept_answer_with(far_answer, &codecs, cfg.ptime_ms, sdes_key.as_deref())
                    .map_err(Into::into)
            }
        };
        let neg = match settled {
            Ok(neg) => neg,
            Err(e) => {
                close_off_thread(p.pc);
                return Err(e);
            }
        };
        let pc = p.pc.clone();
        let built = self
            .build_media(id, p.pair, neg, p.session_id)
            .and_then(|m| Ok((m, self.call_apm()?)));
        let ((media, handle), apm) = match built {
            Ok(b) => b,
            Err(e) => {
                close_off_thread(pc);
                return Err(e);
            }
        };
        let (stop_tx, stop_rx) = oneshot::channel();
        match self.active.lock().expect("calls lock").get_mut(id) {
            Some(a) => {
                a.stop = Some(stop_tx); // the pending waiter's sender is dropped
                a.legacy = Some(handle);
                a.leg = Leg::Bridge(pc.clone(), media.stats_handle());
            }
            None => {
                // Hung up while the answer was applied: nothing to start.
                close_off_thread(pc);
                return Err(CallError::NoSuchCall);
            }
        }
        tokio::spawn(run(
            self.clone(),
            media,
            self.runtime.ticks(),
            Box::new(FromWebrtc::new(pc.clone(), apm.clone())),
            Box::new(ToWebrtc {
                pc,
                apm,
                scratch: Vec::with_capacity(960),
            }),
            stop_rx,
        ));
        tracing::info!(call = %id, "bridge: media up");
        Ok(())
    }

    /// The per-call AudioProcessing the config asks for (None: all off).
    fn call_apm(&self) -> Result<Option<Arc<Apm>>, super::CallError> {
        let b = &self.config.bridge;
        let settings = ApmSettings {
            echo_cancellation: b.echo_cancellation,
            noise_suppression: b.noise_suppression,
            automatic_gain_control: b.automatic_gain_control,
            delay_ms: 0,
        };
        if !settings.any() {
            return Ok(None);
        }
        Ok(Some(Arc::new(Apm::new(&settings)?)))
    }
}
