//! Words with digits in them: `python3` is also indexed as `python` and `3`, so a shopper who
//! types `python 3` finds it, and one who types `python3` finds `Python 3` (the query side asks
//! for the parts together as another way to match the word, see `SearchIndex::text_query`).
//! The rule: a token is cut where letters meet digits, and each run of letters or digits is a
//! part; `py3` has the parts `py` and `3`, which find `py 3` but not `python 3`.

use tantivy::tokenizer::{Token, TokenFilter, TokenStream, Tokenizer};

/// The runs of letters and of digits in `word`, when it has more than one; empty otherwise.
pub fn parts(word: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut last_digit: Option<bool> = None;
    for (at, c) in word.char_indices() {
        let digit = c.is_ascii_digit();
        if last_digit.is_some_and(|d| d != digit) {
            out.push(&word[start..at]);
            start = at;
        }
        last_digit = Some(digit);
    }
    if out.is_empty() {
        return out;
    }
    out.push(&word[start..]);
    out
}

/// Emits each token, then its parts (see [`parts`]) at the same position.
#[derive(Clone, Copy, Default)]
pub struct DigitParts;

impl TokenFilter for DigitParts {
    type Tokenizer<T: Tokenizer> = DigitPartsFilter<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> DigitPartsFilter<T> {
        DigitPartsFilter {
            inner: tokenizer,
            pending: Vec::new(),
        }
    }
}

#[derive(Clone)]
pub struct DigitPartsFilter<T> {
    inner: T,
    pending: Vec<Token>,
}

impl<T: Tokenizer> Tokenizer for DigitPartsFilter<T> {
    type TokenStream<'a> = DigitPartsStream<'a, T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        self.pending.clear();
        DigitPartsStream {
            tail: self.inner.token_stream(text),
            pending: &mut self.pending,
        }
    }
}

pub struct DigitPartsStream<'a, T> {
    tail: T,
    /// The token and its parts still to emit, the next on top.
    pending: &'a mut Vec<Token>,
}

impl<T: TokenStream> TokenStream for DigitPartsStream<'_, T> {
    fn advance(&mut self) -> bool {
        self.pending.pop();
        if !self.pending.is_empty() {
            return true;
        }
        if !self.tail.advance() {
            return false;
        }
        let token = self.tail.token();
        let split = parts(&token.text);
        if !split.is_empty() {
            for part in split.iter().rev() {
                self.pending.push(Token {
                    text: (*part).to_owned(),
                    ..token.clone()
                });
            }
            self.pending.push(token.clone());
        }
        true
    }

    fn token(&self) -> &Token {
        self.pending.last().unwrap_or_else(|| self.tail.token())
    }

    fn token_mut(&mut self) -> &mut Token {
        match self.pending.last_mut() {
            Some(t) => t,
            None => self.tail.token_mut(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::tokenizer::{SimpleTokenizer, TextAnalyzer};

    #[test]
    fn letters_and_digits_are_cut_apart() {
        assert_eq!(parts("python3"), ["python", "3"]);
        assert_eq!(parts("a320neo"), ["a", "320", "neo"]);
        assert!(parts("python").is_empty());
        assert!(parts("2024").is_empty());
        let mut analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(DigitParts)
            .build();
        let mut stream = analyzer.token_stream("python3 and 2 more");
        let mut seen = Vec::new();
        while let Some(t) = stream.next() {
            seen.push(t.text.clone());
        }
        assert_eq!(seen, ["python3", "python", "3", "and", "2", "more"]);
    }
}
