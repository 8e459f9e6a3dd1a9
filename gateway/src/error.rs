//! The one error shape of the API: `{"error": {"code", "message", "details"}}` with a status.

use std::borrow::Cow;

use mercato_core::domain::refusal::Refusal;
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Machine-readable: the API's own codes, or the one a worker refused a command with.
    pub code: Cow<'static, str>,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            details: None,
            retry_after_secs: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        e.retry_after_secs = Some(1);
        e
    }

    pub fn body(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(d) = &self.details {
            error["details"] = d.clone();
        }
        json!({ "error": error })
    }
}

impl From<Refusal> for ApiError {
    /// The one place a worker's refusal becomes an HTTP status: the match is exhaustive, so a
    /// new refusal cannot reach a client without a status chosen for it.
    fn from(refusal: Refusal) -> Self {
        let status = match &refusal {
            Refusal::InvalidSeatIds => StatusCode::BAD_REQUEST,
            Refusal::HoldNotFound
            | Refusal::EventNotFound
            | Refusal::CheckoutNotFound
            | Refusal::OrderNotFound
            | Refusal::ShipmentNotFound { .. } => StatusCode::NOT_FOUND,
            Refusal::HoldExpired | Refusal::CheckoutExpired => StatusCode::GONE,
            Refusal::HoldReleased
            | Refusal::HoldPurchased
            | Refusal::HoldBeingPurchased
            | Refusal::HoldContended
            | Refusal::CheckoutCancelled
            | Refusal::CheckoutPurchased
            | Refusal::CheckoutBeingPurchased
            | Refusal::AlreadyShipped { .. }
            | Refusal::NotCancellable
            | Refusal::NotDelivered
            | Refusal::ShipmentCancelled
            | Refusal::ShipmentNotShipped
            | Refusal::ShipmentAlreadyAdvanced { .. }
            | Refusal::RefundExceedsCharge { .. }
            | Refusal::SeatCapReached { .. }
            | Refusal::CheckoutCapReached { .. } => StatusCode::CONFLICT,
            Refusal::ReturnListsSkuTwice { .. }
            | Refusal::ReturnExceedsDelivered { .. }
            | Refusal::NotOnSale
            | Refusal::SalesClosed => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::Earlier { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::CONFLICT)
            }
        };
        let error = ApiError::new(status, refusal.code().to_owned(), refusal.to_string());
        match refusal {
            Refusal::SeatCapReached { held, cap } => {
                error.with_details(json!({"held": held, "max_seats_per_user": cap}))
            }
            Refusal::CheckoutCapReached { live, cap } => {
                error.with_details(json!({"live": live, "max_live_checkouts": cap}))
            }
            _ => error,
        }
    }
}

impl From<mercato_core::repo::RepoError> for ApiError {
    /// An outage is a 503 to retry; a record that cannot be read is a 500, since retrying
    /// reads it the same way.
    fn from(e: mercato_core::repo::RepoError) -> Self {
        use mercato_core::repo::RepoError;
        use mercato_core::store::StoreError;
        let report = mercato_core::store::report(&e);
        match &e {
            RepoError::Codec { .. }
            | RepoError::BadEvent { .. }
            | RepoError::Store(StoreError::Corrupt { .. }) => {
                tracing::error!(error = %report, "an unreadable record while serving a request");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "unreadable_record",
                    "a stored record this request needs cannot be read; operators have it in the logs",
                )
            }
            RepoError::Store(StoreError::Invalid { .. }) => {
                tracing::error!(error = %report, "the store refused a request the gateway made");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_refused",
                    "the store refused this request",
                )
            }
            _ => {
                tracing::warn!(error = %report, "storage error while serving a request");
                ApiError::unavailable(
                    "store_unavailable",
                    "the store is unavailable; try again shortly",
                )
            }
        }
    }
}

impl From<mercato_core::store::StoreError> for ApiError {
    fn from(e: mercato_core::store::StoreError) -> Self {
        mercato_core::repo::RepoError::from(e).into()
    }
}

impl From<mercato_core::coord::CoordError> for ApiError {
    fn from(e: mercato_core::coord::CoordError) -> Self {
        ApiError::unavailable("coord_unavailable", e.to_string())
    }
}

