//! Recorded speech for the load clients and the codec-only ceiling: the
//! English prompts of Debian's asterisk-core-sounds-en-wav (8 kHz, 16-bit
//! mono), the longer ones in name order, 0.3 s apart, until a minute.

use std::path::Path;

pub const SOUNDS: &str = "/usr/share/asterisk/sounds/en";
/// The prompts' sample rate.
pub const RATE: u32 = 8000;

/// About `seconds` of speech from `dir` (whole 10 ms frames).
pub fn load(dir: &Path, seconds: f64) -> Result<Vec<i16>, String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| {
            format!(
                "{}: {e} (apt install asterisk-core-sounds-en-wav)",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .collect();
    names.sort();
    let want = (seconds * RATE as f64) as usize;
    let gap = vec![0i16; RATE as usize * 3 / 10];
    let mut out = Vec::with_capacity(want + RATE as usize * 10);
    for path in names {
        if out.len() >= want {
            break;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        match wav_samples(&bytes) {
            // Only utterances of 1.5 s or more: short words are mostly edges.
            Some(pcm) if pcm.len() >= RATE as usize * 3 / 2 => {
                out.extend_from_slice(&pcm);
                out.extend_from_slice(&gap);
            }
            _ => {}
        }
    }
    if out.len() < want {
        return Err(format!(
            "{}: only {:.1} s of speech in prompts of 1.5 s or more",
            dir.display(),
            out.len() as f64 / RATE as f64
        ));
    }
    out.truncate(want - want % (RATE as usize / 100));
    Ok(out)
}

/// The samples of a PCM WAV file at 8 kHz, 16-bit, mono; None otherwise.
fn wav_samples(b: &[u8]) -> Option<Vec<i16>> {
    if b.len() < 12 || &b[..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return None;
    }
    let (mut at, mut format_ok) = (12, false);
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().ok()?) as usize;
        let body = b.get(at + 8..(at + 8 + len).min(b.len()))?;
        if id == b"fmt " && body.len() >= 16 {
            let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
            let rate = u32::from_le_bytes(body[4..8].try_into().ok()?);
            format_ok = u16_at(0) == 1 && u16_at(2) == 1 && rate == RATE && u16_at(14) == 16;
        } else if id == b"data" {
            return format_ok.then(|| {
                body.chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect()
            });
        }
        at += 8 + len + (len & 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, samples: &[i16]) -> Vec<u8> {
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut b = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0".to_vec();
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * 2).to_le_bytes());
        b.extend_from_slice(b"\x02\0\x10\0data");
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&data);
        b
    }

    #[test]
    fn reads_8khz_mono_pcm_and_nothing_else() {
        assert_eq!(wav_samples(&wav(8000, &[1, -2, 3])), Some(vec![1, -2, 3]));
        assert_eq!(wav_samples(&wav(16000, &[1, -2, 3])), None);
        assert_eq!(wav_samples(b"RIFF\0\0\0\0WAVE"), None);
        assert_eq!(wav_samples(b"not a wav"), None);
    }
}
