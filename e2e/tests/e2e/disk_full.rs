//! Fill the disk under `mercato up` in the middle of a hold storm (hardening 2): while it is
//! full every hold is answered, placed (201) or refused with 503 and a code; once space
//! returns holds are placed again without a restart; and after a restart every hold that was
//! acknowledged is still there. The disk is a small tmpfs filled by a filler file.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mercato_e2e::storm::{Shopper, Storm};
use mercato_e2e::{harness, Api};
use mercato_testkit::small_disk::SmallDisk;
use reqwest::StatusCode;

const SHOPPERS: usize = 8;
const ROWS: u32 = 10;
const SEATS_PER_ROW: u32 = 400;

/// An event of 4,000 seats: every shopper has seats enough for the whole storm, even when
/// most holds are refused.
fn manifest() -> String {
    format!(
        r#"apiVersion: mercato.dev/v1alpha1
kind: Event
metadata:
  name: diskfull
spec:
  title: A full disk
  venue: {{ name: Test Hall, city: Testville, lat: 10.0, lon: 20.0 }}
  startsAt: 2099-01-01T20:00:00Z
  onSaleAt: 2020-01-01T10:00:00Z
  maxSeatsPerUser: 10000
  tiers:
    - {{ id: std, name: Standard, price: {{ amount: 2500, currency: EUR }} }}
  sections:
    - {{ id: floor, tier: std, rows: {ROWS}, seatsPerRow: {SEATS_PER_ROW} }}
"#
    )
}

/// The seat numbered `n` (from 0), and back.
fn seat_id(n: u32) -> String {
    format!("floor-{}-{}", n / SEATS_PER_ROW + 1, n % SEATS_PER_ROW + 1)
}

fn seat_number(id: &str) -> Option<u32> {
    let mut parts = id.rsplit('-');
    let seat: u32 = parts.next()?.parse().ok()?;
    let row: u32 = parts.next()?.parse().ok()?;
    Some((row - 1) * SEATS_PER_ROW + seat - 1)
}

#[derive(Default)]
struct Seen {
    /// hold id -> seat, for each hold answered 201.
    placed: BTreeMap<String, String>,
    /// code -> how many 503s answered with it.
    refused: BTreeMap<String, usize>,
    /// Anything else: status and body.
    unexpected: Vec<String>,
}

/// One shopper's loop: one seat per hold, each seat its own (shopper i takes seats i, i + n,
/// ...), never asked for twice, so no answer but 201 or 503 is right. After a 503 it waits
/// a little, as a client honouring Retry-After would.
async fn hold_seats(api: Api, i: usize, shopper: Shopper<Seen>) {
    let mut seat = i as u32;
    while shopper.running() && seat < ROWS * SEATS_PER_ROW {
        let seat_id = seat_id(seat);
        seat += SHOPPERS as u32;
        let Ok(answer) = api.hold("diskfull", std::slice::from_ref(&seat_id)).await else {
            return;
        };
        shopper.record(|seen| match answer.status {
            StatusCode::CREATED => {
                let id = answer.body["id"].as_str().unwrap_or_default().to_owned();
                seen.placed.insert(id, seat_id);
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                *seen.refused.entry(answer.code().to_owned()).or_default() += 1;
            }
            other => seen.unexpected.push(format!("{other}: {}", answer.body)),
        });
        if answer.status == StatusCode::SERVICE_UNAVAILABLE {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_refuses_holds_with_503_and_loses_none_and_holds_resume_with_space() {
    let Some(disk) = SmallDisk::mount(96 << 20) else {
        return;
    };
    let dir = disk.path().join("data");
    let hold_ttl = Some(Duration::from_secs(3600));
    let run = harness::start(Some(dir.clone()), hold_ttl).await.unwrap();
    run.apply(&manifest()).await.unwrap();
    let shoppers = run.api.shoppers("diskfull", SHOPPERS).await.unwrap();
    let storm = Storm::start(&shoppers, hold_seats);
    storm
        .until(|s| s.placed.len() >= 50, Duration::from_secs(30))
        .await;
    disk.fill_leaving(64 * 1024).unwrap();
    let full_at = Instant::now();
    storm
        .until(
            |s| s.refused.values().sum::<usize>() >= 30,
            Duration::from_secs(60),
        )
        .await;
    // Stay full a while: every worker, checkpoint and purge meets the full disk.
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(full_at.elapsed())).await;
    let placed_while_full = storm.seen(|s| s.placed.len());
    disk.free().unwrap();
    let freed_at = Instant::now();
    storm
        .until(
            |s| s.placed.len() >= placed_while_full + 50,
            Duration::from_secs(30),
        )
        .await;
    let resumed_after = freed_at.elapsed();
    let seen = storm.stop().await;
    eprintln!(
        "placed {} holds, refused {:?}; placing resumed {:.1} s after space returned",
        seen.placed.len(),
        seen.refused,
        resumed_after.as_secs_f64()
    );
    assert!(
        seen.unexpected.is_empty(),
        "answers other than 201 and 503: {:?}",
        seen.unexpected
    );
    assert!(
        seen.refused.values().sum::<usize>() >= 30,
        "the full disk refused too few holds: {:?}",
        seen.refused
    );
    assert!(
        seen.placed.len() >= placed_while_full + 50,
        "holds did not resume after space returned: {} placed, {placed_while_full} while full",
        seen.placed.len()
    );

    // Every acknowledged hold survives a restart, on its seat.
    run.platform.stop().await;
    let run = harness::start(Some(dir), hold_ttl).await.unwrap();
    let statuses: BTreeMap<String, String> = run
        .api
        .seat_statuses("diskfull", "floor")
        .await
        .unwrap()
        .into_iter()
        .collect();
    for (id, seat) in &seen.placed {
        let n = seat_number(seat).unwrap();
        assert_eq!(seat_id(n), *seat);
        let owner = shoppers[n as usize % SHOPPERS].against(&run.api);
        let hold = owner.get(&format!("/api/v1/holds/{id}")).await.unwrap();
        assert_eq!(
            hold.status,
            StatusCode::OK,
            "acknowledged hold {id} is lost: {}",
            hold.body
        );
        assert_eq!(hold.body["status"], "active", "hold {id}: {}", hold.body);
        assert_eq!(
            statuses.get(seat).map(String::as_str),
            Some("held"),
            "{seat}"
        );
    }
    run.platform.stop().await;
}
