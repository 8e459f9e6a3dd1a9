use proptest::prelude::*;

use super::*;
use crate::domain::commerce::{Checkout, CheckoutState};
use crate::domain::holds::{Hold, HoldState};
use crate::domain::Money;

fn hold(state: HoldState) -> Hold {
    crate::domain::holds::example(state, 100)
}

fn checkout(state: CheckoutState) -> Checkout {
    Checkout {
        id: "co_1".into(),
        user_id: "ada".into(),
        lines: Vec::new(),
        total: Money {
            amount: 0,
            currency: "EUR".into(),
        },
        created_ms: 0,
        expires_at_ms: 100,
        state,
    }
}

fn paying(o: &str) -> HoldState {
    HoldState::Purchasing { order_id: o.into() }
}

#[test]
fn an_open_hold_is_claimed_and_a_replay_resumes() {
    let open = hold(HoldState::Active);
    let Start::Claim(claimed) = start(Some(&open), "ada", "o1", 5) else {
        panic!("an open hold is claimed");
    };
    assert_eq!(claimed.state, paying("o1"));
    assert_eq!(
        start(Some(&claimed), "ada", "o1", 500),
        Start::Resume(claimed.clone()),
        "the paying order resumes even after expiry: its charge is under way"
    );
}

#[test]
fn each_blocked_hold_is_refused_with_its_own_reason() {
    let cases = [
        (None, 5, Refusal::HoldNotFound),
        (Some(hold(HoldState::Active)), 100, Refusal::HoldExpired),
        (Some(hold(HoldState::Released)), 5, Refusal::HoldReleased),
        (
            Some(hold(HoldState::Purchased {
                order_id: "o1".into(),
            })),
            5,
            Refusal::HoldPurchased,
        ),
        (Some(hold(paying("o2"))), 5, Refusal::HoldBeingPurchased),
    ];
    for (current, now, refusal) in cases {
        assert_eq!(
            start(current.as_ref(), "ada", "o1", now),
            Start::Refuse(refusal)
        );
    }
    let someone_elses = hold(HoldState::Active);
    assert_eq!(
        start(Some(&someone_elses), "bob", "o1", 5),
        Start::Refuse(Refusal::HoldNotFound)
    );
}

#[test]
fn a_checkout_is_refused_in_its_own_words() {
    let cases = [
        (None, Refusal::CheckoutNotFound),
        (
            Some(checkout(CheckoutState::Cancelled)),
            Refusal::CheckoutCancelled,
        ),
        (
            Some(checkout(CheckoutState::Purchasing {
                order_id: "o2".into(),
            })),
            Refusal::CheckoutBeingPurchased,
        ),
    ];
    for (current, refusal) in cases {
        assert_eq!(
            start(current.as_ref(), "ada", "o1", 5),
            Start::Refuse(refusal)
        );
    }
    let expired = checkout(CheckoutState::Active);
    assert_eq!(
        start(Some(&expired), "ada", "o1", 100),
        Start::Refuse(Refusal::CheckoutExpired)
    );
}

#[test]
fn only_the_paying_order_finishes_a_purchase() {
    let c = checkout(CheckoutState::Purchasing {
        order_id: "o1".into(),
    });
    assert_eq!(finish(&c, "o2", Finish::Bought), None);
    let bought = finish(&c, "o1", Finish::Bought).unwrap();
    assert_eq!(
        bought.state,
        CheckoutState::Purchased {
            order_id: "o1".into()
        }
    );
    assert_eq!(finish(&bought, "o1", Finish::Bought), None, "a replay");
    assert_eq!(finish(&bought, "o1", Finish::Declined), None);
    assert_eq!(
        finish(&bought, "o1", Finish::Cancelled).unwrap().state,
        CheckoutState::Cancelled
    );
    assert_eq!(
        finish(&c, "o1", Finish::Declined).unwrap().state,
        CheckoutState::Active
    );
}

#[derive(Debug, Clone)]
enum Op {
    Start { order: u8, user_is_owner: bool },
    Finish { order: u8, finish: Finish },
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3, any::<bool>()).prop_map(|(order, user_is_owner)| Op::Start {
            order,
            user_is_owner
        }),
        (
            0u8..3,
            prop_oneof![
                Just(Finish::Bought),
                Just(Finish::Declined),
                Just(Finish::Cancelled)
            ]
        )
            .prop_map(|(order, finish)| Op::Finish { order, finish }),
        (0u64..40).prop_map(Op::Wait),
    ]
}

proptest! {
    /// Whatever orders try, in whatever order: one order at a time pays, nobody else's order
    /// and nothing past expiry claims it, what is bought stays bought by that order (until
    /// its own cancellation), and a withdrawn one never changes again.
    #[test]
    fn one_order_at_a_time_and_nothing_after_the_end(ops in prop::collection::vec(op(), 1..40)) {
        let mut row = hold(HoldState::Active);
        let mut now = 0u64;
        let mut bought_by: Option<String> = None;
        for op in ops {
            let before = row.clone();
            match op {
                Op::Wait(ms) => now += ms,
                Op::Start { order, user_is_owner } => {
                    let order_id = format!("o{order}");
                    let user = if user_is_owner { "ada" } else { "bob" };
                    match start(Some(&row), user, &order_id, now) {
                        Start::Claim(next) => {
                            prop_assert!(user_is_owner);
                            prop_assert_eq!(&before.state, &HoldState::Active);
                            prop_assert!(now < row.expires_at_ms, "claimed after expiry");
                            prop_assert_eq!(&next.state, &paying(&order_id));
                            row = next;
                        }
                        Start::Resume(same) => {
                            prop_assert_eq!(&same, &row);
                            prop_assert_eq!(&row.state, &paying(&order_id));
                        }
                        Start::Refuse(_) => {}
                    }
                }
                Op::Finish { order, finish: how } => {
                    let order_id = format!("o{order}");
                    if let Some(next) = finish(&row, &order_id, how) {
                        match (&before.state, &next.state) {
                            (HoldState::Purchasing { order_id: o }, HoldState::Purchased { order_id: p }) => {
                                prop_assert_eq!(o, p);
                                prop_assert!(bought_by.is_none());
                                bought_by = Some(p.clone());
                            }
                            (HoldState::Purchasing { order_id: o }, HoldState::Active) => {
                                prop_assert_eq!(o, &order_id);
                            }
                            (HoldState::Purchasing { order_id: o } | HoldState::Purchased { order_id: o }, HoldState::Released) => {
                                prop_assert_eq!(o, &order_id);
                            }
                            (from, to) => prop_assert!(false, "{:?} -> {:?}", from, to),
                        }
                        row = next;
                    }
                }
            }
            if before.state == HoldState::Released {
                prop_assert_eq!(&row, &before, "a withdrawn hold changed");
            }
            if let (Some(o), HoldState::Purchasing { order_id } | HoldState::Purchased { order_id }) = (&bought_by, &row.state) {
                prop_assert_eq!(o, order_id, "bought by one order, then taken by another");
            }
        }
    }
}
