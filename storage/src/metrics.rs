//! S3 request metrics, recorded through the `metrics` facade (a no-op until
//! a binary installs an exporter). Every attempt counts: the client's own
//! retries of a request show as more requests, and as retries.
//!
//! Labels are bounded: `op` is one of get/put/head/list/delete/copy/
//! multipart/other, `status` one of 2xx/3xx/4xx/5xx/error, `reason` one of
//! unreachable/timeout/reset/slowdown/5xx; `endpoint` (only on the allowed
//! rate) names the few S3 endpoints a process talks to.

use std::time::Duration;

use metrics::Unit;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use object_store::client::{HttpErrorKind, HttpRequest};

pub const REQUESTS_TOTAL: &str = "mo_br_s3_requests_total";
pub const REQUEST_DURATION_SECONDS: &str = "mo_br_s3_request_duration_seconds";
pub const RETRIES_TOTAL: &str = "mo_br_s3_retries_total";
pub const SLOWDOWNS_TOTAL: &str = "mo_br_s3_slowdowns_total";
pub const ALLOWED_RATE: &str = "mo_br_s3_allowed_requests_per_second";

/// Help texts for the S3 request metrics; binaries that export metrics call
/// it with their own `describe`.
pub fn describe() {
    describe_counter!(
        REQUESTS_TOTAL,
        "S3 requests sent (every attempt), by op (get/put/head/list/delete/copy/multipart/other) and status (2xx/3xx/4xx/5xx, or error when no answer came)."
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from sending an S3 request to its response headers, by op."
    );
    describe_counter!(
        RETRIES_TOTAL,
        "Failed S3 attempts of a kind that is retried while the retry window lasts, by op and reason (unreachable/timeout/reset/slowdown/5xx)."
    );
    describe_counter!(
        SLOWDOWNS_TOTAL,
        "S3 answers asking to slow down (503 SlowDown or 429); each burst halves the endpoint's allowed request rate."
    );
    describe_gauge!(
        ALLOWED_RATE,
        "Requests per second an S3 endpoint is held to after its SlowDowns; 0 when it is not held to any."
    );
    // Every counter at 0 for its known labels, so that increase() and
    // alerts see the first error after a start as an increase.
    counter!(SLOWDOWNS_TOTAL).absolute(0);
    for op in OPS {
        for status in STATUSES {
            counter!(REQUESTS_TOTAL, "op" => op, "status" => status).absolute(0);
        }
        for reason in REASONS {
            counter!(RETRIES_TOTAL, "op" => op, "reason" => reason).absolute(0);
        }
    }
}

/// The values of the `op`, `status` and `reason` labels.
const OPS: [&str; 8] = [
    "get",
    "put",
    "head",
    "list",
    "delete",
    "copy",
    "multipart",
    "other",
];
const STATUSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "error"];
const REASONS: [&str; 5] = ["unreachable", "timeout", "reset", "slowdown", "5xx"];

/// What an attempt came to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Status(u16),
    Transport(HttpErrorKind),
}

/// The `op` label of a request, from its method, query and headers.
pub(crate) fn op_of(req: &HttpRequest) -> &'static str {
    let query = req.uri().query().unwrap_or("");
    let has = |k: &str| {
        query
            .split('&')
            .any(|p| p == k || p.starts_with(&format!("{k}=")))
    };
    let multipart = has("uploadId") || has("uploads") || has("partNumber");
    match req.method().as_str() {
        "GET" if multipart => "multipart",
        "GET" if !query.is_empty() => "list",
        "GET" => "get",
        "HEAD" => "head",
        "PUT" if multipart => "multipart",
        "PUT" if req.headers().contains_key("x-amz-copy-source") => "copy",
        "PUT" => "put",
        "POST" if multipart => "multipart",
        "POST" if has("delete") => "delete",
        "DELETE" if multipart => "multipart",
        "DELETE" => "delete",
        _ => "other",
    }
}

pub(crate) fn request(op: &'static str, outcome: Outcome, took: Duration) {
    let status = match outcome {
        Outcome::Status(s) if s < 300 => "2xx",
        Outcome::Status(s) if s < 400 => "3xx",
        Outcome::Status(s) if s < 500 => "4xx",
        Outcome::Status(_) => "5xx",
        Outcome::Transport(_) => "error",
    };
    counter!(REQUESTS_TOTAL, "op" => op, "status" => status).increment(1);
    histogram!(REQUEST_DURATION_SECONDS, "op" => op).record(took.as_secs_f64());
    if let Some(reason) = retry_reason(outcome) {
        retry(op, reason);
    }
}

/// Why an attempt is retried, `None` if it is not.
pub(crate) fn retry_reason(outcome: Outcome) -> Option<&'static str> {
    match outcome {
        Outcome::Status(503 | 429) => Some("slowdown"),
        Outcome::Status(408) => Some("timeout"),
        Outcome::Status(s) if s >= 500 => Some("5xx"),
        Outcome::Status(_) => None,
        Outcome::Transport(HttpErrorKind::Connect) => Some("unreachable"),
        Outcome::Transport(HttpErrorKind::Timeout) => Some("timeout"),
        Outcome::Transport(HttpErrorKind::Request | HttpErrorKind::Interrupted) => Some("reset"),
        Outcome::Transport(_) => None,
    }
}

pub(crate) fn retry(op: &'static str, reason: &'static str) {
    counter!(RETRIES_TOTAL, "op" => op, "reason" => reason).increment(1);
}

pub(crate) fn slowdown() {
    counter!(SLOWDOWNS_TOTAL).increment(1);
}

pub(crate) fn allowed_rate(endpoint: &str, rate: f64) {
    gauge!(ALLOWED_RATE, "endpoint" => endpoint.to_string()).set(rate);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, copy: bool) -> HttpRequest {
        let mut b = http::Request::builder().method(method).uri(uri);
        if copy {
            b = b.header("x-amz-copy-source", "/b/k");
        }
        b.body(bytes::Bytes::new().into()).unwrap()
    }

    #[test]
    fn ops() {
        let u = "http://h:1/b/k";
        assert_eq!(op_of(&req("GET", u, false)), "get");
        assert_eq!(
            op_of(&req("GET", "http://h:1/b?list-type=2", false)),
            "list"
        );
        assert_eq!(op_of(&req("HEAD", u, false)), "head");
        assert_eq!(op_of(&req("PUT", u, false)), "put");
        assert_eq!(op_of(&req("PUT", u, true)), "copy");
        assert_eq!(
            op_of(&req("PUT", "http://h:1/b/k?partNumber=1&uploadId=x", true)),
            "multipart"
        );
        assert_eq!(
            op_of(&req("POST", "http://h:1/b/k?uploads", false)),
            "multipart"
        );
        assert_eq!(op_of(&req("POST", "http://h:1/b?delete", false)), "delete");
        assert_eq!(op_of(&req("DELETE", u, false)), "delete");
        assert_eq!(retry_reason(Outcome::Status(503)), Some("slowdown"));
        assert_eq!(retry_reason(Outcome::Status(500)), Some("5xx"));
        assert_eq!(retry_reason(Outcome::Status(404)), None);
        assert_eq!(
            retry_reason(Outcome::Transport(HttpErrorKind::Connect)),
            Some("unreachable")
        );
    }
}
