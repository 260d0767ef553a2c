//! The HTTP call API, WHIP-shaped (RFC 9725): POST an SDP offer to create a
//! call, DELETE the Location to end it.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};

use crate::call::{CallError, CallId, Calls};
use crate::rtc::RtcError;
use crate::sip::ua::SipCounters;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub calls: Arc<Calls>,
    pub sip: Arc<std::sync::Mutex<SipCounters>>,
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

async fn get_call(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    let calls = &st.calls;
    match calls.get(&CallId(id)) {
        Some(info) => Json(info).into_response(),
        None => (StatusCode::NOT_FOUND, "no such call\n").into_response(),
    }
}

async fn call_stats(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    let calls = &st.calls;
    match calls.stats(&CallId(id)).await {
        Some(stats) => Json(stats).into_response(),
        None => (StatusCode::NOT_FOUND, "no such call\n").into_response(),
    }
}

async fn delete_call(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    let calls = &st.calls;
    if calls.hangup(&CallId(id), "DELETE") {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::NOT_FOUND, "no such call\n").into_response()
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
                let _ = writeln!(out, "{name}{{{label}=\"{l}\"}} {v}");
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
        refused,
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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
