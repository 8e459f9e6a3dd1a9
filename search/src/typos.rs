//! Typo tolerance by expansion: a query word of five letters or more also matches the words of
//! the index one edit (or one swap of neighbours) away. The neighbours are found by walking the
//! term dictionary with a Levenshtein automaton, and searched as ordinary terms, so a typo match
//! is scored by BM25 like any other (at a lower weight), and a word that is spelled right costs
//! nothing extra: tantivy's own fuzzy query would gather every document of the word itself into
//! a bitset first.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use levenshtein_automata::{Distance, LevenshteinAutomatonBuilder, DFA, SINK_STATE};
use tantivy::schema::Field;
use tantivy::Searcher;
use tantivy_fst::Automaton;

/// More neighbours than this and the word is too ambiguous to widen further.
const MAX_NEIGHBOURS: usize = 32;

struct Dfa(DFA);

impl Automaton for Dfa {
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

fn builder() -> &'static LevenshteinAutomatonBuilder {
    // Building the parametric automaton is the expensive part; it is the same for every word.
    static BUILDER: OnceLock<LevenshteinAutomatonBuilder> = OnceLock::new();
    BUILDER.get_or_init(|| LevenshteinAutomatonBuilder::new(1, true))
}

/// The words of `field` one typo away from `word`, not counting `word` itself.
pub fn neighbours(searcher: &Searcher, field: Field, word: &str) -> tantivy::Result<Vec<String>> {
    let mut out = BTreeSet::new();
    // One automaton for every segment: building it costs more than walking a dictionary.
    let dfa = Dfa(builder().build_dfa(word));
    for segment in searcher.segment_readers() {
        let index = segment.inverted_index(field)?;
        let mut stream = index.terms().search(&dfa).into_stream()?;
        while stream.advance() {
            let key = stream.key();
            if key != word.as_bytes() {
                if let Ok(text) = std::str::from_utf8(key) {
                    out.insert(text.to_owned());
                }
            }
            if out.len() >= MAX_NEIGHBOURS {
                break;
            }
        }
    }
    Ok(out.into_iter().collect())
}
