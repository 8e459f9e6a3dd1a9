//! Every record type's layout, traced and compared with `record_layouts.json`: a layout that
//! changes while its [`Record::VERSION`] stays is a release that cannot read its own data.
//! Also, the previous layout of each bumped type still decodes.
//!
//! After a deliberate change (a bump with `decode_older`, or only names changed), rewrite the
//! committed file with `MERCATO_BLESS=1 cargo test -p mercato-core record_layouts`.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use serde_reflection::{Tracer, TracerConfig};

use crate::codec::{decode, encode, Record};
use crate::domain::catalog::{
    AttrValue, CatalogFact, DocKind, IngestCounts, IngestRecord, InventoryRecord, Product,
    RejectedRecord,
};
use crate::domain::commands::{
    AllocateOrder, CheckoutCommand, CommandResult, HoldCommand, Outcome, PaymentCommand,
    SeatChange, SeatChangeKind, WarehouseMessage,
};
use crate::domain::commerce::stock::StockLevel;
use crate::domain::commerce::{
    CartLine, Checkout, CheckoutState, DeclaredStock, LowStockAlert, RefundState, ShipmentStatus,
    WarehouseRecord,
};
use crate::domain::dead_letters::DeadLetter;
use crate::domain::events::EventRecord;
use crate::domain::holds::quota::SeatQuota;
use crate::domain::holds::{Hold, HoldState};
use crate::domain::once::Mark;
use crate::domain::orders::{Order, OrderStatus, RefundStatus};
use crate::domain::payments::{ProviderEvent, ProviderEventKind};
use crate::domain::refusal::Refusal;
use crate::domain::seats::Claim;
use crate::domain::users::{Role, User};
use crate::repo::catalog::SkuChunk;

const COMMITTED: &str = include_str!("record_layouts.json");

/// Enums inside records: serde-reflection explores every variant of an enum only when it is
/// traced on its own (the tracing fails naming any enum missing here).
fn trace_inner_enums(tracer: &mut Tracer) -> serde_reflection::Result<()> {
    tracer.trace_simple_type::<AttrValue>()?;
    tracer.trace_simple_type::<CheckoutState>()?;
    tracer.trace_simple_type::<DocKind>()?;
    tracer.trace_simple_type::<HoldState>()?;
    tracer.trace_simple_type::<OrderStatus>()?;
    tracer.trace_simple_type::<Outcome>()?;
    tracer.trace_simple_type::<ProviderEventKind>()?;
    tracer.trace_simple_type::<RefundState>()?;
    tracer.trace_simple_type::<RefundStatus>()?;
    tracer.trace_simple_type::<Refusal>()?;
    tracer.trace_simple_type::<Role>()?;
    tracer.trace_simple_type::<SeatChangeKind>()?;
    tracer.trace_simple_type::<ShipmentStatus>()?;
    Ok(())
}

fn trace<T: Record>(tracer: &mut Tracer) -> (u8, Value) {
    match tracer.trace_simple_type::<T>() {
        Ok((format, _)) => (T::VERSION, json!(format)),
        Err(e) => panic!("cannot trace {}: {e}", std::any::type_name::<T>()),
    }
}

macro_rules! layouts {
    ($($ty:ident),+ $(,)?) => {{
        let mut tracer = Tracer::new(TracerConfig::default());
        if let Err(e) = trace_inner_enums(&mut tracer) {
            panic!("cannot trace the enums inside records: {e}");
        }
        let roots = [$((stringify!($ty), trace::<$ty>(&mut tracer))),+];
        let registry = match tracer.registry() {
            Ok(registry) => registry,
            Err(e) => panic!("add these to trace_inner_enums: {e}"),
        };
        let types: BTreeMap<String, Value> =
            registry.into_iter().map(|(name, format)| (name, json!(format))).collect();
        roots
            .into_iter()
            .map(|(name, (version, root))| {
                let layout = json!({
                    "version": version,
                    "root": root,
                    "types": reachable(&root, &types),
                });
                (name.to_owned(), layout)
            })
            .collect::<BTreeMap<String, Value>>()
    }};
}

/// The containers a layout refers to, by name, however deeply.
fn reachable(root: &Value, types: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let mut found = BTreeMap::new();
    let mut pending = vec![root.clone()];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(name)) = map.get("TYPENAME") {
                    if !found.contains_key(name) {
                        if let Some(format) = types.get(name) {
                            found.insert(name.clone(), format.clone());
                            pending.push(format.clone());
                        }
                    }
                }
                pending.extend(map.into_iter().map(|(_, v)| v));
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    found
}

fn current() -> BTreeMap<String, Value> {
    layouts!(
        AllocateOrder,
        CartLine,
        CatalogFact,
        Checkout,
        CheckoutCommand,
        Claim,
        CommandResult,
        DeadLetter,
        DeclaredStock,
        EventRecord,
        Hold,
        HoldCommand,
        IngestCounts,
        IngestRecord,
        InventoryRecord,
        LowStockAlert,
        Mark,
        Order,
        PaymentCommand,
        Product,
        ProviderEvent,
        RejectedRecord,
        SeatChange,
        SeatQuota,
        SkuChunk,
        StockLevel,
        User,
        WarehouseMessage,
        WarehouseRecord,
    )
}

