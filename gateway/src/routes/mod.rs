//! The HTTP plumbing every route shares: one filter takes the request apart, finds its route in
//! [`table::ROUTES`], reads a bounded body, calls the handler and records it in the metrics;
//! one JSON error shape covers everything, including what warp itself rejects.

pub(crate) mod accounts;
mod admin;
mod best_seats;
mod body;
mod catalog;
mod dead_letters;
mod events;
mod fulfilment;
mod holds;
mod ops;
mod orders;
mod queue;
mod queue_stream;
mod seat_map;
mod seat_stream;
mod shop;
mod table;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::error::{ApiError, ApiResult};
use crate::rate_limit::{self, Limited};
use crate::state::AppState;
use body::{drain, read_limited, BodyRefused, DRAIN_LIMIT};
use table::{header, Body, Call, Route, ROUTES};

type Query = HashMap<String, String>;

pub(crate) use events::fresh_availability;

/// Records the request in the metrics and turns the result into a response.
fn finish(state: &AppState, route: &'static str, started: Instant, result: ApiResult) -> Response {
    let response = match result {
        Ok(reply) => reply.into_response(),
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(route, code = %e.code, message = %e.message, "request failed");
            }
            e.into_response()
        }
    };
    state.metrics.observe(
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let st = {
        let state = Arc::clone(&state);
        warp::any().map(move || Arc::clone(&state))
    };
    // The client's address: warp's for plain connections, ours (tls.rs) for TLS ones.
    let peer = warp::addr::remote()
        .and(warp::ext::optional::<crate::tls::Peer>())
        .map(|plain: Option<SocketAddr>, tls: Option<crate::tls::Peer>| plain.or(tls.map(|p| p.0)));
    let api = warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(peer)
        .and(warp::body::stream())
        .and(st.clone())
        .then(
            |method: Method,
             path: FullPath,
             query: String,
             headers: HeaderMap,
             peer: Option<SocketAddr>,
             stream,
             s| async move {
                let request = Request {
                    method,
                    path: path.as_str(),
                    query,
                    headers,
                    peer,
                };
                dispatch(s, request, stream).await
            },
        );
    // Server-Sent Events stream rather than answer: outside the route table.
    let seat_stream = warp::path!("api" / "v1" / "events" / String / "seats" / "stream")
        .and(warp::get())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("last-event-id"))
        .and(st.clone())
        .then(
            |event: String, query: String, last: Option<String>, s: Arc<AppState>| async move {
                let opened = match serde_urlencoded::from_str::<Query>(&query) {
                    Ok(q) => {
                        let section = q.get("section").map(String::as_str);
                        seat_stream::open(s, &event, section, last.as_deref()).await
                    }
                    Err(_) => Err(ApiError::bad_request(
                        "invalid_query",
                        "the query string is malformed",
                    )),
                };
                opened.unwrap_or_else(Reply::into_response)
            },
        );
    let queue_stream = warp::path!("api" / "v1" / "events" / String / "queue" / String / "stream")
        .and(warp::get())
        .and(warp::header::optional::<String>("authorization"))
        .and(st.clone())
        .then(
            |event: String, ticket: String, auth: Option<String>, s: Arc<AppState>| async move {
                queue_stream::open(s, event, ticket, auth)
                    .await
                    .unwrap_or_else(Reply::into_response)
            },
        );
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| crate::error::ApiReply::ok(serde_json::json!({"status": "ok"})).into_response());
    let readyz = warp::path!("readyz").and(warp::get()).and(st.clone()).then(
        |s: Arc<AppState>| async move {
            ops::ready(&s)
                .await
                .map_or_else(Reply::into_response, Reply::into_response)
        },
    );
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(st)
        .map(|s: Arc<AppState>| {
            let mut r = s.metrics.render().into_response();
            if let Ok(v) = "application/openmetrics-text; version=1.0.0; charset=utf-8".parse() {
                r.headers_mut().insert("content-type", v);
            }
            r
        });
    seat_stream
        .or(queue_stream)
        .unify()
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(metrics)
        .unify()
        .or(api)
        .unify()
        .recover(recover)
        .unify()
}

