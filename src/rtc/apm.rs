//! Per-call audio processing (AEC3, noise suppression, AGC2) for bridged
//! calls; see cpp/include/rtcgw/call_apm.h.

use cxx::UniquePtr;

use super::sys::ffi;
use super::{RtcError, no_error};

pub use ffi::ApmSettings;

impl ApmSettings {
    /// True when any processing is switched on.
    pub fn any(&self) -> bool {
        self.echo_cancellation || self.noise_suppression || self.automatic_gain_control
    }
}

/// One call's AudioProcessing instance.
pub struct Apm {
    ptr: UniquePtr<ffi::CallApm>,
}

impl Apm {
    pub fn new(settings: &ApmSettings) -> Result<Self, RtcError> {
        let mut err = no_error();
        let ptr = ffi::new_call_apm(settings, &mut err);
        match RtcError::from_ffi(err) {
            Some(e) => Err(e),
            None => Ok(Self { ptr }),
        }
    }

    /// Feeds the echo reference: a 10 ms frame sent to the legacy leg.
    pub fn render(&self, pcm: &[i16], sample_rate: u32) -> bool {
        self.ptr.render(pcm, sample_rate as i32)
    }

    /// Processes a 10 ms frame received from the legacy leg, in place.
    pub fn capture(&self, pcm: &mut [i16], sample_rate: u32) -> bool {
        self.ptr.capture(pcm, sample_rate as i32)
    }
}
