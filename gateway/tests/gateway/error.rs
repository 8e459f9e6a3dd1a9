//! Refusals map to HTTP here, and only here.

use mercato_core::domain::refusal::Refusal;
use mercato_gateway::error::ApiError;

#[test]
fn a_refusal_becomes_its_status_and_code_here_only() {
    let cases = [
        (Refusal::InvalidSeatIds, 400, "invalid_seat_ids"),
        (Refusal::HoldNotFound, 404, "hold_not_found"),
        (Refusal::HoldExpired, 410, "hold_expired"),
        (Refusal::HoldContended, 409, "hold_contended"),
        (
            Refusal::AlreadyShipped { partly: true },
            409,
            "already_shipped",
        ),
        (
            Refusal::ReturnExceedsDelivered {
                sku: "mug".into(),
                asked: 3,
                returnable: 1,
            },
            422,
            "invalid_return",
        ),
    ];
    for (refusal, status, code) in cases {
        let message = refusal.to_string();
        let e = ApiError::from(refusal);
        assert_eq!((e.status.as_u16(), e.code.as_ref()), (status, code));
        assert_eq!(e.message, message);
    }
}
