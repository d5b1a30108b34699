//! Multi-digit addition (docs/paper.md §3).
//!
//! An example with k = 3, asking skill s1 (the ones digit of the sum):
//!
//! ```text
//! Input: A = 1 0 6 + 0 7 1 , A 0 = ? Output: 7
//! ```
//!
//! Both operands are uniform in [0, 10^k − 2] (the authors' code draws `randint(0, 10^k − 1)`, whose
//! upper bound is exclusive), zero-padded to k digits and written most-significant digit first. Skill
//! *i* asks digit *i − 1* of the sum counted from the ones digit (`A 0` is s1); the carry-out digit is
//! never asked. Sequence layout (2k + 11 tokens; 17 for k = 3), the answer digit last.

use rand::Rng;

use crate::{Error, Example, Task, TaskRng, Vocab};

/// The addition vocabulary (26 tokens): digits 0..9 have ids 8..=17, and the digit indices 10..17
/// that only k > 10 asks about are words of their own (ids 18..=25).
pub static VOCAB: &Vocab = &Vocab::new(
    "addition",
    &[
        "<pad>", "Input:", "Output:", "A", "=", "+", ",", "?", "0", "1", "2", "3", "4", "5", "6",
        "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", "17",
    ],
);

const INPUT: u32 = 1;
const OUTPUT: u32 = 2;
const A: u32 = 3;
const EQ: u32 = 4;
const PLUS: u32 = 5;
const COMMA: u32 = 6;
const QUESTION: u32 = 7;
const DIGIT0: u32 = 8;
const INDEX10: u32 = 18;

/// The default number of digits (the paper's k).
pub const DEFAULT_K: usize = 3;
/// The largest k: operands and their sum must fit in 64 bits.
pub const MAX_K: usize = 18;

/// k-digit addition.
#[derive(Debug, Clone)]
pub struct Addition {
    k: usize,
    /// With the shared vocabulary: the shared id of each of addition's own ids.
    shared: Option<Vec<u32>>,
}

impl Addition {
    /// Addition of two k-digit numbers, k in 1..=18.
    pub fn new(k: usize) -> Result<Self, Error> {
        if !(1..=MAX_K).contains(&k) {
            return Err(Error::InvalidParameter {
                task: "addition",
                field: "k",
                value: k.to_string(),
                allowed: format!("k must be in 1..={MAX_K}"),
            });
        }
        Ok(Self { k, shared: None })
    }

    /// The same examples written in [`crate::SHARED`], the vocabulary of LEGO and addition
    /// together (the same words, other ids), for a model whose base reads both.
    pub fn with_shared_vocab(mut self) -> Self {
        let ids = VOCAB
            .words()
            .iter()
            .map(|w| {
                crate::SHARED
                    .id(w)
                    .expect("the shared vocabulary holds addition's words")
            })
            .collect();
        self.shared = Some(ids);
        self
    }

    /// The number of digits of each operand.
    pub fn k(&self) -> usize {
        self.k
    }

    fn push_digits(&self, tokens: &mut Vec<u32>, mut n: u64) {
        let start = tokens.len();
        tokens.resize(start + self.k, DIGIT0);
        for slot in tokens[start..].iter_mut().rev() {
            *slot = DIGIT0 + (n % 10) as u32;
            n /= 10;
        }
    }
}

impl Task for Addition {
    fn name(&self) -> &'static str {
        "addition"
    }

    fn num_skills(&self) -> usize {
        self.k
    }

    fn skill_name(&self, id: usize) -> String {
        format!("s{id} (digit {} of the sum)", id - 1)
    }

    fn vocab(&self) -> &Vocab {
        match self.shared {
            Some(_) => crate::SHARED,
            None => VOCAB,
        }
    }

    fn seq_len(&self) -> usize {
        2 * self.k + 11
    }

    fn default_val_seed(&self) -> u64 {
        420
    }

    fn example(&self, skill: usize, rng: &mut TaskRng) -> Example {
        let bound = 10u64.pow(self.k as u32) - 1;
        let a = rng.random_range(0..bound);
        let b = rng.random_range(0..bound);
        let digit = skill - 1;
        let answer = (a + b) / 10u64.pow(digit as u32) % 10;
        let index = if digit < 10 {
            DIGIT0 + digit as u32
        } else {
            INDEX10 + (digit - 10) as u32
        };

        let mut tokens = Vec::with_capacity(self.seq_len());
        tokens.extend([INPUT, A, EQ]);
        self.push_digits(&mut tokens, a);
        tokens.push(PLUS);
        self.push_digits(&mut tokens, b);
        tokens.extend([
            COMMA,
            A,
            index,
            EQ,
            QUESTION,
            OUTPUT,
            DIGIT0 + answer as u32,
        ]);
        debug_assert_eq!(tokens.len(), self.seq_len());
        if let Some(shared) = &self.shared {
            for t in &mut tokens {
                *t = shared[*t as usize];
            }
        }
        Example::answer_last(skill, tokens)
    }

    fn capacity(&self, _skill: usize) -> u128 {
        // Every ordered pair of operands gives a distinct text.
        let operands = 10u128.pow(self.k as u32) - 1;
        operands * operands
    }

    fn describe(&self) -> String {
        let vocab = if self.shared.is_some() {
            " vocab=shared"
        } else {
            ""
        };
        format!("addition k={}{vocab}", self.k)
    }

    fn prerequisites(&self) -> Vec<(usize, usize)> {
        // The carry out of digit i enters digit i + 1.
        (1..self.k).map(|i| (i, i + 1)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_range_and_layout() {
        assert!(Addition::new(0).is_err());
        assert!(Addition::new(19).is_err());
        let add = Addition::new(3).unwrap();
        assert_eq!(add.seq_len(), 17);
        assert_eq!(add.capacity(1), 999 * 999);
        let t = VOCAB
            .encode("Input: A = 1 0 6 + 0 7 1 , A 0 = ? Output: 7")
            .unwrap();
        assert_eq!(t.len(), add.seq_len());
    }

    #[test]
    fn the_shared_vocabulary_writes_the_same_text() {
        let (own, shared) = (
            Addition::new(12).unwrap(),
            Addition::new(12).unwrap().with_shared_vocab(),
        );
        for skill in 1..=12 {
            let mut a = crate::stream_rng(3, crate::Purpose(1), skill as u64);
            let mut b = a.clone();
            for _ in 0..20 {
                let (x, y) = (own.example(skill, &mut a), shared.example(skill, &mut b));
                assert_eq!(x.text(own.vocab()), y.text(shared.vocab()));
                assert_eq!(shared.vocab().name(), "shared");
            }
        }
    }
}
