//! A query whose score is another's plus a constant: how a query word's match carries its
//! ranking tier (see `SearchIndex::text_query`) in the same pass over its postings that scores
//! it by BM25. A constant-score clause beside the word would read the same postings again.

use std::fmt;

use tantivy::fastfield::AliveBitSet;
use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, SegmentReader, Term};
use tantivy::{SeekDangerResult, COLLECT_BLOCK_BUFFER_LEN};

/// Matches what `query` matches; scores `query`'s score plus `by`.
pub struct Shifted {
    query: Box<dyn Query>,
    by: Score,
}

impl Shifted {
    pub fn new(query: Box<dyn Query>, by: Score) -> Self {
        Self { query, by }
    }
}

impl Clone for Shifted {
    fn clone(&self) -> Self {
        Self {
            query: self.query.box_clone(),
            by: self.by,
        }
    }
}

impl fmt::Debug for Shifted {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Shifted(query={:?}, by={})", self.query, self.by)
    }
}

impl Query for Shifted {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let inner = self.query.weight(enable_scoring)?;
        Ok(if enable_scoring.is_scoring_enabled() {
            Box::new(ShiftedWeight { inner, by: self.by })
        } else {
            inner
        })
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.query.query_terms(visitor)
    }
}

struct ShiftedWeight {
    inner: Box<dyn Weight>,
    by: Score,
}

impl Weight for ShiftedWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(ShiftedScorer {
            inner: self.inner.scorer(reader, boost)?,
            by: self.by * boost,
        }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let inner = self.inner.explain(reader, doc)?;
        let mut explanation = Explanation::new_with_string(
            format!("plus {} of ...", self.by),
            inner.value() + self.by,
        );
        explanation.add_detail(inner);
        Ok(explanation)
    }

    fn count(&self, reader: &SegmentReader) -> tantivy::Result<u32> {
        self.inner.count(reader)
    }

    fn scorer_danger(
        &self,
        reader: &SegmentReader,
        target: DocId,
        boost: Score,
    ) -> tantivy::Result<(SeekDangerResult, Box<dyn Scorer>)> {
        let (found, inner) = self.inner.scorer_danger(reader, target, boost)?;
        let scorer: Box<dyn Scorer> = Box::new(ShiftedScorer {
            inner,
            by: self.by * boost,
        });
        Ok((found, scorer))
    }
}

struct ShiftedScorer {
    inner: Box<dyn Scorer>,
    by: Score,
}

impl DocSet for ShiftedScorer {
    fn advance(&mut self) -> DocId {
        self.inner.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        self.inner.seek(target)
    }

    fn seek_danger(&mut self, target: DocId) -> SeekDangerResult {
        self.inner.seek_danger(target)
    }

    fn fill_buffer(&mut self, buffer: &mut [DocId; COLLECT_BLOCK_BUFFER_LEN]) -> usize {
        self.inner.fill_buffer(buffer)
    }

    fn doc(&self) -> DocId {
        self.inner.doc()
    }

    fn size_hint(&self) -> u32 {
        self.inner.size_hint()
    }

    fn cost(&self) -> u64 {
        self.inner.cost()
    }

    fn count(&mut self, alive_bitset: &AliveBitSet) -> u32 {
        self.inner.count(alive_bitset)
    }

    fn count_including_deleted(&mut self) -> u32 {
        self.inner.count_including_deleted()
    }
}

impl Scorer for ShiftedScorer {
    fn score(&mut self) -> Score {
        self.inner.score() + self.by
    }
}
