//! Session timers (RFC 4028): a dialog is refreshed by re-INVITE or UPDATE
//! every half interval by the side named refresher; the other side ends the
//! dialog (BYE) when no refresh came in time. Sans-IO: negotiation and
//! deadlines only; the user agent sends the requests.

use std::time::{Duration, Instant};

/// rtcgw's settings (config `[sip] session_timers`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimerConfig {
    /// The interval we ask for (Session-Expires), seconds.
    pub expires: u32,
    /// The smallest interval we accept (Min-SE), seconds; RFC 4028 floor 90.
    pub min_se: u32,
}

/// Who refreshes, as the `refresher` parameter names it: the UAC or the UAS
/// of the transaction that set the timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

impl Refresher {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uac => "uac",
            Self::Uas => "uas",
        }
    }
}

/// A Session-Expires header value (section 4): `1800;refresher=uac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    pub interval: u32,
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(';');
        let interval = parts.next()?.trim().parse().ok()?;
        let refresher = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("refresher"))
            .and_then(|(_, v)| match v.trim().to_ascii_lowercase().as_str() {
                "uac" => Some(Refresher::Uac),
                "uas" => Some(Refresher::Uas),
                _ => None,
            });
        Some(Self {
            interval,
            refresher,
        })
    }

    pub fn header(&self) -> String {
        match self.refresher {
            Some(r) => format!("{};refresher={}", self.interval, r.as_str()),
            None => self.interval.to_string(),
        }
    }
}

/// What a UAS answers to an INVITE's session timer request (section 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UasDecision {
    /// The caller neither asks for nor supports timers.
    NoTimer,
    /// 422 Session Interval Too Small, with our Min-SE.
    TooSmall { min_se: u32 },
    /// The 2xx carries `Session-Expires` (and `Require: timer` when the
    /// caller supports timers).
    Timer {
        expires: SessionExpires,
        require: bool,
    },
}

/// Section 9: the interval is the caller's (never below our Min-SE, may be
/// lowered to ours); the caller's refresher choice stands; otherwise the
/// caller refreshes when it supports timers, else we do.
pub fn uas_decide(
    cfg: &SessionTimerConfig,
    requested: Option<SessionExpires>,
    caller_supports: bool,
) -> UasDecision {
    let Some(req) = requested else {
        if !caller_supports {
            return UasDecision::NoTimer;
        }
        return UasDecision::Timer {
            expires: SessionExpires {
                interval: cfg.expires,
                refresher: Some(Refresher::Uac),
            },
            require: true,
        };
    };
    if req.interval < cfg.min_se {
        return UasDecision::TooSmall { min_se: cfg.min_se };
    }
    let refresher = req.refresher.unwrap_or(if caller_supports {
        Refresher::Uac
    } else {
        Refresher::Uas
    });
    UasDecision::Timer {
        expires: SessionExpires {
            interval: req.interval.min(cfg.expires.max(cfg.min_se)),
            refresher: Some(refresher),
        },
        require: caller_supports,
    }
}

/// A running session timer of one dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    pub interval: Duration,
    /// We send the refreshes; otherwise we wait for them.
    pub we_refresh: bool,
    pub due: Instant,
}

impl SessionTimer {
    pub fn new(now: Instant, interval_s: u32, we_refresh: bool) -> Self {
        let mut t = Self {
            interval: Duration::from_secs(u64::from(interval_s)),
            we_refresh,
            due: now,
        };
        t.refreshed(now);
        t
    }

    /// A refresh went through: the refresher's next one is due at half the
    /// interval; the other side gives up at the interval minus
    /// min(32 s, a third of it) (section 10).
    pub fn refreshed(&mut self, now: Instant) {
        self.due = if self.we_refresh {
            now + self.interval / 2
        } else {
            now + self.interval - (self.interval / 3).min(Duration::from_secs(32))
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: SessionTimerConfig = SessionTimerConfig {
        expires: 1800,
        min_se: 90,
    };

    #[test]
    fn header_round_trip_and_uas_choices() {
        let se = SessionExpires::parse("600 ; Refresher=UAS").unwrap();
        assert_eq!(se.interval, 600);
        assert_eq!(se.refresher, Some(Refresher::Uas));
        assert_eq!(se.header(), "600;refresher=uas");
        assert_eq!(SessionExpires::parse("x"), None);
        assert_eq!(uas_decide(&CFG, None, false), UasDecision::NoTimer);
        assert_eq!(
            uas_decide(&CFG, SessionExpires::parse("60"), true),
            UasDecision::TooSmall { min_se: 90 }
        );
        // A caller that supports timers and names nobody refreshes itself.
        let UasDecision::Timer { expires, require } =
            uas_decide(&CFG, SessionExpires::parse("3600"), true)
        else {
            panic!()
        };
        assert_eq!(expires.header(), "1800;refresher=uac");
        assert!(require);
        // A proxy-inserted Session-Expires for a caller without timers: we refresh.
        let UasDecision::Timer { expires, require } =
            uas_decide(&CFG, SessionExpires::parse("300"), false)
        else {
            panic!()
        };
        assert_eq!(expires.header(), "300;refresher=uas");
        assert!(!require);
    }

    #[test]
    fn deadlines() {
        let now = Instant::now();
        let t = SessionTimer::new(now, 1800, true);
        assert_eq!(t.due - now, Duration::from_secs(900));
        let t = SessionTimer::new(now, 1800, false);
        assert_eq!(t.due - now, Duration::from_secs(1768));
        let t = SessionTimer::new(now, 90, false);
        assert_eq!(t.due - now, Duration::from_secs(60));
    }
}