impl From<mercato_core::bus::BusError> for ApiError {
    fn from(e: mercato_core::bus::BusError) -> Self {
        tracing::warn!(error = %e, "bus error while serving a request");
        ApiError::unavailable(
            "bus_unavailable",
            "the command bus is unavailable; try again shortly",
        )
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let mut resp =
            warp::reply::with_status(warp::reply::json(&self.body()), self.status).into_response();
        if let Some(secs) = self.retry_after_secs {
            if let Ok(v) = secs.to_string().parse() {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp
    }
}

/// A successful answer: a status and a JSON body (none for 204).
#[derive(Debug, Clone)]
pub struct ApiReply {
    pub status: StatusCode,
    pub body: Option<ReplyBody>,
    /// Headers beyond the content type (`ETag`, `Cache-Control`).
    pub headers: Vec<(warp::http::header::HeaderName, String)>,
}

#[derive(Debug, Clone)]
pub enum ReplyBody {
    Json(Value),
    /// JSON text made elsewhere and shared (a cached search answer): sent as it is.
    Raw(std::sync::Arc<str>),
}

impl std::fmt::Display for ReplyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyBody::Json(v) => write!(f, "{v}"),
            ReplyBody::Raw(text) => f.write_str(text),
        }
    }
}

impl ApiReply {
    pub fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body: Some(ReplyBody::Json(body)),
            headers: Vec::new(),
        }
    }
    pub fn created(body: Value) -> Self {
        Self {
            status: StatusCode::CREATED,
            body: Some(ReplyBody::Json(body)),
            headers: Vec::new(),
        }
    }
    pub fn accepted(body: Value) -> Self {
        Self {
            status: StatusCode::ACCEPTED,
            body: Some(ReplyBody::Json(body)),
            headers: Vec::new(),
        }
    }
    /// 200 with JSON text shared with other requests.
    pub fn raw(body: std::sync::Arc<str>) -> Self {
        Self {
            status: StatusCode::OK,
            body: Some(ReplyBody::Raw(body)),
            headers: Vec::new(),
        }
    }

    /// `body`, with a strong `ETag` of its bytes and `Cache-Control: no-cache` (keep it, ask
    /// again each time); 304 without a body when `if_none_match` names that tag already.
    pub fn revalidated(body: Value, if_none_match: Option<&str>) -> Self {
        use sha2::Digest;
        let text = body.to_string();
        let digest = sha2::Sha256::digest(text.as_bytes());
        let etag = format!("\"{}\"", hex::encode(&digest[..16]));
        let known = if_none_match.is_some_and(|given| {
            given
                .split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        });
        let headers = vec![
            (warp::http::header::ETAG, etag),
            (warp::http::header::CACHE_CONTROL, "no-cache".to_owned()),
        ];
        if known {
            return Self {
                status: StatusCode::NOT_MODIFIED,
                body: None,
                headers,
            };
        }
        Self {
            status: StatusCode::OK,
            body: Some(ReplyBody::Raw(text.into())),
            headers,
        }
    }

    pub fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            body: None,
            headers: Vec::new(),
        }
    }
}

impl Reply for ApiReply {
    fn into_response(self) -> Response {
        let headers = self.headers;
        let mut resp = match self.body {
            Some(ReplyBody::Json(b)) => {
                warp::reply::with_status(warp::reply::json(&b), self.status).into_response()
            }
            Some(ReplyBody::Raw(text)) => {
                let mut resp = Response::new(text.to_string().into());
                *resp.status_mut() = self.status;
                resp.headers_mut().insert(
                    warp::http::header::CONTENT_TYPE,
                    warp::http::HeaderValue::from_static("application/json"),
                );
                resp
            }
            None => warp::reply::with_status(warp::reply(), self.status).into_response(),
        };
        for (name, value) in headers {
            if let Ok(value) = warp::http::HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, value);
            }
        }
        resp
    }
}

pub type ApiResult = Result<ApiReply, ApiError>;

/// Parses a JSON body into `T`, with errors a client can act on.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "malformed_json",
            "the request needs a JSON body",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let code = if e.is_data() {
            "invalid_request"
        } else {
            "malformed_json"
        };
        ApiError::bad_request(code, e.to_string())
    })
}
