//! The HTTP call API, WHIP (RFC 9725): POST an SDP offer to create a call
//! (to the demo target, or `?to=` a SIP callee in bridge mode), DELETE the
//! Location to end it; the web phone on `/`. Who may call: [`access`].

pub mod access;
mod phone;
pub mod serve;

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
    pub access: Arc<access::Access>,
    /// `route.mode = "bridge"`: the web phone dials.
    pub bridge: bool,
    pub body_limits: BodyLimits,
}

/// A 4xx/5xx for bad API input: `{"error": ...}` (call creation keeps its
/// plain-text refusals, which WHIP clients show as they are).
pub(crate) fn api_error(status: StatusCode, message: impl Into<String>) -> Response {
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
    let access = state.access.clone();
    Router::new()
        .route("/", get(phone::page))
        .route("/index.html", get(phone::page))
        .route("/v1/calls", post(create_call).get(list_calls))
        .route(
            "/v1/calls/{id}",
            delete(delete_call).get(get_call).patch(patch_call),
        )
        .route("/v1/calls/{id}/stats", get(call_stats))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(access, access::guard))
        .with_state(state)
}

/// How large and how slow a request body may be.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: std::time::Duration,
}

/// Reads a request body: one declared larger than the limit is refused at
/// once (413, without waiting for it), one that does not arrive in time
/// gets 408.
async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    limits: BodyLimits,
) -> Result<Bytes, (Refusal, String)> {
    let too_large = || {
        (
            Refusal::BodyTooLarge,
            format!(
                "the body exceeds the length limit of {} bytes",
                limits.max_bytes
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_bytes as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(limits.timeout, axum::body::to_bytes(body, limits.max_bytes)).await {
        Err(_) => Err((
            Refusal::BodyTimeout,
            format!(
                "the body did not arrive within {} s",
                limits.timeout.as_secs()
            ),
        )),
        Ok(Err(e))
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) =>
        {
            Err(too_large())
        }
        Ok(Err(e)) => Err((Refusal::MalformedSdp, format!("reading the body: {e}"))),
        Ok(Ok(b)) => Ok(b),
    }
}

/// A refused call request: the status, Retry-After and the reason from
/// the refusal table, as JSON: `error` (what was wrong, one line),
/// `status`, `reason` (the metric label) and, when the SIP callee refused,
/// its `sip_status` and `sip_reason`.
fn refused(r: &Refused) -> Response {
    let d = r.kind.disposition();
    let status = StatusCode::from_u16(r.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = serde_json::json!({
        "error": r.detail,
        "status": status.as_u16(),
        "reason": d.label,
    });
    if let Some((sip_status, sip_reason)) = &r.callee {
        body["sip_status"] = (*sip_status).into();
        body["sip_reason"] = sip_reason.as_str().into();
    }
    let mut resp = (status, Json(body)).into_response();
    if let Some(s) = r.retry_after() {
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

/// `?to=` of a create request: the SIP user or URI to bridge to.
fn call_target(query: Option<&str>) -> Result<Option<String>, String> {
    let mut to = None;
    for (k, v) in query_pairs(query)? {
        match (k.as_str(), v) {
            ("to", Some(v)) if to.is_none() => to = Some(v),
            ("to", None) => return Err("to needs a value".into()),
            ("to", _) => return Err("to given twice".into()),
            (other, _) => return Err(format!("unknown query parameter {other:?} (known: to)")),
        }
    }
    Ok(to)
}

/// A query string's `name[=value]` pairs, percent-decoded (`+` stays a
/// plus: phone numbers carry it).
fn query_pairs(query: Option<&str>) -> Result<Vec<(String, Option<String>)>, String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', "%2B"))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| format!("{s:.40}: not UTF-8"))
    };
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => Ok((decode(k)?, Some(decode(v)?))),
            None => Ok((decode(pair)?, None)),
        })
        .collect()
}

async fn create_call(
    State(st): State<ApiState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let to = match call_target(query.as_deref()) {
        Ok(to) => to,
        Err(e) => return refuse(&st, Refusal::BadTarget, e),
    };
    let body = match read_body(&headers, body, st.body_limits).await {
        Ok(b) => b,
        Err((kind, e)) => return refuse(&st, kind, e),
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
    match st.driver.create_call(offer, to).await {
        Ok(made) => {
            let mut resp = (
                StatusCode::CREATED,
                [
                    (header::CONTENT_TYPE, "application/sdp".to_string()),
                    (header::LOCATION, format!("/v1/calls/{}", made.call)),
                ],
                made.answer,
            )
                .into_response();
            for l in st.access.links() {
                resp.headers_mut().append(header::LINK, l.clone());
            }
            resp
        }
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
    let pairs = match query_pairs(query.as_deref()) {
        Ok(p) => p,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, e),
    };
    for (k, v) in pairs {
        match (k.as_str(), v.as_deref().unwrap_or("true")) {
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

/// Trickle ICE and ICE restarts (RFC 9725 section 4.3): not supported, as
/// the RFC asks, with 405. rtcgw answers complete offers with complete
/// answers; a client gathers before it POSTs.
async fn patch_call(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    if st.calls.poll_item(&CallId(id.clone())).is_none() {
        return no_such_call(&id);
    }
    let mut r = api_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "trickle ICE and ICE restarts are not supported: POST a complete offer \
         (gathering done), and a new call for a new network path",
    );
    r.headers_mut().insert(
        header::ALLOW,
        axum::http::HeaderValue::from_static("GET, DELETE, OPTIONS"),
    );
    r
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
