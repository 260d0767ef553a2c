//! Which telephone-event (RFC 4733) payload types rtcgw's own WebRTC SDP
//! keeps. Chrome offers telephone-event at 48000 and at 8000 Hz beside
//! Opus; libwebrtc answers both, and its DTMF sender, given both, takes the
//! lowest rate for a codec without comfort noise (Opus has none): digits
//! then go out on the 8000 Hz payload type inside the 48 kHz Opus stream,
//! their durations counted on the 48 kHz clock (a 160 ms digit arrives as
//! 40 ms), and Chrome's sender does the same toward us. libwebrtc sends
//! with the codecs of the remote description (an offer's, when it
//! answers), the peer with ours. So the edit goes on the offers rtcgw
//! receives, before libwebrtc applies them, and on its own offers and
//! answers: keeping only the event whose clock is the main codec's leaves
//! both senders one right choice.

/// `sdp` (before libwebrtc applies it) with, in each audio section, only the
/// telephone-event payload types at the clock rate of the section's main
/// codec (its first that is not telephone-event, RED, CN, RTX or FEC), when
/// one at that rate is there. None: nothing to change.
pub fn match_telephone_events(sdp: &str) -> Option<String> {
    let lines: Vec<&str> = sdp.split_inclusive('\n').collect();
    let body = |l: &str| l.trim_end_matches(['\r', '\n']).to_string();
    let mut drop_at: Vec<usize> = Vec::new();
    let mut mline_edits: Vec<(usize, String)> = Vec::new();
    let mut start = 0;
    while start < lines.len() {
        let end = (start + 1..lines.len())
            .find(|&i| lines[i].starts_with("m="))
            .unwrap_or(lines.len());
        if lines[start].starts_with("m=audio ") {
            let section = &lines[start..end];
            if let Some((mline, drop)) = section_edit(&body(section[0]), section) {
                mline_edits.push((start, mline));
                for (i, l) in section.iter().enumerate().skip(1) {
                    if attribute_pt(l).is_some_and(|pt| drop.contains(&pt)) {
                        drop_at.push(start + i);
                    }
                }
            }
        }
        start = end;
    }
    if mline_edits.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(sdp.len());
    for (i, l) in lines.iter().enumerate() {
        if drop_at.contains(&i) {
            continue;
        }
        match mline_edits.iter().find(|(at, _)| *at == i) {
            Some((_, m)) => {
                out.push_str(m);
                out.push_str(&l[l.trim_end_matches(['\r', '\n']).len()..]);
            }
            None => out.push_str(l),
        }
    }
    Some(out)
}

/// The payload type an `a=rtpmap:`, `a=fmtp:` or `a=rtcp-fb:` line is for.
fn attribute_pt(line: &str) -> Option<u8> {
    let rest = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
        .iter()
        .find_map(|p| line.strip_prefix(p))?;
    rest.split([' ', '\r', '\n']).next()?.parse().ok()
}

/// For one audio section: its new m= line and the payload types dropped.
fn section_edit(mline: &str, section: &[&str]) -> Option<(String, Vec<u8>)> {
    let words: Vec<&str> = mline.split(' ').collect();
    let formats: Vec<u8> = words
        .get(3..)?
        .iter()
        .filter_map(|w| w.parse().ok())
        .collect();
    let rtpmap = |pt: u8| -> Option<(String, u32)> {
        section.iter().find_map(|l| {
            let rest = l.strip_prefix(&format!("a=rtpmap:{pt} "))?;
            let mut enc = rest.trim_end().split('/');
            let name = enc.next()?.to_ascii_lowercase();
            Some((name, enc.next()?.parse().ok()?))
        })
    };
    let main_rate = formats.iter().find_map(|&pt| {
        let (name, rate) = rtpmap(pt)?;
        let aux = [
            "telephone-event",
            "red",
            "cn",
            "rtx",
            "ulpfec",
            "flexfec-03",
        ];
        (!aux.contains(&name.as_str())).then_some(rate)
    })?;
    let events: Vec<(u8, u32)> = formats
        .iter()
        .filter_map(|&pt| match rtpmap(pt)? {
            (name, rate) if name == "telephone-event" => Some((pt, rate)),
            _ => None,
        })
        .collect();
    if !events.iter().any(|&(_, r)| r == main_rate) {
        return None;
    }
    let drop: Vec<u8> = events
        .iter()
        .filter(|&&(_, r)| r != main_rate)
        .map(|&(pt, _)| pt)
        .collect();
    if drop.is_empty() {
        return None;
    }
    let kept: Vec<&str> = words[..3]
        .iter()
        .copied()
        .chain(
            words[3..]
                .iter()
                .copied()
                .filter(|w| w.parse::<u8>().map_or(true, |pt| !drop.contains(&pt))),
        )
        .collect();
    Some((kept.join(" "), drop))
}

