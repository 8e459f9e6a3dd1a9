//! Property-based fuzzing (hardening 8) of the manifest parser: the examples with random
//! edits, and text that is not YAML at all. Whatever comes in, `parse_stream` gives manifests
//! or one error with a code and a message, never a panic. (cargo-fuzz needs a nightly
//! toolchain; proptest runs on stable in every test run, `PROPTEST_CASES` raises the count, and
//! failures found are saved under `proptest-regressions/` and replayed first.)

use proptest::prelude::*;

use crate::Manifest;

const EXAMPLES: [&str; 4] = [
    include_str!("../../examples/stadium-event.yaml"),
    include_str!("../../examples/theatre-event.yaml"),
    include_str!("../../examples/bookstore-inventory.yaml"),
    include_str!("../../examples/bookstore-warehouses.yaml"),
];

/// Characters that matter to YAML, so that edits make near-misses of the grammar.
const YAML_CHARS: &[u8] = b" \n\t:-#&*!|>'\"%@`{}[],?0123456789.eE+~nulltrue";

fn mutated() -> impl Strategy<Value = String> {
    let edit = (
        any::<prop::sample::Index>(),
        0u8..4,
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
    );
    (
        prop::sample::select(EXAMPLES.to_vec()),
        prop::collection::vec(edit, 1..6),
    )
        .prop_map(|(base, edits)| {
            let mut text: Vec<char> = base.chars().collect();
            for (at, op, pick, len) in edits {
                let i = at.index(text.len() + 1);
                let c = YAML_CHARS[pick.index(YAML_CHARS.len())] as char;
                match op {
                    0 if i < text.len() => {
                        text.remove(i);
                    }
                    1 if i < text.len() => text[i] = c,
                    // A run of lines copied elsewhere: duplicated keys, documents, indentation.
                    2 => {
                        let from = pick.index(text.len().max(1)).min(text.len());
                        let to = (from + len.index(120)).min(text.len());
                        let chunk: Vec<char> = text[from..to].to_vec();
                        text.splice(i..i, chunk);
                    }
                    _ => text.insert(i, c),
                }
            }
            text.into_iter().collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_text_is_manifests_or_one_coded_error(text in prop_oneof![
        4 => mutated(),
        1 => "\\PC{0,300}",
    ]) {
        match Manifest::parse_stream(&text) {
            Ok(manifests) => {
                for m in &manifests {
                    prop_assert!(!m.name().is_empty());
                }
            }
            Err(e) => {
                prop_assert!(!e.code().is_empty());
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}
