//! The text part of a search: which documents the words match and how they rank.
//!
//! Every word must match (in the name, the body or the id), exactly or within its typo
//! budget, and the last word as typed so far may also be the start of a word. Each word adds,
//! in tiers far apart so that a lower one only breaks ties of the higher:
//! - [`TYPO_FREE`] when it matched without a typo (as typed, or completed);
//! - [`IN_NAME`] when it (or a word it reaches) is in the name;
//! - [`WHOLE_WORD`] when it matched a whole word, not the start of a longer one;
//! - (the collector adds how much of the name the query covers, and an exact name above all;)
//! - its BM25 score (name words count double), a completion's at half, a typo's at a quarter,
//!   two typos' at a tenth.
//!
//! Each way a word matches carries its tier ([`Shifted`]) under a disjunction-max, so the best
//! way counts once and the tier costs no second pass over the word's postings.
//!
//! Words that join or split: two neighbouring query words also match the word they make
//! together when the index has it (`redis server` finds "redisserver"), and a query word the
//! index does not have also matches two words it splits into (`redisserver` finds "redis
//! server"). A word with letters and digits also matches its parts (`python3` finds
//! "python 3"; the index holds `python3` as `python` and `3` too, see [`crate::digits`]).

use std::collections::BTreeMap;

use tantivy::query::{
    BooleanQuery, BoostQuery, ConstScoreQuery, DisjunctionMaxQuery, Occur, Query, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{Score, Searcher, Term};

use crate::generation::Generation;
use crate::shifted::Shifted;
use crate::typos::Reach;

/// What a query word matched without a typo adds to a document's score: more than the tiers
/// below it together, so fewer typos rank first.
const TYPO_FREE: Score = 100_000.0;
/// What a query word found in the name adds: among documents with as many typos, the one
/// whose name has more of the words ranks first.
const IN_NAME: Score = 10_000.0;
/// What a query word matched as a whole word (not as the start of a longer one) adds.
const WHOLE_WORD: Score = 1_000.0;
/// A word is tried as two only from this many letters, each half at least [`HALF_MIN_CHARS`].
const SPLIT_MIN_CHARS: usize = 6;
const HALF_MIN_CHARS: usize = 2;

/// The text query of one search, and the words (with weights) snippets should highlight.
pub struct TextQuery<'a> {
    pub searcher: &'a Searcher,
    pub generation: &'a Generation,
    /// Every searchable word of a document.
    pub text: Field,
    /// The name's words.
    pub name: Field,
    pub highlight: BTreeMap<String, Score>,
}