#[cfg(test)]
mod tests {
    use super::match_telephone_events;

    const CHROME_SHAPED: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\n\
a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n\
a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\na=fmtp:110 0-15\r\n\
a=rtpmap:126 telephone-event/8000\r\na=fmtp:126 0-15\r\n";

    #[test]
    fn with_opus_only_the_48khz_event_stays() {
        let out = match_telephone_events(CHROME_SHAPED).expect("changed");
        assert!(
            out.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110\r\n"),
            "{out}"
        );
        assert!(out.contains("a=rtpmap:110 telephone-event/48000\r\na=fmtp:110 0-15\r\n"));
        assert!(!out.contains(":126 "), "{out}");
        assert!(out.contains("a=fmtp:63 111/111\r\n"), "RED untouched");
        let removed = " 126".len()
            + "a=rtpmap:126 telephone-event/8000\r\n".len()
            + "a=fmtp:126 0-15\r\n".len();
        assert_eq!(
            out.len(),
            CHROME_SHAPED.len() - removed,
            "nothing else changed"
        );
    }

    #[test]
    fn with_pcmu_first_the_8khz_event_stays() {
        let sdp = CHROME_SHAPED.replace("SAVPF 111 63 9 0 8 13 110 126", "SAVPF 0 111 110 126");
        let out = match_telephone_events(&sdp).expect("changed");
        assert!(out.contains("SAVPF 0 111 126\r\n"), "{out}");
        assert!(!out.contains("a=rtpmap:110 "));
        assert!(out.contains("a=rtpmap:126 telephone-event/8000\r\n"));
    }

    #[test]
    fn nothing_to_choose_changes_nothing() {
        // Only one event; or none at the main codec's rate; or no audio.
        let one = CHROME_SHAPED.replace(" 110 126\r\n", " 110\r\n").replace(
            "a=rtpmap:126 telephone-event/8000\r\na=fmtp:126 0-15\r\n",
            "",
        );
        assert_eq!(match_telephone_events(&one), None);
        let only_8k = CHROME_SHAPED.replace(" 110 126\r\n", " 126\r\n");
        assert_eq!(match_telephone_events(&only_8k), None);
        assert_eq!(
            match_telephone_events("v=0\r\nm=video 9 RTP/AVP 96\r\n"),
            None
        );
        assert_eq!(match_telephone_events(""), None);
    }

    #[test]
    fn line_endings_and_other_sections_are_kept() {
        let lf = CHROME_SHAPED.replace("\r\n", "\n")
            + "m=video 9 UDP/TLS/RTP/SAVPF 96\na=rtpmap:96 VP8/90000\n";
        let out = match_telephone_events(&lf).expect("changed");
        assert!(out.contains("SAVPF 111 63 9 0 8 13 110\n"), "{out}");
        assert!(out.ends_with("m=video 9 UDP/TLS/RTP/SAVPF 96\na=rtpmap:96 VP8/90000\n"));
        assert!(!out.contains('\r'));
    }
}
