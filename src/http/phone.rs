//! The newcomer's web phone on `GET /`: one static page built into the
//! binary (no CDN, no build step) that places a call through the call API
//! with the browser's own WebRTC, plays what comes back and charts the
//! call's live quality from `GET /v1/calls/{id}/stats`. In bridge mode it
//! dials a SIP user or URI (WHIP-to-SIP).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::ApiState;

const PAGE: &str = include_str!("phone.html");

pub async fn page(State(st): State<ApiState>) -> Response {
    let mode = if st.bridge { "bridge" } else { "demo" };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 media-src 'self' blob: mediastream:",
            ),
        ],
        PAGE.replace("{{MODE}}", mode),
    )
        .into_response()
}
