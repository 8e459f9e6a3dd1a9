//! Every route of the API, one line each: method, path (`{}` is a path parameter), the name
//! its metrics carry, how much body it reads, and the handler it calls with what the request
//! brought. A route that creates something runs its handler through [`Call::idempotent`], so
//! the table shows which ones replay under an `Idempotency-Key`. Authentication is the
//! handlers' (they need the caller); a route whose caller must be checked before a large body
//! is read says so with a guard.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use warp::http::{HeaderMap, Method};

use super::{
    accounts, admin, catalog, events, fulfilment, holds, ops, orders, queue, seat_map, shop,
    ApiResult, Query,
};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::idempotency::{self, Keyed};
use crate::rate_limit::Limited;
use crate::state::AppState;
use mercato_core::domain::commerce::ShipmentStatus;
use mercato_core::domain::payments::SIGNATURE_HEADER;

/// How much of the request body a route reads.
#[derive(Debug, Clone, Copy)]
pub(super) enum Body {
    /// None: the route takes no body.
    Ignored,
    /// Up to the gateway's configured limit for JSON bodies.
    Json,
    /// Up to this many bytes.
    Max(u64),
}

/// What a handler gets of its request.
pub(super) struct Call {
    pub state: Arc<AppState>,
    pub body: Bytes,
    /// The path as sent: what an idempotency key is bound to, with the body.
    path: String,
    params: Vec<String>,
    raw_query: String,
    headers: HeaderMap,
}

impl Call {
    pub(super) fn new(
        state: Arc<AppState>,
        path: String,
        params: Vec<String>,
        raw_query: String,
        headers: HeaderMap,
        body: Bytes,
    ) -> Self {
        Self {
            state,
            body,
            path,
            params,
            raw_query,
            headers,
        }
    }

