//! Rows tests of the code around the store start from.

use mercato_core::domain::events::EventRecord;
use mercato_core::store::Store;

/// Writes the event `gig`, on sale now and until 2099: one section `pit` of 100 rows of 100
/// seats, at most 10 seats a hold.
pub async fn gig(store: &dyn Store) {
    let spec = serde_json::json!({
        "title": "Gig",
        "venue": {"name": "Hall", "city": "Town", "lat": 1.0, "lon": 2.0},
        "startsAt": "2099-01-01T20:00:00Z",
        "onSaleAt": "2020-01-01T10:00:00Z",
        "tiers": [{"id": "std", "name": "Standard", "price": {"amount": 100, "currency": "EUR"}}],
        "sections": [{"id": "pit", "tier": "std", "rows": 100, "seatsPerRow": 100}]
    });
    let record = EventRecord {
        id: "gig".into(),
        spec_json: spec.to_string(),
        generation: 1,
    };
    mercato_core::repo::events::save(store, &record, None)
        .await
        .expect("the event is written");
}
