//! INFO in a dialog (RFC 6086): DTMF relay bodies become
//! [`UaEvent::Dtmf`]; an empty INFO is a keep-alive; other bodies get 415
//! with what we accept.

use std::time::Instant;

use super::{DialogRef, UaEvent, UserAgent};
use crate::sip::dtmf_info;
use crate::sip::message::{Request, Response};
use crate::sip::metrics::Rejection;
use crate::sip::tsx::TsxKey;

impl UserAgent {
    pub(super) fn info(&mut self, now: Instant, id: DialogRef, key: TsxKey, req: Request) {
        if req.body.is_empty() {
            return self.respond(now, &key, &req, 200, None, None);
        }
        let ctype = req
            .headers
            .get("Content-Type")
            .unwrap_or_default()
            .to_string();
        match dtmf_info::parse(&ctype, &req.body) {
            Ok((digit, duration_ms)) => {
                self.events.push_back(UaEvent::Dtmf {
                    dialog: id,
                    digit,
                    duration_ms,
                });
                self.respond(now, &key, &req, 200, None, None);
            }
            Err(e @ dtmf_info::DtmfInfoError::ContentType(_)) => {
                tracing::info!(dialog = %id, "INFO refused: {e}");
                self.reject_count(Rejection::InfoContentType);
                let mut resp = Response::to(&req, 415, "Unsupported Media Type", None);
                resp.headers.push("Accept", dtmf_info::ACCEPTED);
                self.send_response(now, &key, resp);
            }
            Err(e) => {
                tracing::info!(dialog = %id, "INFO refused: {e}");
                self.reject_count(Rejection::InfoMalformed);
                self.respond(now, &key, &req, 400, Some(&e.to_string()), None);
            }
        }
    }
}
