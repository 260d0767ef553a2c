//! The HTTP call API, WHIP-shaped (RFC 9725): POST an SDP offer to create a
//! call, DELETE the Location to end it.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};

use crate::call::{CallError, CallId, Calls};
use crate::rtc::RtcError;
use crate::stats::collect::{Histogram, LegTotals};
use crate::stats::poller::StatsService;
use rtcgw_proto::sip::ua::SipCounters;
use rtcgw_proto::stats::model::LegKind;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub calls: Arc<Calls>,
    pub sip: Arc<std::sync::Mutex<SipCounters>>,
    pub stats: Arc<StatsService>,
}

/// A 4xx/5xx for bad API input: `{"error": ...}` (call creation keeps its
/// plain-text refusals, which WHIP clients show as they are).
fn api_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": message.into(), "status": status.as_u16() })),
    )
        .into_response()
}

fn no_such_call(id: &str) -> Response {
    api_error(StatusCode::NOT_FOUND, format!("no such call: {id}"))
}

pub fn router(state: ApiState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/calls", post(create_call).get(list_calls))
        .route("/v1/calls/{id}", delete(delete_call).get(get_call))
        .route("/v1/calls/{id}/stats", get(call_stats))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

fn refuse(calls: &Calls, status: StatusCode, reason: &'static str, detail: String) -> Response {
    calls.refuse(reason);
    tracing::warn!(status = status.as_u16(), reason, "call refused: {detail}");
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{detail}\n"),
    )
        .into_response()
}

async fn create_call(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let calls = &st.calls;
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let status = e.status();
            let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "bad_body"
            };
            return refuse(calls, status, reason, e.body_text());
        }
    };
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if ctype != "application/sdp" {
        return refuse(
            calls,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            format!("Content-Type must be application/sdp, not {:?}", ctype),
        );
    }
    let Ok(offer) = std::str::from_utf8(&body) else {
        return refuse(
            calls,
            StatusCode::BAD_REQUEST,
            "not_utf8",
            "SDP must be UTF-8 text".into(),
        );
    };
    match calls.create_demo(offer).await {
        Ok((id, answer)) => (
            StatusCode::CREATED,
            [
                (header::CONTENT_TYPE, "application/sdp".to_string()),
                (header::LOCATION, format!("/v1/calls/{id}")),
            ],
            answer,
        )
            .into_response(),
        Err(CallError::Offer(e)) => {
            refuse(calls, StatusCode::BAD_REQUEST, e.reason(), e.to_string())
        }
        Err(CallError::Capacity(n)) => {
            let mut r = refuse(
                calls,
                StatusCode::SERVICE_UNAVAILABLE,
                "capacity",
                format!("at capacity ({n} calls)"),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, "5".parse().expect("static header"));
            r
        }
        Err(CallError::Legacy(e)) => {
            refuse(calls, StatusCode::BAD_REQUEST, "legacy_sdp", e.to_string())
        }
        Err(CallError::Media(e)) => refuse(calls, StatusCode::SERVICE_UNAVAILABLE, "media", e),
        Err(CallError::Draining) => {
            let mut r = refuse(
                calls,
                StatusCode::SERVICE_UNAVAILABLE,
                "draining",
                "shutting down".into(),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, "30".parse().expect("static header"));
            r
        }
        Err(CallError::NoSuchCall) => refuse(
            calls,
            StatusCode::NOT_FOUND,
            "no_such_call",
            "no such call".into(),
        ),
        Err(CallError::Rtc(e)) => {
            let (status, reason) = match &e {
                RtcError::InvalidSdp(_) => (StatusCode::BAD_REQUEST, "invalid_sdp"),
                RtcError::Unsupported(_) | RtcError::InvalidState(_) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "unanswerable")
                }
                RtcError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "ice_timeout"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            };
            refuse(calls, status, reason, e.to_string())
        }
    }
}

async fn list_calls(State(st): State<ApiState>) -> Response {
    let calls = &st.calls;
    Json(calls.list()).into_response()
}

/// One leg of a call as GET /v1/calls/{id} shows it.
#[derive(serde::Serialize)]
struct LegView {
    leg: LegKind,
    codec: Option<String>,
}

#[derive(serde::Serialize)]
struct CallView {
    #[serde(flatten)]
    info: crate::call::CallInfo,
    /// The legs with their codecs, as last polled (kinds only before the
    /// first poll).
    legs: Vec<LegView>,
}

async fn get_call(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    let Some((info, handles)) = st.calls.poll_item(&CallId(id.clone())) else {
        return no_such_call(&id);
    };
    let polled = st.stats.collector.lock().expect("collector lock").legs(&id);
    let mut legs: Vec<LegView> = polled
        .into_iter()
        .map(|(leg, codec)| LegView { leg, codec })
        .collect();
    for (present, kind) in [
        (handles.webrtc.is_some(), LegKind::Webrtc),
        (handles.legacy.is_some(), LegKind::Legacy),
    ] {
        if present && !legs.iter().any(|l| l.leg == kind) {
            legs.push(LegView {
                leg: kind,
                codec: None,
            });
        }
    }
    legs.sort_by_key(|l| l.leg);
    Json(CallView { info, legs }).into_response()
}

