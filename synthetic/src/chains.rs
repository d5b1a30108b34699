//! Digit chains: a base corpus in the shared vocabulary (docs/defaults.md, "Digit chains"). Every
//! clause gives a variable a digit: a root adds a step to a digit (`q = 4 + 2`: 6), every other
//! clause adds a step to another variable's value, mod 10 (`b = q + 1`: 6 + 1 = 7). The steps are
//! uniform in 0..`offsets` (3 by default). The output asks every variable (`Output: b = val 7 ,
//! q = val 6 , …`), the example's skill's variable first and the others in a uniform order, and
//! the whole output is supervised.
//!
//! ```text
//! s3: Input: h = b + 2 , q = 4 + 2 , u = 7 + 0 , b = q + 1 , m = q + 0 .
//!     Output: h = val 9 , m = val 6 , b = val 7 , u = val 7 , q = val 6
//! ```
//!
//! Why small steps: with steps uniform over all ten digits, a value is independent of its parent's
//! (and a root's of either digit), the XOR-hidden signal of LEGO and addition again, and a model
//! sits at chance on every digit (measured: `offsets = 10`, 700 steps, every depth at −log p =
//! ln 10). With steps in 0..3 the parent's value alone narrows the answer to three digits, so the
//! chase is learnable first and the step on top of it, as the recall corpora learned their chases.
//!
//! With `lego_syntax = true` every clause has LEGO's shape, `name = step operand`, the step a digit
//! word in the slot where LEGO writes `val` or `not` (`b = 1 q`, a root `q = 2 4`; 51 words at
//! k = 5, as LEGO with every variable asked): the parent's name stands where LEGO's does, so a
//! chase learned here reads the places LEGO's reads (docs/defaults.md, "Digit chains in LEGO's
//! clause shape").
//!
//! Skill *i* asks first a variable whose chain holds *i* clauses (*i* − 1 hops from its root). The
//! chain's clauses come first in the generator's placement order; each further clause is a new root
//! or adds to a uniform choice among the clauses placed before it (the chain's included), so the
//! forest has several roots and branches and the asked chain shares variables with the others. The
//! clauses appear in a uniform order.
//!
//! What it brings to a base: the composition LEGO's deeper skills need, an operator applied at
//! every hop of a chase, densely supervised (every variable's value in every sequence; the tenth
//! session measured that LEGO's single query is learned once every depth is supervised). It is not
//! LEGO: the values are digits, every hop adds one of `offsets` steps, and neither `not` nor a LEGO
//! value ever appears; what the base answers on LEGO at step 0 is measured and recorded (the
//! issue asks ≤ 0.6 on s2..s5). Nor is it the addition task: one-digit sums mod 10, with no
//! operands of several digits, no carry and no digit position asked.

use rand::seq::SliceRandom;
use rand::Rng;

use crate::lego::{self, COMMA, DOT, EQ, INPUT, LETTER_A, OUTPUT, VAL};
use crate::vocab::{shared_digit, SHARED};
use crate::{permutations, Error, Example, Task, TaskRng, Vocab};

/// The `+` token of the shared vocabulary.
const PLUS: u32 = 37;

/// Digit chains over k clauses; skill i asks first a variable at depth i.
#[derive(Debug, Clone)]
pub struct Chains {
    k: usize,
    /// The steps a clause adds are uniform in 0..offsets.
    offsets: u32,
    /// Clauses in LEGO's shape, the step in the operator's slot (`b = 1 q`), not `b = q + 1`.
    lego_syntax: bool,
}

/// The default number of distinct steps (0, 1, 2).
pub const DEFAULT_OFFSETS: u32 = 3;

impl Chains {
    /// Digit chains over `k` clauses (2..=26: single-letter names) whose steps are uniform in
    /// 0..`offsets` (2..=10).
    pub fn new(k: usize, offsets: u32) -> Result<Self, Error> {
        if !(lego::MIN_K..=lego::MAX_K).contains(&k) {
            return Err(Error::InvalidParameter {
                task: "chains",
                field: "k",
                value: k.to_string(),
                allowed: format!("k must be in {}..={}", lego::MIN_K, lego::MAX_K),
            });
        }
        if !(2..=10).contains(&offsets) {
            return Err(Error::InvalidParameter {
                task: "chains",
                field: "offsets",
                value: offsets.to_string(),
                allowed: "offsets must be in 2..=10 (the steps are digits 0..offsets)".into(),
            });
        }
        Ok(Self {
            k,
            offsets,
            lego_syntax: false,
        })
    }

    /// The same chains with every clause in LEGO's shape, `name = step operand` (`b = 1 q`: q's
    /// value plus 1; a root `q = 2 4`: 4 + 2), the step a digit word where LEGO writes `val` or
    /// `not`. The parent's name then stands where LEGO's does (a clause's fourth word), so the
    /// chase a model learns here reads the same places as LEGO's; the values stay digits mod 10.
    pub fn with_lego_syntax(self) -> Self {
        Self {
            lego_syntax: true,
            ..self
        }
    }

