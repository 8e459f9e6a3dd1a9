//! The route table and the plumbing every route shares: state, auth header, idempotency key,
//! bounded JSON bodies, metrics, and one JSON error shape for everything warp itself rejects.

mod accounts;
mod admin;
mod catalog;
mod dead_letters;
mod events;
mod fulfilment;
mod holds;
mod ops;
mod orders;
mod shop;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

type Query = HashMap<String, String>;

fn with_state(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Arc<AppState>,), Error = Infallible> + Clone {
    warp::any().map(move || Arc::clone(&state))
}

fn authorization() -> impl Filter<Extract = (Option<String>,), Error = Infallible> + Clone {
    warp::header::optional::<String>("authorization")
        .or_else(|_| async { Ok::<_, Infallible>((None,)) })
}

fn idempotency_key() -> impl Filter<Extract = (Option<String>,), Error = Infallible> + Clone {
    warp::header::optional::<String>("idempotency-key")
        .or_else(|_| async { Ok::<_, Infallible>((None,)) })
}

fn query() -> impl Filter<Extract = (Query,), Error = Rejection> + Clone {
    warp::query::<Query>()
}

/// Why a request body was not taken.
#[derive(Debug, Clone, Copy)]
enum BodyRefused {
    TooLarge,
    Unreadable,
}
impl warp::reject::Reject for BodyRefused {}

impl From<BodyRefused> for ApiError {
    fn from(refused: BodyRefused) -> Self {
        match refused {
            BodyRefused::TooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            ),
            BodyRefused::Unreadable => {
                ApiError::bad_request("body_unreadable", "the request body could not be read")
            }
        }
    }
}

/// The request body, refused with 413 past `limit` bytes whether or not the client announced
/// its length (a chunked body is counted as it arrives, never buffered past the limit).
fn body(limit: u64) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |announced: Option<u64>, stream| async move {
            read_limited(announced, stream, limit)
                .await
                .map_err(warp::reject::custom)
        })
}

async fn read_limited<S, B>(
    announced: Option<u64>,
    stream: S,
    limit: u64,
) -> Result<Bytes, BodyRefused>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    match announced {
        Some(n) if n > limit => {
            if n <= DRAIN_LIMIT {
                drain(stream).await;
            }
            Err(BodyRefused::TooLarge)
        }
        _ => collect_limited(stream, limit).await,
    }
}

/// A refused body up to this size is read and dropped before the 413 goes out: a reply sent
/// while the client is still writing is often lost to the connection's reset, and the client
/// sees a broken pipe instead of the error. Beyond it, the connection is simply cut.
const DRAIN_LIMIT: u64 = 4 * 1024 * 1024;

/// The largest manifest stream `mercato apply` may send.
const MANIFESTS_LIMIT: u64 = 16 * 1024 * 1024;

async fn drain<S, B>(stream: S)
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use futures::StreamExt;
    let mut stream = std::pin::pin!(stream);
    let mut read = 0u64;
    while let Some(Ok(chunk)) = stream.next().await {
        read += chunk.remaining() as u64;
        if read > DRAIN_LIMIT {
            return;
        }
    }
}

