//! The word-level vocabulary: every token is one space-separated word of the task's text.
//!
//! Each task has one fixed vocabulary whose ids never depend on `k` or on the seed, so a model
//! trained on LEGO with k = 5 and one trained with k = 8 share token ids. Id 0 is always `<pad>`.

use crate::Error;

/// A fixed word ↔ id table. Ids are positions in `words`.
#[derive(Debug)]
pub struct Vocab {
    name: &'static str,
    words: &'static [&'static str],
}

/// The padding token's id in every vocabulary.
pub const PAD: u32 = 0;

impl Vocab {
    pub(crate) const fn new(name: &'static str, words: &'static [&'static str]) -> Self {
        Self { name, words }
    }

    /// The vocabulary's name (`lego`, `addition`): tasks that share a name share the ids.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The number of tokens (the model's vocabulary size).
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Always false: a vocabulary holds at least `<pad>`.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Every word in id order.
    pub fn words(&self) -> &'static [&'static str] {
        self.words
    }

    /// The id of a word, if it is in the vocabulary.
    pub fn id(&self, word: &str) -> Option<u32> {
        self.words.iter().position(|w| *w == word).map(|i| i as u32)
    }

    /// The word of an id. Panics on an id outside the vocabulary, which only a bug can produce:
    /// every id a generator writes comes from this table.
    pub fn word(&self, id: u32) -> &'static str {
        self.words[id as usize]
    }

    /// Splits `text` on whitespace and maps each word to its id.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, Error> {
        text.split_whitespace()
            .map(|w| {
                self.id(w).ok_or_else(|| Error::UnknownWord {
                    vocab: self.name,
                    word: w.to_string(),
                })
            })
            .collect()
    }

    /// Joins the words of `tokens` with single spaces.
    pub fn decode(&self, tokens: &[u32]) -> String {
        let mut out = String::with_capacity(tokens.len() * 3);
        for (i, &t) in tokens.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(self.word(t));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let v = crate::lego::VOCAB;
        let text = "Input: b = not y , r = val 1 . Output: b = val 1";
        let ids = v.encode(text).unwrap();
        assert_eq!(v.decode(&ids), text);
        assert!(v.encode("Input: B").is_err());
        assert_eq!(v.id("<pad>"), Some(PAD));
    }
}
