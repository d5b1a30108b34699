//! The word-level vocabulary: every token is one space-separated word of the task's text.
//!
//! Each generator has one fixed vocabulary whose ids never depend on `k` or on the seed, so a model
//! trained on LEGO with k = 5 and one trained with k = 8 share token ids. A JSONL task builds its
//! vocabulary from its file ([`Vocab::built`]). Id 0 is always `<pad>`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::Error;

/// A word ↔ id table. Ids are positions in the word list. Cloning is cheap (a built table is
/// shared).
#[derive(Debug, Clone)]
pub struct Vocab {
    name: &'static str,
    words: Words,
}

#[derive(Debug, Clone)]
enum Words {
    Fixed(&'static [&'static str]),
    Built(Arc<Built>),
}

#[derive(Debug)]
struct Built {
    words: Vec<String>,
    ids: HashMap<String, u32>,
}

/// The vocabulary shared by LEGO, addition and the base corpora that serve both (55 tokens):
/// LEGO's 36 words with their ids, then the words of addition that LEGO lacks (`A`, `+`, `?`, the
/// digits 2..9 and the digit indices 10..17). A LEGO example has the same ids in it as in LEGO's own
/// vocabulary, so a model of this vocabulary reads LEGO unchanged; addition's ids are mapped
/// (`Addition::with_shared_vocab`). One base trained in it serves both tasks (issue 23).
pub static SHARED: &Vocab = &Vocab::new(
    "shared",
    &[
        "<pad>", "Input:", "Output:", "=", "val", "not", ",", ".", "0", "1", "a", "b", "c", "d",
        "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v",
        "w", "x", "y", "z", "A", "+", "?", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11",
        "12", "13", "14", "15", "16", "17",
    ],
);

/// The id of digit `d` (0..=9) in [`SHARED`]: 0 and 1 are LEGO's bits, 2..9 follow LEGO's words.
pub(crate) fn shared_digit(d: u32) -> u32 {
    debug_assert!(d < 10);
    if d < 2 {
        8 + d
    } else {
        37 + d
    }
}

/// The padding token's id in every vocabulary.
pub const PAD: u32 = 0;

/// The unknown word's id in a built vocabulary.
pub const UNK: u32 = 1;

impl Vocab {
    pub(crate) const fn new(name: &'static str, words: &'static [&'static str]) -> Self {
        Self {
            name,
            words: Words::Fixed(words),
        }
    }

    /// A vocabulary of `<pad>`, `<unk>` and then `words` in the order given (duplicates dropped).
    pub fn built(name: &'static str, words: impl IntoIterator<Item = String>) -> Self {
        let mut built = Built {
            words: Vec::new(),
            ids: HashMap::new(),
        };
        for w in ["<pad>".to_string(), "<unk>".to_string()]
            .into_iter()
            .chain(words)
        {
            if !built.ids.contains_key(&w) {
                built.ids.insert(w.clone(), built.words.len() as u32);
                built.words.push(w);
            }
        }
        Self {
            name,
            words: Words::Built(Arc::new(built)),
        }
    }

    /// The vocabulary's name (`lego`, `addition`): tasks that share a name share the ids.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The number of tokens (the model's vocabulary size).
    pub fn len(&self) -> usize {
        match &self.words {
            Words::Fixed(w) => w.len(),
            Words::Built(b) => b.words.len(),
        }
    }

    /// Always false: a vocabulary holds at least `<pad>`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every word in id order.
    pub fn words(&self) -> Vec<&str> {
        match &self.words {
            Words::Fixed(w) => w.to_vec(),
            Words::Built(b) => b.words.iter().map(String::as_str).collect(),
        }
    }

    /// The id of a word, if it is in the vocabulary.
    pub fn id(&self, word: &str) -> Option<u32> {
        match &self.words {
            Words::Fixed(w) => w.iter().position(|w| *w == word).map(|i| i as u32),
            Words::Built(b) => b.ids.get(word).copied(),
        }
    }

    /// The word of an id. Panics on an id outside the vocabulary, which only a bug can produce:
    /// every id a generator or a JSONL task writes comes from this table.
    pub fn word(&self, id: u32) -> &str {
        match &self.words {
            Words::Fixed(w) => w[id as usize],
            Words::Built(b) => &b.words[id as usize],
        }
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

    #[test]
    fn the_shared_vocabulary_keeps_legos_ids_and_holds_every_addition_word() {
        let lego = crate::lego::VOCAB;
        assert_eq!(SHARED.len(), 55);
        assert_eq!(&SHARED.words()[..lego.len()], &lego.words()[..]);
        for w in crate::addition::VOCAB.words() {
            assert!(SHARED.id(w).is_some(), "{w} missing");
        }
        for d in 0..10 {
            assert_eq!(SHARED.word(shared_digit(d)), d.to_string());
        }
    }

    #[test]
    fn a_built_vocabulary_numbers_words_in_order_of_first_appearance() {
        let v = Vocab::built("jsonl", ["b", "a", "b", "c"].map(String::from));
        assert_eq!(v.words(), ["<pad>", "<unk>", "b", "a", "c"]);
        assert_eq!(v.id("a"), Some(3));
        assert_eq!(v.id("<unk>"), Some(UNK));
        assert_eq!(v.id("z"), None);
        assert_eq!(v.decode(&v.encode("c b a").unwrap()), "c b a");
        assert_eq!(v.len(), 5);
    }
}
