//! The routes of goods: cart, checkouts, order cancellation and returns, shipments, sellers'
//! alerts, and the admins' view of flagged orders.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mercato_core::domain::commerce::ShipmentStatus;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::Filter;

use super::{authorization, body, finish, fulfilment, idempotency_key, query, shop, Query};
use crate::error::ApiError;
use crate::state::AppState;

type Auth = Option<String>;

pub(super) fn routes(state: Arc<AppState>, limit: u64) -> BoxedFilter<(Response,)> {
    let st = warp::any().map(move || Arc::clone(&state));
    let api = warp::path("api").and(warp::path("v1"));

    let get_cart = api
        .and(warp::path!("cart"))
        .and(warp::get())
        .and(st.clone())
        .and(authorization())
        .then(|s: Arc<AppState>, a: Auth| async move {
            handle!(s, "cart_get", shop::get_cart(&s, a.as_deref()))
        });
    let set_item = api
        .and(warp::path!("cart" / "items" / String))
        .and(warp::put())
        .and(st.clone())
        .and(authorization())
        .and(body(limit))
        .then(
            |sku: String, s: Arc<AppState>, a: Auth, b: Bytes| async move {
                handle!(
                    s,
                    "cart_set_item",
                    shop::set_item(&s, a.as_deref(), &sku, &b)
                )
            },
        );
    let create_checkout = api
        .and(warp::path!("checkouts"))
        .and(warp::post())
        .and(st.clone())
        .and(authorization())
        .and(idempotency_key())
        .and(body(limit))
        .then(|s: Arc<AppState>, a: Auth, k: Auth, b: Bytes| async move {
            handle!(
                s,
                "checkouts_create",
                shop::create_checkout(&s, a.as_deref(), k.as_deref(), &b)
            )
        });
    let get_checkout = api
        .and(warp::path!("checkouts" / String))
        .and(warp::get())
        .and(st.clone())
        .and(authorization())
        .then(|id: String, s: Arc<AppState>, a: Auth| async move {
            handle!(
                s,
                "checkouts_get",
                shop::get_checkout(&s, a.as_deref(), &id)
            )
        });
    let delete_checkout = api
        .and(warp::path!("checkouts" / String))
        .and(warp::delete())
        .and(st.clone())
        .and(authorization())
        .then(|id: String, s: Arc<AppState>, a: Auth| async move {
            handle!(
                s,
                "checkouts_delete",
                shop::delete_checkout(&s, a.as_deref(), &id)
            )
        });
    let cancel = api
        .and(warp::path!("orders" / String / "cancel"))
        .and(warp::post())
        .and(st.clone())
        .and(authorization())
        .and(idempotency_key())
        .and(body(limit))
        .then(
            |id: String, s: Arc<AppState>, a: Auth, k: Auth, b: Bytes| async move {
                handle!(
                    s,
                    "orders_cancel",
                    fulfilment::cancel(&s, a.as_deref(), k.as_deref(), &id, &b)
                )
            },
        );
    let create_return = api
        .and(warp::path!("orders" / String / "returns"))
        .and(warp::post())
        .and(st.clone())
        .and(authorization())
        .and(idempotency_key())
        .and(body(limit))
        .then(
            |id: String, s: Arc<AppState>, a: Auth, k: Auth, b: Bytes| async move {
                handle!(
                    s,
                    "orders_return",
                    fulfilment::create_return(&s, a.as_deref(), k.as_deref(), &id, &b)
                )
            },
        );
    // `.../ship` and `.../deliver`: one route, the step named by the last segment.
    let advance = api
        .and(warp::path!(
            "warehouses" / String / "shipments" / String / String
        ))
        .and(warp::post())
        .and(st.clone())
        .and(authorization())
        .and(body(limit))
        .then(
            |w: String, id: String, step: String, s: Arc<AppState>, a: Auth, b: Bytes| async move {
                let to = match step.as_str() {
                    "ship" => ShipmentStatus::Shipped,
                    "deliver" => ShipmentStatus::Delivered,
                    _ => {
                        let e = ApiError::not_found("not_found", "no such route");
                        return finish(&s, "shipments_advance", Instant::now(), Err(e));
                    }
                };
                handle!(
                    s,
                    "shipments_advance",
                    fulfilment::advance(&s, a.as_deref(), &w, &id, to, &b)
                )
            },
        );
    let alerts = api
        .and(warp::path!("sellers" / String / "alerts"))
        .and(warp::get())
        .and(st.clone())
        .and(authorization())
        .and(query())
        .then(
            |seller: String, s: Arc<AppState>, a: Auth, q: Query| async move {
                handle!(
                    s,
                    "sellers_alerts",
                    fulfilment::seller_alerts(&s, a.as_deref(), &seller, &q)
                )
            },
        );
    let flagged = api
        .and(warp::path!("admin" / "flagged-orders"))
        .and(warp::get())
        .and(st.clone())
        .and(authorization())
        .and(query())
        .then(|s: Arc<AppState>, a: Auth, q: Query| async move {
            handle!(
                s,
                "admin_flagged_orders",
                fulfilment::flagged_orders(&s, a.as_deref(), &q)
            )
        });
    let reallocate = api
        .and(warp::path!("admin" / "orders" / String / "allocate"))
        .and(warp::post())
        .and(st)
        .and(authorization())
        .then(|id: String, s: Arc<AppState>, a: Auth| async move {
            handle!(
                s,
                "admin_reallocate",
                fulfilment::reallocate(&s, a.as_deref(), &id)
            )
        });

    get_cart
        .or(set_item)
        .unify()
        .or(create_checkout)
        .unify()
        .or(get_checkout)
        .unify()
        .or(delete_checkout)
        .unify()
        .or(cancel)
        .unify()
        .or(create_return)
        .unify()
        .or(advance)
        .unify()
        .or(alerts)
        .unify()
        .or(flagged)
        .unify()
        .or(reallocate)
        .unify()
        .boxed()
}