/// What a request brought, before its body.
struct Request<'a> {
    method: Method,
    path: &'a str,
    query: String,
    headers: HeaderMap,
    /// The connection's peer, when the transport has one.
    peer: Option<SocketAddr>,
}

/// Finds the request's route and runs it: 404 when no route has the path, 405 when one has it
/// for another method.
async fn dispatch<S, B>(state: Arc<AppState>, request: Request<'_>, stream: S) -> Response
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
    let mut other_method = false;
    for route in ROUTES {
        let Some(params) = route.matches(&segments) else {
            continue;
        };
        if route.method != request.method {
            other_method = true;
            continue;
        }
        let started = Instant::now();
        let result = run(route, &state, request, params, stream).await;
        return finish(&state, route.name, started, result);
    }
    let e = if other_method {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that method",
        )
    } else {
        ApiError::not_found("not_found", "no such route")
    };
    e.into_response()
}

async fn run<S, B>(
    route: &Route,
    state: &Arc<AppState>,
    request: Request<'_>,
    params: Vec<String>,
    stream: S,
) -> ApiResult
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    let Request {
        path,
        query,
        headers,
        peer,
        ..
    } = request;
    let announced = header(&headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    let checked = match route.guard {
        Some(guard) => guard(state, header(&headers, "authorization")),
        None => Ok(()),
    };
    let checked = match (checked, route.limit) {
        (Ok(()), Some(limited)) => check_rate_limit(state, limited, peer, &headers).await,
        (checked, _) => checked,
    };
    if let Err(refused) = checked {
        if announced.is_none_or(|n| n <= DRAIN_LIMIT) {
            drain(stream).await;
        }
        return Err(refused);
    }
    let body = match route.body {
        Body::Ignored => Bytes::new(),
        Body::Json => read_limited(announced, stream, state.config.max_body_bytes).await?,
        Body::Max(limit) => read_limited(announced, stream, limit).await?,
    };
    (route.handler)(Call::new(
        Arc::clone(state),
        path.to_owned(),
        params,
        query,
        headers,
        body,
    ))
    .await
}

/// Takes a token of the route's bucket, before its body is read: per client address for
/// routes anyone may call, per shopper for the others. A request without a valid token is not
/// counted; its handler refuses it.
async fn check_rate_limit(
    state: &AppState,
    limited: Limited,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let who = match limited {
        Limited::SignUpPerAddress | Limited::SignInPerAddress => state
            .config
            .client_address
            .of(peer, headers)
            .map(rate_limit::address_key),
        _ => state
            .keys
            .caller(header(headers, "authorization"))
            .ok()
            .map(|caller| caller.user_id),
    };
    match who {
        Some(who) => rate_limit::check(state, limited, &who).await,
        None => Ok(()),
    }
}

async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    use warp::reject;
    let e = if rejection.is_not_found() {
        ApiError::not_found("not_found", "no such route")
    } else if rejection.find::<reject::PayloadTooLarge>().is_some() {
        ApiError::from(BodyRefused::TooLarge)
    } else if rejection.find::<reject::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "a Content-Length header is required",
        )
    } else if rejection.find::<reject::InvalidQuery>().is_some() {
        ApiError::bad_request("invalid_query", "the query string is malformed")
    } else if rejection.find::<reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that method",
        )
    } else {
        ApiError::bad_request("bad_request", format!("{rejection:?}"))
    };
    Ok(e.into_response())
}

/// `?limit=`: default 20, at most 100.
fn limit(q: &Query) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(20),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(
                "invalid_limit",
                "limit must be between 1 and 100",
            )),
        },
    }
}

/// Cursors are opaque to clients: the base64-free hex of the last clustering key.
fn encode_cursor(key: &str) -> String {
    hex::encode(key.as_bytes())
}

/// Longer than any cursor this API issues (hex of a clustering key).
const MAX_CURSOR_CHARS: usize = 512;

fn decode_cursor(q: &Query) -> Result<Option<String>, ApiError> {
    q.get("cursor")
        .map(|c| {
            (c.len() <= MAX_CURSOR_CHARS)
                .then(|| hex::decode(c).ok())
                .flatten()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_cursor", "the cursor is not one this API issued")
                })
        })
        .transpose()
}
