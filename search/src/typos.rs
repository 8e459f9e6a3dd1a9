//! Typo tolerance and as-you-type prefixes by expansion: a query word also matches the words of
//! the index within its typo budget (one edit from five letters, two from nine; a swap of
//! neighbours is one edit), and the last word of a query also matches the words that begin
//! with it (or with something within its budget of it). The words are found by walking the
//! term dictionary with a Levenshtein automaton and searched as ordinary terms, so a near match
//! is scored by BM25 like any other (at a lower weight), and a word that is spelled right costs
//! nothing extra: tantivy's own fuzzy query would gather every document of the word itself into
//! a bitset first.

use std::collections::HashMap;
use std::sync::OnceLock;

use levenshtein_automata::{Distance, LevenshteinAutomatonBuilder, DFA, SINK_STATE};
use tantivy::schema::Field;
use tantivy::Searcher;
use tantivy_fst::Automaton;

/// Words this long or longer match with one typo (an edit or a swap of two letters).
pub const ONE_TYPO_MIN_CHARS: usize = 5;
/// Words this long or longer match with two typos.
pub const TWO_TYPOS_MIN_CHARS: usize = 9;
/// The last word of a query is taken as a prefix from this many letters: one letter would
/// stand for a twenty-sixth of the dictionary.
pub const PREFIX_MIN_CHARS: usize = 2;
/// More expansions than this and the word is too ambiguous to widen further: the most
/// frequent are kept (shoppers mean the common words more often than the rare ones).
pub const MAX_EXPANSIONS: usize = 32;

/// Edits a query word of `chars` letters may carry and still match.
pub fn budget(chars: usize) -> u8 {
    if chars >= TWO_TYPOS_MIN_CHARS {
        2
    } else if chars >= ONE_TYPO_MIN_CHARS {
        1
    } else {
        0
    }
}

/// How a query word may match the words of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reach {
    /// The word within its typo budget.
    Whole,
    /// Any word beginning with the query word, or with a word within its budget: the last
    /// word of a query, as typed so far.
    Prefix,
}

/// A word of the index a query word reaches, and how far it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub word: String,
    /// Edits between the query word and the word (or its prefix).
    pub typos: u8,
    /// The word is longer than what was typed: a completion.
    pub completes: bool,
}

struct Dfa<'a>(&'a DFA);

impl Automaton for Dfa<'_> {
    type State = u32;

    fn start(&self) -> u32 {
        self.0.initial_state()
    }

    fn is_match(&self, state: &u32) -> bool {
        matches!(self.0.distance(*state), Distance::Exact(_))
    }

    fn can_match(&self, state: &u32) -> bool {
        *state != SINK_STATE
    }

    fn accept(&self, state: &u32, byte: u8) -> u32 {
        self.0.transition(*state, byte)
    }
}

fn builder(distance: u8) -> &'static LevenshteinAutomatonBuilder {
    // Building the parametric automaton is the expensive part; it is the same for every word.
    static BUILDERS: [OnceLock<LevenshteinAutomatonBuilder>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let d = distance.min(2);
    BUILDERS[usize::from(d)].get_or_init(|| LevenshteinAutomatonBuilder::new(d, true))
}

/// The words of `field` that `word` reaches, not counting `word` itself: at most
/// [`MAX_EXPANSIONS`], the most frequent first.
pub fn expansions(
    searcher: &Searcher,
    field: Field,
    word: &str,
    reach: Reach,
) -> tantivy::Result<Vec<Expansion>> {
    let chars = word.chars().count();
    let distance = budget(chars);
    let prefix = reach == Reach::Prefix && chars >= PREFIX_MIN_CHARS;
    if distance == 0 && !prefix {
        return Ok(Vec::new());
    }
    let builder = builder(distance);
    // One automaton for every segment: building it costs more than walking a dictionary.
    let dfa = if prefix {
        builder.build_prefix_dfa(word)
    } else {
        builder.build_dfa(word)
    };
    let exact = builder.build_dfa(word);
    let mut found: HashMap<String, u64> = HashMap::new();
    for segment in searcher.segment_readers() {
        let index = segment.inverted_index(field)?;
        let mut stream = index.terms().search(Dfa(&dfa)).into_stream()?;
        while stream.advance() {
            let key = stream.key();
            if key == word.as_bytes() {
                continue;
            }
            if let Ok(text) = std::str::from_utf8(key) {
                *found.entry(text.to_owned()).or_default() += u64::from(stream.value().doc_freq);
            }
        }
    }
    let mut ranked: Vec<(u64, Expansion)> = found
        .into_iter()
        .filter_map(|(text, freq)| {
            let whole = match exact.eval(&text) {
                Distance::Exact(d) => Some(d),
                Distance::AtLeast(_) => None,
            };
            let typos = match (whole, dfa.eval(&text)) {
                (Some(d), _) => d,
                (None, Distance::Exact(d)) => d,
                (None, Distance::AtLeast(_)) => return None,
            };
            let expansion = Expansion {
                completes: whole.is_none(),
                typos,
                word: text,
            };
            Some((freq, expansion))
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.word.cmp(&b.1.word)));
    ranked.truncate(MAX_EXPANSIONS);
    Ok(ranked.into_iter().map(|(_, e)| e).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_grows_with_the_word() {
        assert_eq!(budget(4), 0);
        assert_eq!(budget(5), 1);
        assert_eq!(budget(8), 1);
        assert_eq!(budget(9), 2);
    }

    #[test]
    fn a_prefix_automaton_reaches_completions_and_a_swap_is_one_edit() {
        let prefix = builder(1).build_prefix_dfa("guiat");
        assert!(matches!(prefix.eval("guitar"), Distance::Exact(1)));
        let two = builder(2).build_dfa("strawbery");
        assert!(matches!(two.eval("strawberry"), Distance::Exact(1)));
        assert!(matches!(two.eval("srtawberyr"), Distance::Exact(2)));
    }
}
