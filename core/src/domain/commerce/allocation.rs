//! Splitting a paid order across warehouses: fewest shipments first, then nearest to the
//! shipping address, each line spilling over to the next warehouse when one runs short.

use std::collections::BTreeMap;

/// A warehouse as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub warehouse: String,
    /// Kilometres to the shipping address (0 when the order has none).
    pub distance_km: f64,
    /// Allocatable units per SKU.
    pub available: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Per warehouse, in the order chosen: the (sku, quantity) it ships.
    pub shipments: Vec<(String, Vec<(String, u64)>)>,
    /// Per SKU, what no warehouse could supply.
    pub shortfall: Vec<(String, u64)>,
}

/// Exact search for the fewest warehouses is used up to this many candidates (2^12 subsets);
/// beyond it, a greedy cover.
const EXACT_LIMIT: usize = 12;

/// Plans `lines` (sku, quantity) over `sources`. With a shortfall nothing should ship: the plan
/// still says what each warehouse could give, and what is missing.
pub fn plan(lines: &[(String, u64)], sources: &[Source]) -> Plan {
    let mut candidates: Vec<&Source> = sources
        .iter()
        .filter(|s| lines.iter().any(|(sku, _)| stock(s, sku) > 0))
        .collect();
    candidates.sort_by(|a, b| {
        a.distance_km
            .total_cmp(&b.distance_km)
            .then_with(|| a.warehouse.cmp(&b.warehouse))
    });
    let chosen = if candidates.len() <= EXACT_LIMIT {
        fewest_exact(lines, &candidates)
    } else {
        None
    }
    .unwrap_or_else(|| greedy(lines, &candidates));
    assign(lines, &chosen)
}

fn stock(source: &Source, sku: &str) -> u64 {
    source.available.get(sku).copied().unwrap_or(0)
}

fn covers(lines: &[(String, u64)], set: &[&Source]) -> bool {
    lines
        .iter()
        .all(|(sku, qty)| set.iter().map(|s| stock(s, sku)).sum::<u64>() >= *qty)
}

/// The smallest set of warehouses that covers every line, nearest in total among equals.
fn fewest_exact<'a>(lines: &[(String, u64)], candidates: &[&'a Source]) -> Option<Vec<&'a Source>> {
    let n = candidates.len();
    let mut best: Option<(u32, f64, u32)> = None;
    for mask in 1u32..(1u32 << n) {
        let size = mask.count_ones();
        if best.is_some_and(|(s, _, _)| size > s) {
            continue;
        }
        let set: Vec<&Source> = (0..n)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| candidates[i])
            .collect();
        if !covers(lines, &set) {
            continue;
        }
        let distance: f64 = set.iter().map(|s| s.distance_km).sum();
        let better = match best {
            None => true,
            Some((s, d, _)) => size < s || (size == s && distance < d),
        };
        if better {
            best = Some((size, distance, mask));
        }
    }
    best.map(|(_, _, mask)| {
        (0..n)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| candidates[i])
            .collect()
    })
}

/// Repeatedly the warehouse that supplies the most of what is still missing (nearest on ties).
fn greedy<'a>(lines: &[(String, u64)], candidates: &[&'a Source]) -> Vec<&'a Source> {
    let mut missing: BTreeMap<&str, u64> = lines.iter().map(|(s, q)| (s.as_str(), *q)).collect();
    let mut chosen: Vec<&Source> = Vec::new();
    loop {
        let best = candidates
            .iter()
            .filter(|c| !chosen.iter().any(|x| x.warehouse == c.warehouse))
            .map(|c| {
                let gives: u64 = missing.iter().map(|(sku, q)| stock(c, sku).min(*q)).sum();
                (gives, *c)
            })
            .filter(|(gives, _)| *gives > 0)
            .max_by(|(ga, a), (gb, b)| ga.cmp(gb).then(b.distance_km.total_cmp(&a.distance_km)));
        let Some((_, source)) = best else { break };
        for (sku, q) in missing.iter_mut() {
            *q -= stock(source, sku).min(*q);
        }
        chosen.push(source);
        if missing.values().all(|q| *q == 0) {
            break;
        }
    }
    chosen
}