#[test]
fn no_record_layout_changes_without_a_version_bump() {
    let current = current();
    if std::env::var_os("MERCATO_BLESS").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/record_layouts.json");
        let text = serde_json::to_string_pretty(&current).expect("layouts are JSON") + "\n";
        std::fs::write(path, text).expect("write record_layouts.json");
        return;
    }
    let committed: BTreeMap<String, Value> =
        serde_json::from_str(COMMITTED).expect("record_layouts.json is JSON");
    let mut problems = Vec::new();
    for (name, now) in &current {
        match committed.get(name) {
            None => problems.push(format!("{name}: a new record type; bless it")),
            Some(before) if before == now => {}
            Some(before) if before["version"] == now["version"] => problems.push(format!(
                "{name}: its layout changed but its version ({}) did not: bump Record::VERSION \
                 and decode the previous layout in decode_older (or, if only names changed, bless)",
                now["version"]
            )),
            Some(_) => problems.push(format!("{name}: bumped; bless the new layout")),
        }
    }
    for name in committed.keys().filter(|n| !current.contains_key(*n)) {
        problems.push(format!(
            "{name}: no longer traced; bless if it is no longer a record"
        ));
    }
    assert!(
        problems.is_empty(),
        "record layouts differ from src/record_layouts.json (MERCATO_BLESS=1 rewrites it):\n{}",
        problems.join("\n")
    );
}

/// A result as a release before typed refusals wrote it, byte for byte (postcard: lengths and
/// the variant index as varints): layout 1, command id "c1", variant 4 `Refused { status: 409,
/// code: "hold_released", message: "the hold was released" }`.
const RESULT_V1_REFUSED: &[u8] = &[
    0x01, 0x02, b'c', b'1', 0x04, 0x99, 0x03, 0x0d, b'h', b'o', b'l', b'd', b'_', b'r', b'e', b'l',
    b'e', b'a', b's', b'e', b'd', 0x15, b't', b'h', b'e', b' ', b'h', b'o', b'l', b'd', b' ', b'w',
    b'a', b's', b' ', b'r', b'e', b'l', b'e', b'a', b's', b'e', b'd',
];

#[test]
fn a_result_written_before_refusals_were_typed_still_decodes() {
    let result: CommandResult = decode(RESULT_V1_REFUSED).expect("layout 1 decodes");
    assert_eq!(result.command_id, "c1");
    let Outcome::Refused(refusal) = result.outcome else {
        panic!("not a refusal: {:?}", result.outcome);
    };
    assert_eq!(
        refusal,
        Refusal::Earlier {
            status: 409,
            code: "hold_released".into(),
            message: "the hold was released".into()
        }
    );
    // Answered exactly as the older release meant it.
    assert_eq!(refusal.code(), "hold_released");
    assert_eq!(refusal.to_string(), "the hold was released");
}

/// A seat change as layout 2 wrote it (before it named its hold): event "e", seat ids
/// ["a-1-1"], variant 3 `Lapsed`.
const SEAT_CHANGE_V2: &[u8] = &[
    0x02, 0x01, b'e', 0x01, 0x05, b'a', b'-', b'1', b'-', b'1', 0x03,
];

#[test]
fn a_seat_change_written_before_it_named_its_hold_still_decodes() {
    use crate::domain::commands::{SeatChange, SeatChangeKind};
    let change: SeatChange = decode(SEAT_CHANGE_V2).expect("layout 2 decodes");
    assert_eq!(
        change,
        SeatChange {
            event_id: "e".into(),
            seat_ids: vec!["a-1-1".into()],
            change: SeatChangeKind::Lapsed,
            hold_id: None,
        }
    );
    let mut v1 = SEAT_CHANGE_V2.to_vec();
    v1[0] = 1;
    v1[10] = 0x02; // Sold: layout 1 had no Lapsed
    assert_eq!(
        decode::<SeatChange>(&v1).unwrap().change,
        SeatChangeKind::Sold
    );
}

#[test]
fn results_of_the_current_layout_tagged_1_to_4_still_decode_and_new_ones_are_tagged_5() {
    // Between the change and the bump, typed refusals went out tagged 1.
    let result = CommandResult {
        command_id: "c2".into(),
        outcome: Outcome::Refused(Refusal::HoldExpired),
    };
    let mut bytes = encode(&result);
    assert_eq!(bytes[0], 5);
    assert_eq!(decode::<CommandResult>(&bytes).unwrap(), result);
    // Layouts 3 to 5 only added a refusal at the end: layout 2's bodies are layout 5's.
    for older in [4, 3, 2, 1] {
        bytes[0] = older;
        assert_eq!(decode::<CommandResult>(&bytes).unwrap(), result);
    }
}