/// The call's stats record now (`?raw=true`: libwebrtc's getStats report
/// as it comes, plus the legacy leg as a "legacy-rtp" entry).
async fn call_stats(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let mut raw = false;
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=').unwrap_or((pair, "true")) {
            ("raw", "true" | "1") => raw = true,
            ("raw", "false" | "0") => raw = false,
            ("raw", v) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    format!("raw={v}: expected true or false"),
                );
            }
            (k, _) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter {k:?} (known: raw)"),
                );
            }
        }
    }
    let cid = CallId(id.clone());
    if raw {
        return match st.calls.raw_stats(&cid).await {
            Some(stats) => Json(stats).into_response(),
            None => no_such_call(&id),
        };
    }
    match st.calls.poll_item(&cid) {
        Some((info, legs)) => Json(st.stats.live(&info, &legs).await).into_response(),
        None => no_such_call(&id),
    }
}

async fn delete_call(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    if st.calls.hangup(&CallId(id.clone()), "DELETE") {
        StatusCode::NO_CONTENT.into_response()
    } else {
        no_such_call(&id)
    }
}

/// A label value escaped for the text format (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_set(names: &[&str], values: &[String], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some((n, v)) = extra {
        parts.push(format!("{n}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// A metric family whose samples carry any number of labels.
fn family_labeled<V: std::fmt::Display>(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    labels: &[&str],
    samples: impl IntoIterator<Item = (Vec<String>, V)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (values, v) in samples {
        let _ = writeln!(out, "{name}{} {v}", label_set(labels, &values, None));
    }
}

/// A histogram family: _bucket (cumulative, with +Inf), _sum, _count.
fn histogram_family(
    out: &mut String,
    (name, help): (&str, &str),
    labels: &[&str],
    samples: impl IntoIterator<Item = (Vec<String>, Histogram)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (values, h) in samples {
        for (le, n) in h.cumulative() {
            let le = le.to_string();
            let l = label_set(labels, &values, Some(("le", &le)));
            let _ = writeln!(out, "{name}_bucket{l} {n}");
        }
        let l = label_set(labels, &values, Some(("le", "+Inf")));
        let _ = writeln!(out, "{name}_bucket{l} {}", h.count);
        let l = label_set(labels, &values, None);
        let _ = writeln!(out, "{name}_sum{l} {}\n{name}_count{l} {}", h.sum, h.count);
    }
}

/// One metric family in Prometheus text format: HELP, TYPE, then a sample
/// per (label value, value); with `label` None, one unlabelled sample.
fn family<V: std::fmt::Display>(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    label: Option<&str>,
    samples: impl IntoIterator<Item = (String, V)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (l, v) in samples {
        match label {
            Some(label) => {
                let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {v}", escape(&l));
            }
            None => {
                let _ = writeln!(out, "{name} {v}");
            }
        }
    }
}

/// Prometheus text format (the full stats model comes with the stats work).
async fn metrics(State(st): State<ApiState>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let calls = &st.calls;
    let one = |v: u64| [(String::new(), v)];
    let mut out = String::new();
    family(
        &mut out,
        ("rtcgw_calls_active", "gauge", "Calls in progress."),
        None,
        one(calls.len() as u64),
    );
    family(
        &mut out,
        ("rtcgw_calls_ended_total", "counter", "Calls ended."),
        None,
        one(calls.ended.load(Relaxed)),
    );
    let mut refused: Vec<(String, u64)> = calls
        .refused
        .lock()
        .expect("refused lock")
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    refused.sort();
    family(
        &mut out,
        (
            "rtcgw_calls_refused_total",
            "counter",
            "Call requests refused, by reason.",
        ),
        Some("reason"),
        refused.iter().cloned(),
    );
    family(
        &mut out,
        (
            "rtcgw_dtmf_digits_total",
            "counter",
            "RFC 4733 digits received on legacy legs.",
        ),
        None,
        one(calls.dtmf_digits.load(Relaxed)),
    );
    let dropped: Vec<(String, u64)> = calls
        .rtp_dropped
        .lock()
        .expect("dropped lock")
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    family(
        &mut out,
        (
            "rtcgw_rtp_dropped_total",
            "counter",
            "RTP/RTCP datagrams dropped on legacy legs (ended calls), by reason.",
        ),
        Some("reason"),
        dropped,
    );
    family(
        &mut out,
        (
            "rtcgw_legacy_ports_in_use",
            "gauge",
            "RTP port pairs leased.",
        ),
        None,
        one(calls.ports_in_use() as u64),
    );
    let m = &calls.media_frames;
    for (name, help, v) in [
        (
            "rtcgw_media_frames_total",
            "10 ms frames due on legacy and bridged legs.",
            m.frames.load(Relaxed),
        ),
        (
            "rtcgw_media_late_frames_total",
            "Of those, handled a tick or more late.",
            m.late.load(Relaxed),
        ),
        (
            "rtcgw_audio_clock_stalls_total",
            "Audio clock stalls over 100 ms (ticks skipped).",
            calls.clock_counters().late_ticks,
        ),
    ] {
        family(&mut out, (name, "counter", help), None, one(v));
    }
    let sip = st.sip.lock().expect("sip counters").clone();
    family(
        &mut out,
        (
            "rtcgw_sip_requests_total",
            "counter",
            "SIP requests received (BYE(out): sent), by method.",
        ),
        Some("method"),
        sip.requests.iter().map(|(m, n)| (m.clone(), *n)),
    );
    family(
        &mut out,
        (
            "rtcgw_sip_responses_total",
            "counter",
            "SIP responses sent, by code.",
        ),
        Some("code"),
        sip.responses.iter().map(|(c, n)| (c.to_string(), *n)),
    );
    family(
        &mut out,
        (
            "rtcgw_sip_rejected_total",
            "counter",
            "SIP input rejected or dropped, by reason.",
        ),
        Some("reason"),
        sip.rejected.iter().map(|(r, n)| (r.to_string(), *n)),
    );
    stats_families(&mut out, &st, &refused);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// One received-side figure of a leg's totals.
type LegFigure = fn(&LegTotals) -> f64;

/// The stats collector's families: calls by outcome, received-side
/// counters per leg, MOS histograms.
fn stats_families(out: &mut String, st: &ApiState, refused: &[(String, u64)]) {
    use std::sync::atomic::Ordering::Relaxed;
    let t = st
        .stats
        .collector
        .lock()
        .expect("collector lock")
        .totals
        .clone();
    let mut outcomes: Vec<(Vec<String>, u64)> = t
        .calls
        .iter()
        .map(|(o, n)| (vec![o.as_str().to_string()], *n))
        .collect();
    outcomes.push((vec!["refused".into()], refused.iter().map(|(_, n)| n).sum()));
    family_labeled(
        out,
        (
            "rtcgw_calls_total",
            "counter",
            "Calls by outcome: ended calls by how they ended, plus refused call requests.",
        ),
        &["outcome"],
        outcomes,
    );
    let legs = |f: LegFigure| {
        t.legs
            .iter()
            .map(|(k, v)| (vec![k.as_str().to_string()], f(v)))
            .collect::<Vec<_>>()
    };
    let per_leg: [(&str, &str, LegFigure); 7] = [
        (
            "rtcgw_packets_received_total",
            "RTP packets received, by leg.",
            |v| v.packets_received as f64,
        ),
        (
            "rtcgw_packets_lost_total",
            "RTP packets lost on the way to rtcgw (RFC 3550 expected - received), by leg.",
            |v| v.packets_lost as f64,
        ),
        (
            "rtcgw_jitter_buffer_delay_seconds_total",
            "Sum over played-out samples of their jitter-buffer delay, by leg; divide by rtcgw_jitter_buffer_emitted_samples_total for the mean.",
            |v| v.jitter_buffer_delay_s,
        ),
        (
            "rtcgw_jitter_buffer_emitted_samples_total",
            "Samples played out of the jitter buffer, by leg.",
            |v| v.jitter_buffer_emitted as f64,
        ),
        (
            "rtcgw_received_samples_total",
            "Samples played out, real or concealed, by leg.",
            |v| v.samples_received as f64,
        ),
        (
            "rtcgw_concealed_samples_total",
            "Samples NetEq concealed (lost or late audio), by leg.",
            |v| v.concealed_samples as f64,
        ),
        (
            "rtcgw_concealment_events_total",
            "Concealment events (runs of concealed samples), by leg.",
            |v| v.concealment_events as f64,
        ),
    ];
    for (name, help, f) in per_leg {
        family_labeled(out, (name, "counter", help), &["leg"], legs(f));
    }
    let hist = |m: &std::collections::BTreeMap<_, Histogram>| {
        m.iter()
            .map(
                |((leg, dir), h): (
                    &(LegKind, rtcgw_proto::stats::model::Direction),
                    &Histogram,
                )| {
                    (
                        vec![leg.as_str().to_string(), dir.as_str().to_string()],
                        h.clone(),
                    )
                },
            )
            .collect::<Vec<_>>()
    };
    histogram_family(
        out,
        (
            "rtcgw_mos",
            "E-model (ITU-T G.107) MOS estimate per call, leg, direction and poll interval.",
        ),
        &["leg", "direction"],
        hist(&t.mos),
    );
    histogram_family(
        out,
        (
            "rtcgw_call_mos",
            "Mean E-model MOS of ended calls, per leg and direction.",
        ),
        &["leg", "direction"],
        hist(&t.call_mos),
    );
    family_labeled(
        out,
        (
            "rtcgw_stats_polls_total",
            "counter",
            "Call stats records made by the poller.",
        ),
        &[],
        [(vec![], t.polls)],
    );
    let dropped = st
        .stats
        .exporter
        .as_ref()
        .map_or(0, |x| x.dropped.load(Relaxed) + x.failed.load(Relaxed));
    family_labeled(
        out,
        (
            "rtcgw_stats_export_dropped_total",
            "counter",
            "Stats export lines dropped (queue full) or not written (I/O error).",
        ),
        &[],
        [(vec![], dropped)],
    );
}