    /// The `n`th path parameter, as sent.
    fn param(&self, n: usize) -> &str {
        self.params.get(n).map_or("", String::as_str)
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    fn auth(&self) -> Option<&str> {
        self.header("authorization")
    }

    fn idempotency_key(&self) -> Option<&str> {
        self.header("idempotency-key")
    }

    /// Runs `work` as the authenticated caller, at most once per `Idempotency-Key`: a replay
    /// of the same key and body gets the first answer (see [`idempotency`]).
    async fn idempotent<F, Fut>(&self, work: F) -> ApiResult
    where
        F: FnOnce(Caller, Option<Keyed>) -> Fut,
        Fut: std::future::Future<Output = ApiResult>,
    {
        let (auth, key) = (self.auth(), self.idempotency_key());
        idempotency::post(&self.state, auth, key, &self.path, &self.body, work).await
    }

    /// The query string's parameters; read only by routes that take any, so a malformed
    /// query elsewhere is ignored.
    fn query(&self) -> Result<Query, ApiError> {
        serde_urlencoded::from_str(&self.raw_query)
            .map_err(|_| ApiError::bad_request("invalid_query", "the query string is malformed"))
    }
}

/// A header's value, if it is there and is text.
pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

type Handler = fn(Call) -> BoxFuture<'static, ApiResult>;
/// Checked before the body is read: a refusal drains a small body and answers at once.
type Guard = fn(&AppState, Option<&str>) -> Result<(), ApiError>;

pub(super) struct Route {
    pub method: Method,
    pub path: &'static str,
    pub name: &'static str,
    pub body: Body,
    pub guard: Option<Guard>,
    /// The token bucket a request takes from before its body is read.
    pub limit: Option<Limited>,
    pub handler: Handler,
}

impl Route {
    /// The path parameters, if `segments` are this route's path.
    pub(super) fn matches(&self, segments: &[&str]) -> Option<Vec<String>> {
        let pattern = self.path.trim_start_matches('/').split('/');
        let mut params = Vec::new();
        let mut given = segments.iter();
        for part in pattern {
            let segment = given.next()?;
            if part == "{}" {
                if segment.is_empty() {
                    return None;
                }
                params.push((*segment).to_owned());
            } else if part != *segment {
                return None;
            }
        }
        given.next().is_none().then_some(params)
    }
}

macro_rules! route {
    ($method:ident $path:literal, $name:literal, $body:expr, |$c:ident| $call:expr) => {
        route!($method $path, $name, $body, None, |$c| $call)
    };
    ($method:ident $path:literal, $name:literal, $body:expr, $guard:expr, |$c:ident| $call:expr) => {
        Route {
            method: Method::$method,
            path: $path,
            name: $name,
            body: $body,
            guard: $guard,
            limit: None,
            handler: |$c: Call| Box::pin(async move { $call.await }),
        }
    };
}

/// The manifests route exists only where a local reconciler applies manifests, and only an
/// admin may send one: checked before up to 16 MiB of body is read.
fn manifests_guard(state: &AppState, auth: Option<&str>) -> Result<(), ApiError> {
    if state.manifests.is_none() {
        return Err(ApiError::not_found("not_found", "no such route"));
    }
    admin::admin(state, auth)
}

use Body::{Ignored, Json};

#[rustfmt::skip]
pub(super) static ROUTES: &[Route] = &[
    Route { limit: Some(Limited::SignUpPerAddress), ..route!(POST "/api/v1/users", "users_create", Json, |c| accounts::create_user(&c.state, &c.body)) },
    Route { limit: Some(Limited::SignInPerAddress), ..route!(POST "/api/v1/sessions", "sessions_create", Json, |c| accounts::create_session(&c.state, &c.body)) },
    route!(GET "/api/v1/events", "events_list", Ignored, |c| events::list(&c.state, &c.query()?)),
    route!(GET "/api/v1/events/{}", "events_get", Ignored, |c| events::get(&c.state, c.param(0))),
    route!(GET "/api/v1/events/{}/seats", "events_seats", Ignored, |c| seat_map::seats(&c.state, c.param(0), &c.query()?, c.header("if-none-match"))),
    route!(GET "/api/v1/events/{}/seatmap", "events_seatmap", Ignored, |c| seat_map::compact(&c.state, c.param(0), &c.query()?, c.header("if-none-match"))),
    route!(POST "/api/v1/events/{}/queue", "queue_join", Ignored, |c| queue::join(&c.state, c.auth(), c.param(0))),
    route!(GET "/api/v1/events/{}/queue/{}", "queue_get", Ignored, |c| queue::get(&c.state, c.auth(), c.param(0), c.param(1))),
    Route { limit: Some(Limited::HoldsPerUser), ..route!(POST "/api/v1/holds", "holds_create", Json, |c| c.idempotent(|caller, keyed| holds::place(&c.state, caller, keyed, &c.body))) },
    route!(GET "/api/v1/holds/{}", "holds_get", Ignored, |c| holds::get(&c.state, c.auth(), c.param(0))),
    route!(DELETE "/api/v1/holds/{}", "holds_delete", Ignored, |c| holds::release(&c.state, c.auth(), c.param(0))),
    Route { limit: Some(Limited::OrdersPerUser), ..route!(POST "/api/v1/orders", "orders_create", Json, |c| c.idempotent(|caller, keyed| orders::place(&c.state, caller, keyed, &c.body))) },
    route!(GET "/api/v1/orders", "orders_list", Ignored, |c| orders::list(&c.state, c.auth(), &c.query()?)),
    route!(GET "/api/v1/orders/{}", "orders_get", Ignored, |c| orders::get(&c.state, c.auth(), c.param(0))),
    route!(POST "/api/v1/orders/{}/cancel", "orders_cancel", Json, |c| c.idempotent(|caller, _| fulfilment::cancel(&c.state, caller, c.param(0)))),
    route!(POST "/api/v1/orders/{}/returns", "orders_return", Json, |c| c.idempotent(|caller, keyed| fulfilment::create_return(&c.state, caller, keyed, c.param(0), &c.body))),
    route!(GET "/api/v1/cart", "cart_get", Ignored, |c| shop::get_cart(&c.state, c.auth())),
    route!(PUT "/api/v1/cart/items/{}", "cart_set_item", Json, |c| shop::set_item(&c.state, c.auth(), c.param(0), &c.body)),
    Route { limit: Some(Limited::CheckoutsPerUser), ..route!(POST "/api/v1/checkouts", "checkouts_create", Json, |c| c.idempotent(|caller, keyed| shop::create_checkout(&c.state, caller, keyed, &c.body))) },
    route!(GET "/api/v1/checkouts/{}", "checkouts_get", Ignored, |c| shop::get_checkout(&c.state, c.auth(), c.param(0))),
    route!(DELETE "/api/v1/checkouts/{}", "checkouts_delete", Ignored, |c| shop::delete_checkout(&c.state, c.auth(), c.param(0))),
    route!(POST "/api/v1/warehouses/{}/shipments/{}/ship", "shipments_advance", Json, |c| fulfilment::advance(&c.state, c.auth(), c.param(0), c.param(1), ShipmentStatus::Shipped, &c.body)),
    route!(POST "/api/v1/warehouses/{}/shipments/{}/deliver", "shipments_advance", Json, |c| fulfilment::advance(&c.state, c.auth(), c.param(0), c.param(1), ShipmentStatus::Delivered, &c.body)),
    route!(GET "/api/v1/sellers/{}/alerts", "sellers_alerts", Ignored, |c| fulfilment::seller_alerts(&c.state, c.auth(), c.param(0), &c.query()?)),
    route!(GET "/api/v1/search", "search", Ignored, |c| catalog::search(&c.state, &c.query()?)),
    route!(GET "/api/v1/search/suggest", "search_suggest", Ignored, |c| catalog::suggest(&c.state, &c.query()?)),
    route!(GET "/api/v1/products/{}", "products_get", Ignored, |c| catalog::product(&c.state, c.param(0))),
    route!(POST "/api/v1/payments/webhook", "payments_webhook", Json, |c| ops::webhook(&c.state, c.header(SIGNATURE_HEADER), &c.body)),
    route!(GET "/api/v1/admin/inventories", "admin_inventories", Ignored, |c| admin::inventories(&c.state, c.auth(), &c.query()?)),
    route!(GET "/api/v1/admin/inventories/{}", "admin_inventory", Ignored, |c| admin::inventory(&c.state, c.auth(), c.param(0))),
    route!(GET "/api/v1/admin/dead-letters", "admin_dead_letters", Ignored, |c| admin::dead_letters(&c.state, c.auth(), &c.query()?)),
    route!(POST "/api/v1/admin/dead-letters/replay", "admin_dead_letters_replay", Body::Max(64 * 1024), |c| super::dead_letters::replay(&c.state, c.auth(), &c.body)),
    route!(GET "/api/v1/admin/search", "admin_search", Ignored, |c| admin::search_status(&c.state, c.auth())),
    route!(POST "/api/v1/admin/reindex", "admin_reindex", Ignored, |c| admin::reindex(&c.state, c.auth())),
    route!(GET "/api/v1/admin/flagged-orders", "admin_flagged_orders", Ignored, |c| fulfilment::flagged_orders(&c.state, c.auth(), &c.query()?)),
    route!(POST "/api/v1/admin/orders/{}/allocate", "admin_reallocate", Ignored, |c| fulfilment::reallocate(&c.state, c.auth(), c.param(0))),
    route!(POST "/api/v1/admin/manifests", "admin_manifests", Body::Max(super::body::MANIFESTS_LIMIT), Some(manifests_guard),
        |c| ops::apply_manifests(&c.state, c.query()?.get("base_dir").map(String::as_str), &c.body)),
];
