//! The HTTP call API, WHIP-shaped (RFC 9725): POST an SDP offer to create a
//! call, DELETE the Location to end it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use rtcgw_control::{CallMetrics, EndReason, Refusal, Refused};
use rtcgw_proto::stats::model::LegKind;

use crate::driver;
use crate::media::{CallId, Calls};
use crate::metrics::Metrics;
use crate::stats::poller::StatsService;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// Call creation goes through call control, like a SIP INVITE.
    pub driver: driver::Handle,
    /// What calls there are, as the media side has them.
    pub calls: Arc<Calls>,
    pub stats: Arc<StatsService>,
    pub metrics: Arc<Metrics>,
    /// Refusals before an offer reaches call control (body, content type).
    pub refusals: CallMetrics,
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

/// A refused call request: the status, Retry-After and the reason from
/// the refusal table, as plain text (WHIP clients show it as it is).
fn refused(r: &Refused) -> Response {
    let d = r.kind.disposition();
    let status = StatusCode::from_u16(d.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", r.detail),
    )
        .into_response();
    if let Some(s) = d.retry_after_s {
        resp.headers_mut().insert(header::RETRY_AFTER, s.into());
    }
    resp
}

/// Refused here, before call control sees the request: counted like its
/// refusals.
fn refuse(st: &ApiState, kind: Refusal, detail: impl Into<String>) -> Response {
    let r = Refused::new(kind, detail);
    tracing::warn!(
        status = r.kind.disposition().http_status,
        "call refused: {r}"
    );
    st.refusals.refuse(kind);
    refused(&r)
}

async fn create_call(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let kind = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Refusal::BodyTooLarge
            } else {
                Refusal::MalformedSdp
            };
            return refuse(&st, kind, e.body_text());
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
            &st,
            Refusal::ContentType,
            format!("Content-Type must be application/sdp, not {ctype:?}"),
        );
    }
    let Ok(offer) = String::from_utf8(body.to_vec()) else {
        return refuse(&st, Refusal::NotUtf8, "SDP must be UTF-8 text");
    };
    match st.driver.create_call(offer).await {
        Ok(made) => (
            StatusCode::CREATED,
            [
                (header::CONTENT_TYPE, "application/sdp".to_string()),
                (header::LOCATION, format!("/v1/calls/{}", made.call)),
            ],
            made.answer,
        )
            .into_response(),
        // Counted and logged by call control.
        Err(r) => refused(&r),
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
    info: crate::media::CallInfo,
    /// The legs with their codecs, as last polled (kinds only before the
    /// first poll).
    legs: Vec<LegView>,
}

async fn get_call(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    let Some((info, handles)) = st.calls.poll_item(&CallId(id.clone())) else {
        return no_such_call(&id);
    };
    let polled = st.stats.legs_seen(&id);
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
    if st.calls.hangup(&CallId(id.clone()), EndReason::Delete) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        no_such_call(&id)
    }
}

/// Prometheus text format, from the one registry.
async fn metrics(State(st): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        st.metrics.render(),
    )
        .into_response()
}
