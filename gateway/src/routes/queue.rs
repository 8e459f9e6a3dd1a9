//! `POST /events/{id}/queue` joins the event's waiting room; `GET /events/{id}/queue/{ticket}`
//! says where the shopper stands, and hands over the admission once they are let in.

use serde_json::json;

use super::events::load;
use crate::error::{ApiError, ApiReply, ApiResult};
use crate::state::AppState;
use crate::waiting_room;

pub async fn join(state: &AppState, auth: Option<&str>, event: &str) -> ApiResult {
    let caller = state.keys.caller(auth)?;
    let spec = load(state, event).await?;
    let place = waiting_room::join(state, &spec, event, &caller.user_id).await?;
    Ok(ApiReply::ok(json!(place)))
}

pub async fn get(state: &AppState, auth: Option<&str>, event: &str, ticket: &str) -> ApiResult {
    let caller = state.keys.caller(auth)?;
    let spec = load(state, event).await?;
    if ticket != waiting_room::ticket(event, &caller.user_id) {
        return Err(ApiError::not_found(
            "ticket_not_found",
            "no such ticket of yours in this queue",
        ));
    }
    let place = waiting_room::place(state, &spec, event, &caller.user_id).await?;
    Ok(ApiReply::ok(json!(place)))
}
