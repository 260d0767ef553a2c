//! Audio sources and sinks for calls, in 10 ms mono frames.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Something that produces 10 ms frames of mono PCM.
pub trait FrameSource: Send {
    fn sample_rate(&self) -> u32;
    /// Fills `out` with exactly `sample_rate / 100` samples.
    fn next_frame(&mut self, out: &mut Vec<i16>);
}

/// Something that takes 10 ms frames of mono PCM (a recording, another leg).
pub trait FrameSink: Send {
    fn write_frame(&mut self, sample_rate: u32, pcm: &[i16]);
    /// Called once when the call ends; returns a line for the end-of-call log.
    fn close(self: Box<Self>) -> String;
}

/// A sine tone at 48 kHz, phase-continuous across frames.
pub struct Tone {
    freq: f64,
    phase: f64,
    amplitude: f64,
}

impl Tone {
    pub const RATE: u32 = 48_000;

    pub fn new(freq: f32) -> Self {
        Self {
            freq: f64::from(freq),
            phase: 0.0,
            amplitude: 0.3 * f64::from(i16::MAX),
        }
    }
}

impl FrameSource for Tone {
    fn sample_rate(&self) -> u32 {
        Self::RATE
    }

    fn next_frame(&mut self, out: &mut Vec<i16>) {
        let step = std::f64::consts::TAU * self.freq / f64::from(Self::RATE);
        out.clear();
        for _ in 0..Self::RATE / 100 {
            out.push((self.phase.sin() * self.amplitude) as i16);
            self.phase = (self.phase + step) % std::f64::consts::TAU;
        }
    }
}

/// A WAV file decoded once, shared by every call that plays it.
#[derive(Clone)]
pub struct Clip {
    rate: u32,
    samples: Arc<Vec<i16>>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    #[error("{path}: {source}")]
    Wav { path: PathBuf, source: hound::Error },
    #[error("{path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
}

impl Clip {
    /// Loads a 16-bit PCM WAV (mono or multi-channel, downmixed), at a rate
    /// that divides into 10 ms frames.
    pub fn load(path: &Path) -> Result<Self, MediaError> {
        let wav = |source| MediaError::Wav {
            path: path.to_owned(),
            source,
        };
        let unsupported = |reason: String| MediaError::Unsupported {
            path: path.to_owned(),
            reason,
        };
        let reader = hound::WavReader::open(path).map_err(wav)?;
        let spec = reader.spec();
        if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
            return Err(unsupported("expected 16-bit integer PCM".into()));
        }
        if spec.sample_rate % 100 != 0 || spec.sample_rate < 8000 {
            return Err(unsupported(format!(
                "sample rate {} does not make 10 ms frames",
                spec.sample_rate
            )));
        }
        let raw: Vec<i16> = reader
            .into_samples::<i16>()
            .collect::<Result<_, _>>()
            .map_err(wav)?;
        let ch = usize::from(spec.channels.max(1));
        let samples: Vec<i16> = raw
            .chunks(ch)
            .map(|c| (c.iter().map(|&s| i32::from(s)).sum::<i32>() / ch as i32) as i16)
            .collect();
        if samples.len() < (spec.sample_rate / 100) as usize {
            return Err(unsupported("shorter than one 10 ms frame".into()));
        }
        Ok(Self {
            rate: spec.sample_rate,
            samples: Arc::new(samples),
        })
    }

    pub fn player(&self) -> ClipPlayer {
        ClipPlayer {
            clip: self.clone(),
            pos: 0,
        }
    }
}

/// Plays a [`Clip`] in a loop.
pub struct ClipPlayer {
    clip: Clip,
    pos: usize,
}

impl FrameSource for ClipPlayer {
    fn sample_rate(&self) -> u32 {
        self.clip.rate
    }

    fn next_frame(&mut self, out: &mut Vec<i16>) {
        let n = (self.clip.rate / 100) as usize;
        let s = &self.clip.samples;
        out.clear();
        while out.len() < n {
            let take = (n - out.len()).min(s.len() - self.pos);
            out.extend_from_slice(&s[self.pos..self.pos + take]);
            self.pos = (self.pos + take) % s.len();
        }
    }
}

/// Records received frames into a WAV file at the first frame's rate.
pub struct Recorder {
    path: PathBuf,
    writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>,
    rate: u32,
    pub frames: u64,
    pub dropped: u64,
    limits: RecordLimits,
    /// Why recording stopped early, once it has.
    stopped: Option<&'static str>,
}

/// What a recording may take (`demo.record_*`).
#[derive(Debug, Clone, Copy)]
pub struct RecordLimits {
    /// 10 ms frames at most (the duration).
    pub max_frames: u64,
    /// Stop (or never start) when the file system has less free.
    pub min_free_bytes: u64,
}

impl Default for RecordLimits {
    fn default() -> Self {
        Self {
            max_frames: u64::MAX,
            min_free_bytes: 0,
        }
    }
}

/// Free bytes on the file system holding `path` (None when unknown).
fn free_bytes(path: &Path) -> Option<u64> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

impl Recorder {
    pub fn new(path: PathBuf) -> Self {
        Self::with_limits(path, RecordLimits::default())
    }