/// Fills each line from the chosen warehouses, nearest first, spilling over.
fn assign(lines: &[(String, u64)], chosen: &[&Source]) -> Plan {
    let mut ordered: Vec<&Source> = chosen.to_vec();
    ordered.sort_by(|a, b| {
        a.distance_km
            .total_cmp(&b.distance_km)
            .then_with(|| a.warehouse.cmp(&b.warehouse))
    });
    let mut per_warehouse: Vec<(String, Vec<(String, u64)>)> = ordered
        .iter()
        .map(|s| (s.warehouse.clone(), Vec::new()))
        .collect();
    let mut shortfall = Vec::new();
    for (sku, qty) in lines {
        let mut need = *qty;
        for (i, source) in ordered.iter().enumerate() {
            let take = stock(source, sku).min(need);
            if take > 0 {
                per_warehouse[i].1.push((sku.clone(), take));
                need -= take;
            }
        }
        if need > 0 {
            shortfall.push((sku.clone(), need));
        }
    }
    per_warehouse.retain(|(_, items)| !items.is_empty());
    Plan {
        shipments: per_warehouse,
        shortfall,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, distance_km: f64, stock: &[(&str, u64)]) -> Source {
        Source {
            warehouse: name.into(),
            distance_km,
            available: stock.iter().map(|(s, q)| ((*s).into(), *q)).collect(),
        }
    }

    fn lines(items: &[(&str, u64)]) -> Vec<(String, u64)> {
        items.iter().map(|(s, q)| ((*s).into(), *q)).collect()
    }

    #[test]
    fn one_far_warehouse_beats_two_near_ones() {
        let sources = [
            source("near-a", 1.0, &[("x", 5)]),
            source("near-b", 2.0, &[("y", 5)]),
            source("far", 900.0, &[("x", 5), ("y", 5)]),
        ];
        let p = plan(&lines(&[("x", 1), ("y", 1)]), &sources);
        assert_eq!(
            p.shipments,
            vec![("far".into(), lines(&[("x", 1), ("y", 1)]))]
        );
        assert!(p.shortfall.is_empty());
    }

    #[test]
    fn nearest_among_equals_then_spill_over() {
        let sources = [
            source("a", 50.0, &[("x", 10)]),
            source("b", 5.0, &[("x", 3)]),
            source("c", 10.0, &[("x", 4)]),
        ];
        assert_eq!(
            plan(&lines(&[("x", 2)]), &sources).shipments,
            vec![("b".into(), lines(&[("x", 2)]))]
        );
        // 7 units: no single warehouse but "a" can; one shipment wins over nearness.
        assert_eq!(
            plan(&lines(&[("x", 7)]), &sources).shipments,
            vec![("a".into(), lines(&[("x", 7)]))]
        );
        // 12: two shipments are needed; the nearest pair that covers it is b + a (13 units),
        // then c + a; b + a is nearer, and the nearer one ships first.
        assert_eq!(
            plan(&lines(&[("x", 12)]), &sources).shipments,
            vec![
                ("b".into(), lines(&[("x", 3)])),
                ("a".into(), lines(&[("x", 9)]))
            ]
        );
    }

    #[test]
    fn a_shortfall_is_reported() {
        let sources = [source("a", 0.0, &[("x", 2)])];
        let p = plan(&lines(&[("x", 3), ("y", 1)]), &sources);
        assert_eq!(p.shortfall, lines(&[("x", 1), ("y", 1)]));
    }

    #[test]
    fn greedy_covers_many_warehouses() {
        let sources: Vec<Source> = (0..40)
            .map(|i| source(&format!("w{i:02}"), f64::from(i), &[("x", 1)]))
            .collect();
        let p = plan(&lines(&[("x", 30)]), &sources);
        assert_eq!(p.shipments.len(), 30);
        assert!(p.shortfall.is_empty());
        assert_eq!(p.shipments[0].0, "w00", "nearest first");
    }
}
