//! A product order's shipments leaving their warehouses and arriving, as pure changes of the
//! order's row: the order's status follows its shipments. The payments worker writes the row,
//! then takes shipped units off the warehouse's shelves.

use super::{Order, OrderStatus};
use crate::domain::commerce::ShipmentStatus;
use crate::domain::refusal::Refusal;

/// Moves shipment `shipment_id` of warehouse `warehouse` to `to` (shipped, with its tracking
/// number, or delivered). Ok(false) when it is there already (a retried request).
pub fn advance(
    order: &mut Order,
    warehouse: &str,
    shipment_id: &str,
    to: ShipmentStatus,
    tracking_number: Option<&str>,
    now_ms: u64,
) -> Result<bool, Refusal> {
    let not_found = || Refusal::ShipmentNotFound {
        shipment: shipment_id.to_owned(),
        warehouse: warehouse.to_owned(),
    };
    let status = order.status;
    let g = order.goods.as_deref_mut().ok_or_else(not_found)?;
    let s = g
        .shipments
        .iter_mut()
        .find(|s| s.id == shipment_id && s.warehouse == warehouse)
        .ok_or_else(not_found)?;
    if status == OrderStatus::Cancelled || s.status == ShipmentStatus::Cancelled {
        return Err(Refusal::ShipmentCancelled);
    }
    let tracking = tracking_number.map(str::to_owned);
    match (s.status, to) {
        (ShipmentStatus::Allocated, ShipmentStatus::Shipped) => s.tracking_number = tracking,
        (ShipmentStatus::Shipped, ShipmentStatus::Delivered) => {}
        (now, wanted) if now == wanted && (tracking.is_none() || s.tracking_number == tracking) => {
            return Ok(false)
        }
        (ShipmentStatus::Allocated, ShipmentStatus::Delivered) => {
            return Err(Refusal::ShipmentNotShipped)
        }
        (now, _) => return Err(Refusal::ShipmentAlreadyAdvanced { status: now }),
    }
    s.status = to;
    s.updated_ms = now_ms;
    let live: Vec<ShipmentStatus> = g
        .shipments
        .iter()
        .map(|s| s.status)
        .filter(|s| *s != ShipmentStatus::Cancelled)
        .collect();
    if live.iter().all(|s| *s == ShipmentStatus::Delivered) {
        order.status = OrderStatus::Delivered;
    } else if live
        .iter()
        .all(|s| matches!(s, ShipmentStatus::Shipped | ShipmentStatus::Delivered))
        && order.status == OrderStatus::Allocated
    {
        order.status = OrderStatus::Shipped;
    }
    Ok(true)
}