    /// A recording that starts at the first frame that is not digital
    /// silence (a call whose peer never sent audio leaves no file), and
    /// stops at `limits`.
    pub fn with_limits(path: PathBuf, limits: RecordLimits) -> Self {
        Self {
            path,
            writer: None,
            rate: 0,
            frames: 0,
            dropped: 0,
            limits,
            stopped: None,
        }
    }

    /// Whether the next frame may be written: within the duration, and
    /// (checked when the file is opened and every 10 s) the free space.
    fn may_write(&mut self) -> bool {
        if self.stopped.is_some() {
            return false;
        }
        let why = if self.frames >= self.limits.max_frames {
            Some("demo.record_max_s reached")
        } else if self.frames % 1000 == 0
            && self.limits.min_free_bytes > 0
            && free_bytes(&self.path).is_some_and(|f| f < self.limits.min_free_bytes)
        {
            Some("less free space than demo.record_min_free_mb")
        } else {
            None
        };
        if let Some(why) = why {
            tracing::warn!(path = %self.path.display(), frames = self.frames, "recording stopped: {why}");
            self.stopped = Some(why);
            return false;
        }
        true
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, rate: u32, pcm: &[i16]) -> Result<(), hound::Error> {
        if self.writer.is_none() && pcm.iter().all(|s| *s == 0) {
            return Ok(()); // nothing heard yet
        }
        if !self.may_write() {
            return Ok(());
        }
        if self.writer.is_none() {
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: rate,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            self.writer = Some(hound::WavWriter::create(&self.path, spec)?);
            self.rate = rate;
        }
        if rate != self.rate {
            // The mixer pulls at a fixed rate, so this does not happen; a
            // frame at another rate would corrupt the file.
            self.dropped += 1;
            return Ok(());
        }
        let w = self.writer.as_mut().expect("writer created above");
        let mut i16w = w.get_i16_writer(pcm.len() as u32);
        for &s in pcm {
            i16w.write_sample(s);
        }
        i16w.flush()?;
        self.frames += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<(), hound::Error> {
        match self.writer.take() {
            Some(w) => w.finalize(),
            None => Ok(()),
        }
    }
}

impl FrameSink for Recorder {
    fn write_frame(&mut self, sample_rate: u32, pcm: &[i16]) {
        if let Err(e) = self.write(sample_rate, pcm)
            && self.dropped == 0
        {
            tracing::error!(path = %self.path.display(), "recording failed: {e}");
            self.dropped += 1;
        }
    }

    fn close(self: Box<Self>) -> String {
        let (frames, path) = (self.frames, self.path.display().to_string());
        if let Err(e) = self.finish() {
            tracing::error!("finishing recording {path}: {e}");
        }
        format!("{frames} frames recorded to {path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recordings_start_at_the_first_sound_and_stop_at_their_limits() {
        let dir = std::env::temp_dir().join(format!("rtcgw-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (silence, sound) = ([0i16; 480], [100i16; 480]);
        // Nothing but silence: no file at all.
        let mut r = Recorder::with_limits(dir.join("silent.wav"), RecordLimits::default());
        for _ in 0..50 {
            r.write(48_000, &silence).unwrap();
        }
        r.finish().unwrap();
        assert!(!dir.join("silent.wav").exists());
        // At most max_frames frames, from the first sound on.
        let limits = RecordLimits {
            max_frames: 10,
            min_free_bytes: 0,
        };
        let mut r = Recorder::with_limits(dir.join("short.wav"), limits);
        r.write(48_000, &silence).unwrap();
        for _ in 0..30 {
            r.write(48_000, &sound).unwrap();
        }
        assert_eq!(r.frames, 10);
        r.finish().unwrap();
        let w = hound::WavReader::open(dir.join("short.wav")).unwrap();
        assert_eq!(w.duration(), 4800);
        // Less free space than the floor: none starts.
        let limits = RecordLimits {
            max_frames: u64::MAX,
            min_free_bytes: u64::MAX,
        };
        let mut r = Recorder::with_limits(dir.join("full.wav"), limits);
        r.write(48_000, &sound).unwrap();
        r.finish().unwrap();
        assert!(!dir.join("full.wav").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tone_frames_are_10ms_and_continuous() {
        let mut t = Tone::new(1000.0);
        let mut a = Vec::new();
        let mut b = Vec::new();
        t.next_frame(&mut a);
        t.next_frame(&mut b);
        assert_eq!(a.len(), 480);
        // 1 kHz at 48 kHz: 48 samples per period, so frame b repeats frame a.
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1));
    }

    #[test]
    fn clip_loops_across_frame_boundaries() {
        let dir = std::env::temp_dir().join(format!("rtcgw-clip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..100i16 {
            w.write_sample(i).unwrap();
        }
        w.finalize().unwrap();
        let mut p = Clip::load(&path).unwrap().player();
        let mut f = Vec::new();
        p.next_frame(&mut f);
        p.next_frame(&mut f);
        assert_eq!(f.len(), 80);
        assert_eq!(f[0], 80);
        assert_eq!(f[20], 0); // wrapped
        std::fs::remove_dir_all(dir).unwrap();
    }
}
