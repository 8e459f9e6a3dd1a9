//! The embedded engine's sorted set: members in (score, member) order, as Redis keeps a ZSET,
//! with a member's rank in O(√n)-ish time instead of a walk from the front. A waiting room's
//! queue is ranked on every join and every look, tens of thousands long; counting a rank by
//! walking a `BTreeSet` made each join cost as much as the queue was long.
//!
//! The order is kept in sorted chunks of at most [`CHUNK`] entries: a rank is the lengths of
//! the chunks before the member's own plus its place in that one (a binary search), an insert
//! or a removal moves at most one chunk's entries.

use std::collections::HashMap;

/// The most entries of one chunk; a fuller chunk is split in two.
const CHUNK: usize = 1024;

type Entry = (u64, String);

#[derive(Default)]
pub(super) struct RankedSet {
    chunks: Vec<Vec<Entry>>,
    scores: HashMap<String, u64>,
}

impl RankedSet {
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// The chunk `entry` belongs in: the first whose last entry is not before it (the last
    /// chunk for an entry after all of them).
    fn chunk_of(&self, entry: &Entry) -> usize {
        let at = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|last| last < entry));
        at.min(self.chunks.len().saturating_sub(1))
    }

    /// Puts `member` in with `score` unless it is there (its first score stays).
    pub fn insert(&mut self, member: &str, score: u64) -> bool {
        if self.scores.contains_key(member) {
            return false;
        }
        self.scores.insert(member.to_owned(), score);
        let entry = (score, member.to_owned());
        if self.chunks.is_empty() {
            self.chunks.push(vec![entry]);
            return true;
        }
        let at = self.chunk_of(&entry);
        let chunk = &mut self.chunks[at];
        let pos = chunk.binary_search(&entry).unwrap_or_else(|p| p);
        chunk.insert(pos, entry);
        if chunk.len() > CHUNK {
            let upper = chunk.split_off(CHUNK / 2);
            self.chunks.insert(at + 1, upper);
        }
        true
    }

    /// How many members come before `member`.
    pub fn rank(&self, member: &str) -> Option<u64> {
        let score = *self.scores.get(member)?;
        let entry = (score, member.to_owned());
        let at = self.chunk_of(&entry);
        let pos = self.chunks[at].binary_search(&entry).ok()?;
        let before: usize = self.chunks[..at].iter().map(Vec::len).sum();
        Some((before + pos) as u64)
    }

    /// Up to `count` members from the front.
    pub fn head(&self, count: usize) -> Vec<String> {
        self.chunks
            .iter()
            .flatten()
            .take(count)
            .map(|(_, member)| member.clone())
            .collect()
    }

    pub fn remove(&mut self, member: &str) -> bool {
        let Some(score) = self.scores.remove(member) else {
            return false;
        };
        let entry = (score, member.to_owned());
        let at = self.chunk_of(&entry);
        if let Ok(pos) = self.chunks[at].binary_search(&entry) {
            self.chunks[at].remove(pos);
            if self.chunks[at].is_empty() {
                self.chunks.remove(at);
            }
        }
        true
    }

    /// Removes every member scored below `below`; how many.
    pub fn trim_below(&mut self, below: u64) -> u64 {
        let mut removed = 0;
        while let Some(first) = self.chunks.first_mut() {
            let cut = first.partition_point(|(score, _)| *score < below);
            for (_, member) in first.drain(..cut) {
                self.scores.remove(&member);
                removed += 1;
            }
            if !first.is_empty() {
                break;
            }
            self.chunks.remove(0);
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Random inserts, removals and trims, against a plain `BTreeSet` walked from the front:
    /// every rank, head and length agrees, through many chunk splits and emptied chunks.
    #[test]
    fn agrees_with_a_walk_of_a_sorted_set() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut fast = RankedSet::default();
        let mut model: BTreeSet<Entry> = BTreeSet::new();
        let mut scores: HashMap<String, u64> = HashMap::new();
        for step in 0..40_000 {
            let member = format!("m{}", rng.gen_range(0..6_000));
            match rng.gen_range(0..10) {
                0..=5 => {
                    // Ties in score are ordered by member, as in Redis.
                    let score = rng.gen_range(0..3_000);
                    let added = !scores.contains_key(&member);
                    assert_eq!(fast.insert(&member, score), added);
                    if added {
                        scores.insert(member.clone(), score);
                        model.insert((score, member));
                    }
                }
                6..=8 => {
                    let had = scores.remove(&member);
                    assert_eq!(fast.remove(&member), had.is_some());
                    if let Some(score) = had {
                        model.remove(&(score, member));
                    }
                }
                _ if step % 50 == 0 => {
                    let below = rng.gen_range(0..200);
                    let gone: Vec<Entry> =
                        model.iter().filter(|(s, _)| *s < below).cloned().collect();
                    assert_eq!(fast.trim_below(below), gone.len() as u64);
                    for entry in gone {
                        scores.remove(&entry.1);
                        model.remove(&entry);
                    }
                }
                _ => {}
            }
            if step % 97 == 0 {
                let probe = format!("m{}", rng.gen_range(0..6_000));
                let walked = scores
                    .get(&probe)
                    .map(|s| model.range(..(*s, probe.clone())).count() as u64);
                assert_eq!(fast.rank(&probe), walked, "{probe} at step {step}");
                let head: Vec<String> = model.iter().take(5).map(|(_, m)| m.clone()).collect();
                assert_eq!(fast.head(5), head);
            }
            assert_eq!(fast.len(), model.len());
        }
        assert!(fast.chunks.len() > 1, "the test never split a chunk");
    }
}