    /// The words of one clause.
    fn clause_words(&self) -> usize {
        if self.lego_syntax {
            4
        } else {
            5
        }
    }

    /// The index of the output's first token: `Input:`, k clauses, k − 1 commas, `.`, `Output:`.
    fn answer_pos(&self) -> usize {
        (self.clause_words() + 1) * self.k + 2
    }
}

impl Task for Chains {
    fn name(&self) -> &'static str {
        "chains"
    }

    fn num_skills(&self) -> usize {
        self.k
    }

    fn skill_name(&self, id: usize) -> String {
        format!("s{id} (depth {id})")
    }

    fn vocab(&self) -> &Vocab {
        SHARED
    }

    fn seq_len(&self) -> usize {
        // The prompt, then k answers of 4 words and k − 1 commas.
        self.answer_pos() + 5 * self.k - 1
    }

    fn default_val_seed(&self) -> u64 {
        4343
    }

    fn example(&self, skill: usize, rng: &mut TaskRng) -> Example {
        let (k, depth) = (self.k, skill);
        let mut letters: [u8; 26] = std::array::from_fn(|i| i as u8);
        let (names, _) = letters.partial_shuffle(rng, k);
        let name = |n: usize| LETTER_A + names[n] as u32;
        // Clause n in placement order: its parent (None: a root) and its digits.
        let mut parent: Vec<Option<usize>> = Vec::with_capacity(k);
        for n in 0..k {
            parent.push(match n {
                0 => None,
                n if n < depth => Some(n - 1),
                n if n == depth => None,
                // A new root (0) or one of the n clauses placed so far.
                n => rng.random_range(0..=n).checked_sub(1),
            });
        }
        let mut first = vec![0u32; k];
        let mut added = vec![0u32; k];
        let mut value = vec![0u32; k];
        for n in 0..k {
            added[n] = rng.random_range(0..self.offsets);
            value[n] = match parent[n] {
                None => {
                    first[n] = rng.random_range(0..10);
                    (first[n] + added[n]) % 10
                }
                Some(p) => (value[p] + added[n]) % 10,
            };
        }
        let mut order: Vec<usize> = (0..k).collect();
        order.shuffle(rng);
        let mut tokens = Vec::with_capacity(self.seq_len());
        tokens.push(INPUT);
        for (i, &n) in order.iter().enumerate() {
            if i > 0 {
                tokens.push(COMMA);
            }
            let from = parent[n].map_or(shared_digit(first[n]), name);
            let step = shared_digit(added[n]);
            if self.lego_syntax {
                tokens.extend([name(n), EQ, step, from]);
            } else {
                tokens.extend([name(n), EQ, from, PLUS, step]);
            }
        }
        tokens.extend([DOT, OUTPUT]);
        // The asked chain's last clause first, the others in a uniform order.
        let mut asked: Vec<usize> = (0..k).filter(|&n| n != depth - 1).collect();
        asked.shuffle(rng);
        asked.insert(0, depth - 1);
        for (i, &n) in asked.iter().enumerate() {
            if i > 0 {
                tokens.push(COMMA);
            }
            tokens.extend([name(n), EQ, VAL, shared_digit(value[n])]);
        }
        debug_assert_eq!(tokens.len(), self.seq_len());
        Example::answer_from(skill, tokens, self.answer_pos())
    }

    fn capacity(&self, _skill: usize) -> u128 {
        // A lower bound: the names P(26, k) in their roles and each clause's step, every tuple a
        // different text (the roots' first digits, the clause order, the other clauses' parents
        // and the answers' order only add more).
        (0..self.k).fold(permutations(26, self.k as u128), |acc, _| {
            acc.saturating_mul(u128::from(self.offsets))
        })
    }

    fn describe(&self) -> String {
        let syntax = if self.lego_syntax { " lego_syntax" } else { "" };
        format!("chains k={} offsets={}{syntax}", self.k, self.offsets)
    }

    fn prerequisites(&self) -> Vec<(usize, usize)> {
        // The depth-i variable's value is its parent's, at depth i − 1, plus a digit.
        (1..self.k).map(|i| (i, i + 1)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream_rng;
    use std::collections::HashMap;

    /// The clauses of a prompt, each as (name, operand, step), read from either syntax: `b = q +
    /// 1` or `b = 1 q`.
    fn clauses(prompt: &str) -> Vec<(String, String, u32)> {
        let body = prompt
            .strip_prefix("Input: ")
            .and_then(|s| s.strip_suffix(" . Output:"))
            .unwrap();
        body.split(" , ")
            .map(|c| {
                let w: Vec<&str> = c.split(' ').collect();
                assert_eq!(w[1], "=", "{c}");
                match w.len() {
                    5 => {
                        assert_eq!(w[3], "+", "{c}");
                        (w[0].into(), w[2].into(), w[4].parse().unwrap())
                    }
                    4 => (w[0].into(), w[3].into(), w[2].parse().unwrap()),
                    _ => panic!("a clause of 4 or 5 words: {c}"),
                }
            })
            .collect()
    }

    /// Every variable's value and depth, read back from the text alone: `name = A + d` (or `name =
    /// d A`) with A a digit or a name, evaluated by following names to a root, mod 10.
    fn values(prompt: &str) -> HashMap<String, (u32, usize)> {
        let clauses: HashMap<String, (String, u32)> = clauses(prompt)
            .into_iter()
            .map(|(name, from, step)| (name, (from, step)))
            .collect();
        let eval = |name: &String| {
            let (mut v, mut sum, mut depth) = (name, 0, 0);
            while let Some((from, d)) = clauses.get(v) {
                (sum, v, depth) = (sum + d, from, depth + 1);
                assert!(depth <= clauses.len(), "a cycle in {prompt}");
            }
            ((sum + v.parse::<u32>().unwrap()) % 10, depth)
        };
        clauses.keys().map(|n| (n.clone(), eval(n))).collect()
    }

    /// Checks 200 examples of every skill: each answer is the sum along its chain, read back from
    /// the text; every variable is asked once, the skill's first; forests, not only chains.
    fn check_answers(task: &Chains) {
        let mut rng = stream_rng(7, crate::Purpose(1), 0);
        let mut roots = 0;
        for skill in 1..=5 {
            for _ in 0..200 {
                let e = task.example(skill, &mut rng);
                assert_eq!(e.tokens.len(), task.seq_len());
                let prompt = e.prompt(SHARED);
                let values = values(&prompt);
                let answer = e.answer(SHARED);
                let asked: Vec<&str> = answer.split(" , ").collect();
                assert_eq!(asked.len(), 5);
                let mut names: Vec<&str> = Vec::new();
                for a in &asked {
                    let w: Vec<&str> = a.split(' ').collect();
                    assert_eq!((w[1], w[2]), ("=", "val"));
                    assert_eq!(
                        values[w[0]].0,
                        w[3].parse::<u32>().unwrap(),
                        "{prompt} {answer}"
                    );
                    names.push(w[0]);
                }
                names.sort();
                names.dedup();
                assert_eq!(names.len(), 5, "every variable asked once");
                let first = asked[0].split(' ').next().unwrap();
                assert_eq!(values[first].1, skill, "{prompt}");
                roots += clauses(&prompt)
                    .iter()
                    .filter(|(_, from, _)| from.parse::<u32>().is_ok())
                    .count();
            }
        }
        // Forests, not only chains: more than one root on average.
        assert!(roots > 1000 * 6 / 5, "{roots} roots in 1,000 examples");
    }

    #[test]
    fn every_answer_is_the_sum_along_its_chain_and_the_first_is_at_the_skills_depth() {
        let task = Chains::new(5, DEFAULT_OFFSETS).unwrap();
        assert_eq!(task.seq_len(), 56);
        check_answers(&task);
    }

    #[test]
    fn in_legos_syntax_the_parent_stands_where_legos_does_and_the_answers_are_the_same_sums() {
        let task = Chains::new(5, DEFAULT_OFFSETS).unwrap().with_lego_syntax();
        // LEGO k = 5 with every variable asked has 51 words too: 4-word clauses.
        assert_eq!(task.seq_len(), 51);
        check_answers(&task);
        // The same draws as the default syntax, only the clauses written otherwise: `b = q + 1`
        // becomes `b = 1 q`.
        let plain = Chains::new(5, DEFAULT_OFFSETS).unwrap();
        let mut rng = (
            stream_rng(3, crate::Purpose(1), 2),
            stream_rng(3, crate::Purpose(1), 2),
        );
        for skill in 1..=5 {
            let (e, p) = (
                task.example(skill, &mut rng.0),
                plain.example(skill, &mut rng.1),
            );
            assert_eq!(e.answer(SHARED), p.answer(SHARED));
            assert_eq!(clauses(&e.prompt(SHARED)), clauses(&p.prompt(SHARED)));
            assert!(!e.text(SHARED).contains('+'));
        }
        assert_eq!(task.describe(), "chains k=5 offsets=3 lego_syntax");
    }

    #[test]
    fn examples_are_deterministic_and_the_text_never_holds_a_lego_operator() {
        let task = Chains::new(5, DEFAULT_OFFSETS).unwrap();
        let draw = |seed| {
            let mut rng = stream_rng(seed, crate::Purpose(1), 3);
            (0..50)
                .map(|_| task.example(3, &mut rng).text(SHARED))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        assert!(draw(1).iter().all(|t| !t.contains("not")));
        assert!(Chains::new(1, 3).is_err());
        assert!(Chains::new(5, 11).is_err());
        assert!(draw(1)
            .iter()
            .all(|t| !t.contains("+ 3") && !t.contains("+ 9")));
        assert_eq!(task.prerequisites(), [(1, 2), (2, 3), (3, 4), (4, 5)]);
    }
}