impl TextQuery<'_> {
    /// The query for `tokens` (distinct, in order); `typing` when the last is a prefix.
    pub fn build(&mut self, tokens: &[String], typing: bool) -> tantivy::Result<Box<dyn Query>> {
        let mut groups: Vec<Box<dyn Query>> = Vec::with_capacity(tokens.len());
        let mut i = 0;
        while i < tokens.len() {
            let reach = |i: usize| {
                if typing && i + 1 == tokens.len() {
                    Reach::Prefix
                } else {
                    Reach::Whole
                }
            };
            let word = self.word(&tokens[i], reach(i))?;
            let joined = tokens
                .get(i + 1)
                .map(|next| format!("{}{next}", tokens[i]))
                .filter(|j| j.len() < crate::MAX_TOKEN_BYTES);
            if let Some(joined) = joined {
                if self.known(&joined)? {
                    let next = self.word(&tokens[i + 1], reach(i + 1))?;
                    let apart: Box<dyn Query> = Box::new(BooleanQuery::new(vec![
                        (Occur::Must, word),
                        (Occur::Must, next),
                    ]));
                    // The joined word stands for both: twice the tiers of one.
                    let together = self.tiered(
                        vec![Box::new(Shifted::new(
                            self.scored(&joined),
                            2.0 * (TYPO_FREE + WHOLE_WORD),
                        ))],
                        vec![(Occur::Should, self.in_name(&joined))],
                        2.0 * IN_NAME,
                    );
                    self.highlight.insert(joined, 1.0);
                    groups.push(Box::new(DisjunctionMaxQuery::new(vec![apart, together])));
                    i += 2;
                    continue;
                }
            }
            groups.push(word);
            i += 1;
        }
        Ok(if groups.len() == 1 {
            groups.remove(0)
        } else {
            Box::new(BooleanQuery::new(
                groups.into_iter().map(|g| (Occur::Must, g)).collect(),
            ))
        })
    }

    /// The ways one query word matches, each with its tier, and whether it is in the name.
    fn word(&mut self, token: &str, reach: Reach) -> tantivy::Result<Box<dyn Query>> {
        self.highlight.insert(token.to_owned(), 1.0);
        let expansions = self
            .generation
            .expansions(self.searcher, self.text, token, reach)?;
        let mut ways: Vec<Box<dyn Query>> = vec![Box::new(Shifted::new(
            self.scored(token),
            TYPO_FREE + WHOLE_WORD,
        ))];
        let mut names = vec![(Occur::Should, self.in_name(token))];
        let mut parts = crate::digits::parts(token);
        // A word the index lacks and no typo reaches may be two words typed as one.
        let split = if parts.is_empty() && expansions.is_empty() {
            self.split(token)?
        } else {
            None
        };
        if let Some((left, right)) = &split {
            parts = vec![left.as_str(), right.as_str()];
        }
        if !parts.is_empty() {
            let all = |each: &dyn Fn(&str) -> Box<dyn Query>| -> Box<dyn Query> {
                Box::new(BooleanQuery::new(
                    parts.iter().map(|p| (Occur::Must, each(p))).collect(),
                ))
            };
            ways.push(Box::new(Shifted::new(
                all(&|p| self.scored(p)),
                TYPO_FREE + WHOLE_WORD,
            )));
            names.push((Occur::Should, all(&|p| self.in_name(p))));
        }
        for near in expansions.iter() {
            let weight = match (near.typos, near.completes) {
                (0, _) => 0.5,
                (1, _) => 0.25,
                _ => 0.1,
            };
            let tier = if near.typos == 0 { TYPO_FREE } else { 0.0 }
                + if near.completes { 0.0 } else { WHOLE_WORD };
            let boosted = Box::new(BoostQuery::new(self.scored(&near.word), weight));
            ways.push(Box::new(Shifted::new(boosted, tier)));
            names.push((Occur::Should, self.in_name(&near.word)));
            self.highlight.insert(near.word.clone(), 0.5);
        }
        Ok(self.tiered(ways, names, IN_NAME))
    }

    /// The best of `ways`, plus `in_name` when any of `names` matches.
    fn tiered(
        &self,
        ways: Vec<Box<dyn Query>>,
        names: Vec<(Occur, Box<dyn Query>)>,
        in_name: Score,
    ) -> Box<dyn Query> {
        // One way or one name term is searched as it is: a wrapper costs every document.
        let mut ways = ways;
        let best: Box<dyn Query> = if ways.len() == 1 {
            ways.remove(0)
        } else {
            Box::new(DisjunctionMaxQuery::new(ways))
        };
        let mut names = names;
        let any_name: Box<dyn Query> = if names.len() == 1 {
            names.remove(0).1
        } else {
            Box::new(BooleanQuery::new(names))
        };
        let named = ConstScoreQuery::new(any_name, in_name);
        // The name's words are in `text` too, so the ways alone decide what matches; the name
        // only adds to the score, looked up for the documents the ways find rather than
        // walked as a union with them.
        Box::new(BooleanQuery::new(vec![
            (Occur::Must, best),
            (Occur::Should, Box::new(named)),
        ]))
    }

    /// Two words of the index that `token` (not itself a word of the index) is made of: the
    /// cut whose rarer half is the most common.
    fn split(&self, token: &str) -> tantivy::Result<Option<(String, String)>> {
        let chars: Vec<(usize, char)> = token.char_indices().collect();
        if chars.len() < SPLIT_MIN_CHARS || self.known(token)? {
            return Ok(None);
        }
        let mut best: Option<(u64, usize)> = None;
        for (k, (at, _)) in chars
            .iter()
            .enumerate()
            .take(chars.len() - HALF_MIN_CHARS + 1)
            .skip(HALF_MIN_CHARS)
        {
            let (left, right) = token.split_at(*at);
            let rarer = self.doc_freq(left)?.min(self.doc_freq(right)?);
            if rarer > 0 && best.is_none_or(|(f, _)| rarer > f) {
                best = Some((rarer, k));
            }
        }
        Ok(best.map(|(_, k)| {
            let (left, right) = token.split_at(chars[k].0);
            (left.to_owned(), right.to_owned())
        }))
    }

    fn known(&self, word: &str) -> tantivy::Result<bool> {
        Ok(self.doc_freq(word)? > 0)
    }

    fn doc_freq(&self, word: &str) -> tantivy::Result<u64> {
        self.searcher
            .doc_freq(&Term::from_field_text(self.text, word))
    }

    fn scored(&self, word: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(self.text, word),
            IndexRecordOption::WithFreqs,
        ))
    }

    fn in_name(&self, word: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(self.name, word),
            IndexRecordOption::Basic,
        ))
    }
}
