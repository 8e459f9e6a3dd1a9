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
/// More expansions than this and the word is too ambiguous to widen further: those with the
/// fewest typos are kept, and among them the most frequent (shoppers mean the common words
/// more often than the rare ones).
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
/// [`MAX_EXPANSIONS`], the fewest typos first, then whole words, then the most frequent.
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
    let whole_dfa = builder.build_dfa(word);
    let prefix_dfa = prefix.then(|| builder.build_prefix_dfa(word));
    let dfa = prefix_dfa.as_ref().unwrap_or(&whole_dfa);
    let mut found: HashMap<String, u64> = HashMap::new();
    for segment in searcher.segment_readers() {
        let index = segment.inverted_index(field)?;
        let mut stream = index.terms().search(Dfa(dfa)).into_stream()?;
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
            let distance = |d: Distance| match d {
                Distance::Exact(d) => Some(d),
                Distance::AtLeast(_) => None,
            };
            let whole = distance(whole_dfa.eval(&text));
            let started = prefix_dfa.as_ref().and_then(|p| distance(p.eval(&text)));
            // A completion when the word is nearer as the start of something longer than as
            // a whole: `rumigo` completes `rumig` (no typo) rather than adding a letter to it.
            let (typos, completes) = match (whole, started) {
                (Some(w), Some(p)) if p < w => (p, true),
                (Some(w), _) => (w, false),
                (None, Some(p)) => (p, true),
                (None, None) => return None,
            };
            let expansion = Expansion {
                completes,
                typos,
                word: text,
            };
            Some((freq, expansion))
        })
        .collect();
    // Fewer typos first, whole words before completions, then the most frequent: a cap
    // must not drop the word typed right in favour of common words two edits away.
    ranked.sort_by(|a, b| {
        (a.1.typos, a.1.completes)
            .cmp(&(b.1.typos, b.1.completes))
            .then(b.0.cmp(&a.0))
            .then_with(|| a.1.word.cmp(&b.1.word))
    });
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

    #[test]
    fn a_word_that_goes_on_is_a_completion_not_a_typo() {
        let prefix = builder(1).build_prefix_dfa("rumig");
        let whole = builder(1).build_dfa("rumig");
        assert!(matches!(prefix.eval("rumigo"), Distance::Exact(0)));
        assert!(matches!(whole.eval("rumigo"), Distance::Exact(1)));
    }
}