async fn collect_limited<S, B>(stream: S, limit: u64) -> Result<Bytes, BodyRefused>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use futures::StreamExt;
    let mut stream = std::pin::pin!(stream);
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|_| BodyRefused::Unreadable)?;
        if out.len() as u64 + chunk.remaining() as u64 > limit {
            drain(stream).await;
            return Err(BodyRefused::TooLarge);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            out.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

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

macro_rules! handle {
    ($state:expr, $route:literal, $call:expr) => {{
        let started = Instant::now();
        let result = $call;
        finish(&$state, $route, started, result.await)
    }};
}

// Declared after the macro it uses.
mod goods_table;

pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let limit = state.config.max_body_bytes;
    let state_for_goods = Arc::clone(&state);
    let st = with_state(state);
    let api = warp::path("api").and(warp::path("v1"));

    let users = api
        .and(warp::path!("users"))
        .and(warp::post())
        .and(st.clone())
        .and(body(limit))
        .then(|s: Arc<AppState>, b: Bytes| async move {
            handle!(s, "users_create", accounts::create_user(&s, &b))
        });
    let sessions = api
        .and(warp::path!("sessions"))
        .and(warp::post())
        .and(st.clone())
        .and(body(limit))
        .then(|s: Arc<AppState>, b: Bytes| async move {
            handle!(s, "sessions_create", accounts::create_session(&s, &b))
        });
    let list_events = api
        .and(warp::path!("events"))
        .and(warp::get())
        .and(st.clone())
        .and(query())
        .then(|s: Arc<AppState>, q: Query| async move {
            handle!(s, "events_list", events::list(&s, &q))
        });
    let get_event = api
        .and(warp::path!("events" / String))
        .and(warp::get())
        .and(st.clone())
        .then(|id: String, s: Arc<AppState>| async move {
            handle!(s, "events_get", events::get(&s, &id))
        });
    let seats = api
        .and(warp::path!("events" / String / "seats"))
        .and(warp::get())
        .and(st.clone())
        .and(query())
        .then(|id: String, s: Arc<AppState>, q: Query| async move {
            handle!(s, "events_seats", events::seats(&s, &id, &q))
        });
    let create_hold = api
        .and(warp::path!("holds"))
        .and(warp::post())
        .and(st.clone())
        .and(authorization())
        .and(idempotency_key())
        .and(body(limit))
        .then(
            |s: Arc<AppState>, a: Option<String>, k: Option<String>, b: Bytes| async move {
                handle!(
                    s,
                    "holds_create",
                    holds::create(&s, a.as_deref(), k.as_deref(), &b)
                )
            },
        );
    let get_hold = api
        .and(warp::path!("holds" / String))
        .and(warp::get())
        .and(st.clone())
        .and(authorization())
        .then(
            |id: String, s: Arc<AppState>, a: Option<String>| async move {
                handle!(s, "holds_get", holds::get(&s, a.as_deref(), &id))
            },
        );
    let delete_hold = api
        .and(warp::path!("holds" / String))
        .and(warp::delete())
        .and(st.clone())
        .and(authorization())
        .then(
            |id: String, s: Arc<AppState>, a: Option<String>| async move {
                handle!(s, "holds_delete", holds::release(&s, a.as_deref(), &id))
            },
        );
    let create_order = api
        .and(warp::path!("orders"))
        .and(warp::post())
        .and(st.clone())
        .and(authorization())
        .and(idempotency_key())
        .and(body(limit))
        .then(
            |s: Arc<AppState>, a: Option<String>, k: Option<String>, b: Bytes| async move {
                handle!(
                    s,
                    "orders_create",
                    orders::create(&s, a.as_deref(), k.as_deref(), &b)
                )
            },
        );
    let list_orders = api
        .and(warp::path!("orders"))
        .and(warp::get())
        .and(st.clone())
        .and(authorization())
        .and(query())
        .then(|s: Arc<AppState>, a: Option<String>, q: Query| async move {
            handle!(s, "orders_list", orders::list(&s, a.as_deref(), &q))
        });
    let get_order = api
        .and(warp::path!("orders" / String))
        .and(warp::get())
        .and(st.clone())
        .and(authorization())
        .then(
            |id: String, s: Arc<AppState>, a: Option<String>| async move {
                handle!(s, "orders_get", orders::get(&s, a.as_deref(), &id))
            },
        );
    let webhook = api
        .and(warp::path!("payments" / "webhook"))
        .and(warp::post())
        .and(st.clone())
        .and(warp::header::optional::<String>(
            mercato_core::domain::payments::SIGNATURE_HEADER,
        ))
        .and(body(limit))
        .then(
            |s: Arc<AppState>, sig: Option<String>, b: Bytes| async move {
                handle!(s, "payments_webhook", ops::webhook(&s, sig.as_deref(), &b))
            },
        );
    // Only where a local reconciler applies manifests does the route exist at all; and the
    // caller's role is checked before the body is read, so a stranger cannot make the gateway
    // buffer 16 MiB.
    let manifests = api
        .and(warp::path!("admin" / "manifests"))
        .and(warp::post())
        .and(st.clone())
        .and_then(|s: Arc<AppState>| async move {
            match s.manifests {
                Some(_) => Ok(s),
                None => Err(warp::reject::not_found()),
            }
        })
        .and(authorization())
        .and(query())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .then(
            |s: Arc<AppState>, a: Option<String>, q: Query, announced: Option<u64>, stream| async move {
                let base = q.get("base_dir").cloned();
                handle!(s, "admin_manifests", async {
                    if let Err(refused) = admin::admin(&s, a.as_deref()) {
                        if announced.is_none_or(|n| n <= DRAIN_LIMIT) {
                            drain(stream).await;
                        }
                        return Err(refused);
                    }
                    let yaml = read_limited(announced, stream, MANIFESTS_LIMIT).await?;
                    ops::apply_manifests(&s, base.as_deref(), &yaml).await
                })
            },
        );
    let search =
        api.and(warp::path!("search"))
            .and(warp::get())
            .and(st.clone())
            .and(query())
            .then(|s: Arc<AppState>, q: Query| async move {
                handle!(s, "search", catalog::search(&s, &q))
            });
    let product = api
        .and(warp::path!("products" / String))
        .and(warp::get())
        .and(st.clone())
        .then(|sku: String, s: Arc<AppState>| async move {
            handle!(s, "products_get", catalog::product(&s, &sku))
        });
    let admin_inventories = api
        .and(warp::path!("admin" / "inventories"))
        .and(warp::get())
        .and(st.clone())
        .and(authorization())
        .and(query())
        .then(|s: Arc<AppState>, a: Option<String>, q: Query| async move {
            handle!(
                s,
                "admin_inventories",
                admin::inventories(&s, a.as_deref(), &q)
            )
        });
    let admin_inventory = api
        .and(warp::path!("admin" / "inventories" / String))
        .and(warp::get())
        .and(st.clone())
        .and(authorization())
        .then(
            |name: String, s: Arc<AppState>, a: Option<String>| async move {
                handle!(
                    s,
                    "admin_inventory",
                    admin::inventory(&s, a.as_deref(), &name)
                )
            },
        );
    let admin_dead_letters = api
        .and(warp::path!("admin" / "dead-letters"))
        .and(warp::get())
        .and(st.clone())
        .and(authorization())
        .and(query())
        .then(|s: Arc<AppState>, a: Option<String>, q: Query| async move {
            handle!(
                s,
                "admin_dead_letters",
                admin::dead_letters(&s, a.as_deref(), &q)
            )
        });
    let admin_replay = api
        .and(warp::path!("admin" / "dead-letters" / "replay"))
        .and(warp::post())
        .and(st.clone())
        .and(authorization())
        .and(body(64 * 1024))
        .then(|s: Arc<AppState>, a: Option<String>, b: Bytes| async move {
            handle!(
                s,
                "admin_dead_letters_replay",
                dead_letters::replay(&s, a.as_deref(), &b)
            )
        });
    let admin_search = api
        .and(warp::path!("admin" / "search"))
        .and(warp::get())
        .and(st.clone())
        .and(authorization())
        .then(|s: Arc<AppState>, a: Option<String>| async move {
            handle!(s, "admin_search", admin::search_status(&s, a.as_deref()))
        });
    let admin_reindex = api
        .and(warp::path!("admin" / "reindex"))
        .and(warp::post())
        .and(st.clone())
        .and(authorization())
        .then(|s: Arc<AppState>, a: Option<String>| async move {
            handle!(s, "admin_reindex", admin::reindex(&s, a.as_deref()))
        });
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
    let goods = goods_table::routes(state_for_goods, limit);
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

    let accounts = users.or(sessions).unify().boxed();
    let browse = list_events.or(get_event).unify().or(seats).unify().boxed();
    let holds = create_hold
        .or(get_hold)
        .unify()
        .or(delete_hold)
        .unify()
        .boxed();
    let orders = create_order
        .or(list_orders)
        .unify()
        .or(get_order)
        .unify()
        .boxed();
    let catalog = search
        .or(product)
        .unify()
        .or(admin_inventories)
        .unify()
        .or(admin_inventory)
        .unify()
        .or(admin_dead_letters)
        .unify()
        .or(admin_replay)
        .unify()
        .or(admin_search)
        .unify()
        .or(admin_reindex)
        .unify()
        .boxed();
    let operations = webhook
        .or(manifests)
        .unify()
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(metrics)
        .unify()
        .boxed();

    accounts
        .or(browse)
        .unify()
        .or(holds)
        .unify()
        .or(orders)
        .unify()
        .or(catalog)
        .unify()
        .or(goods)
        .unify()
        .or(operations)
        .unify()
        .recover(recover)
        .unify()
}

async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    use warp::reject;
    let e = if rejection.is_not_found() {
        ApiError::not_found("not_found", "no such route")
    } else if let Some(refused) = rejection.find::<BodyRefused>() {
        ApiError::from(*refused)
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
