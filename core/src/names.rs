//! Topic and table names, in one place: every role must agree on them.

pub mod topics {
    /// Hold and release commands, keyed by event and section.
    pub const HOLDS: &str = "holds";
    /// Order and payment commands, keyed by order id.
    pub const PAYMENTS: &str = "payments";
    /// Results of commands, keyed by command id; every gateway reads all of it.
    pub const RESULTS: &str = "results";
    /// Seat changes (held, released, sold), keyed by event: keeps read caches fresh.
    pub const SEAT_CHANGES: &str = "seat-changes";
    /// Records no worker could decode, with the reason: never dropped silently.
    pub const DEAD_LETTERS: &str = "dead-letters";

    /// Declared content on its way to the ingest worker, keyed by SKU (or event id).
    pub const INGEST: &str = "ingest";
    /// Catalog change facts (upserts and removals), keyed by `<kind>:<id>`: the search index is
    /// their fold, so this topic is kept whole and the index can be rebuilt from offset 0.
    pub const CATALOG: &str = "catalog";

    /// Checkout commands (reserve, release), keyed by user id.
    pub const CHECKOUTS: &str = "checkouts";
    /// Paid product orders to split across warehouses, keyed by order id.
    pub const ALLOCATIONS: &str = "allocations";
    /// Low-stock alerts, keyed by seller id.
    pub const STOCK_ALERTS: &str = "stock-alerts";

    /// The platform's shared topics and their partition counts.
    pub const PLATFORM: [(&str, u32); 10] = [
        (HOLDS, 8),
        (PAYMENTS, 8),
        (RESULTS, 4),
        (SEAT_CHANGES, 4),
        (DEAD_LETTERS, 1),
        (INGEST, 8),
        (CATALOG, 4),
        (CHECKOUTS, 8),
        (ALLOCATIONS, 4),
        (STOCK_ALERTS, 1),
    ];
}

pub mod tables {
    pub const EVENTS: &str = "events";
    /// Partition "all": clustering `<starts_at ms, zero padded>/<event id>`, for listing.
    pub const EVENT_INDEX: &str = "event_index";
    /// Partition `<event>/<section>`, clustering seat id: a hold or a sale of that seat; and,
    /// after every seat id, the rows of the holds whose first seat is in that section.
    pub const SEAT_CLAIMS: &str = "seat_claims";
    /// Partition `<event>/<section>` (the hold's own), clustering hold id: the holds whose
    /// lapse was announced on `seat-changes`, so a restarted holds worker does not announce
    /// it again.
    pub const HOLD_LAPSES: &str = "hold_lapses";
    /// Partition `<event>/<user id>`, clustering "": the holds counted against the shopper's
    /// cap of seats at the event (`domain::holds::quota`); written by the holds worker alone.
    pub const HOLD_QUOTAS: &str = "hold_quotas";
    pub const ORDERS: &str = "orders";
    /// Partition user id, clustering `<inverted created ms>/<order id>`: newest first.
    pub const USER_ORDERS: &str = "user_orders";
    pub const USERS: &str = "users";
    pub const USERS_BY_EMAIL: &str = "users_by_email";
    pub const IDEMPOTENCY: &str = "idempotency";
    pub const SETTINGS: &str = "settings";
    pub const SANDBOX_CHARGES: &str = "sandbox_charges";
    /// Provider event ids the gateway has queued (partition: the event id), kept a week, so a
    /// webhook delivered again is answered without being queued again.
    pub const WEBHOOK_EVENTS: &str = "webhook_events";
    pub const SANDBOX_OUTBOX: &str = "sandbox_outbox";
    /// Partition SKU: the product as normalized by the ingest worker.
    pub const PRODUCTS: &str = "products";
    /// Partition "all", clustering inventory name: its declaration and publishing progress.
    pub const INVENTORIES: &str = "inventories";
    /// Partition inventory name, clustering `p<ingest partition>`: what each ingest partition did.
    pub const INGEST_COUNTS: &str = "ingest_counts";
    /// Partition inventory name, clustering `<chunk>`: the SKUs its latest declaration lists.
    pub const INVENTORY_SKUS: &str = "inventory_skus";
    /// Partition inventory name, clustering `<generation>/<position>`: rejected records.
    pub const REJECTED: &str = "rejected_records";

    /// Partition SKU: clustering `level`, the stock across warehouses; and `op/<id>` markers
    /// of once-only changes.
    pub const STOCK: &str = "stock";
    /// Partition "all", clustering warehouse name: its declaration.
    pub const WAREHOUSES: &str = "warehouses";
    /// Partition warehouse name, clustering SKU: what its declaration listed.
    pub const WAREHOUSE_SKUS: &str = "warehouse_skus";
    /// Partition user id, clustering SKU: the shopper's cart.
    pub const CARTS: &str = "carts";
    /// Partition checkout id.
    pub const CHECKOUTS: &str = "checkouts";
    /// Partition user id, clustering checkout id: the shopper's checkouts, each row lapsing
    /// with its checkout; what the cap on live checkouts counts.
    pub const USER_CHECKOUTS: &str = "user_checkouts";
    /// Partition seller id, clustering `<inverted ms>/<sku>`: low-stock alerts, newest first.
    pub const SELLER_ALERTS: &str = "seller_alerts";
    /// Partition "all", clustering order id: paid orders no warehouse could fully supply.
    pub const FLAGGED_ORDERS: &str = "flagged_orders";
    /// Partition "", clustering a dead letter's offset (20 digits): when it was replayed.
    pub const DEAD_LETTER_REPLAYS: &str = "dead_letter_replays";
}

/// The keys of the waiting rooms on the Coord port, `wr/<event>/<what>`: the gateways keep
/// them, the operator counts them for an Event's status.
pub mod rooms {
    /// A key of an event's room: besides those below, `joined` (the count of joins after the
    /// on-sale), `state`, `rate`, `abandoned`, `ticks_seq` (the admitter's tick numbers) and
    /// `admitter` (the tick's lock).
    pub fn key(event: &str, what: &str) -> String {
        format!("wr/{event}/{what}")
    }

    /// The queue: a ranked set of users.
    pub fn queue(event: &str) -> String {
        key(event, "queue")
    }

    /// The live admissions: a ranked set of users scored by expiry.
    pub fn active(event: &str) -> String {
        key(event, "active")
    }

    /// A user's admission: its token and times.
    pub fn admission(event: &str, user: &str) -> String {
        key(event, &format!("admission/{user}"))
    }

    /// Refreshed by each look at a user's place: a place without it is abandoned.
    pub fn seen(event: &str, user: &str) -> String {
        key(event, &format!("seen/{user}"))
    }

    /// The channel the admitter's ticks go out on.
    pub fn ticks(event: &str) -> String {
        key(event, "ticks")
    }
}
