//! Recall: the pre-training corpus of a base model (docs/paper.md §12). One-hop lookup in LEGO's
//! clause format, with no chains: no clause refers to another clause's variable, and the query asks
//! one of them.
//!
//! ```text
//! s1 (literal):   Input: b = val 1 , v = val 0 , h = val 1 , u = val 1 , q = val 0 .
//!                 Output: v = val 0
//! s2 (operators): Input: b = not 1 , v = val 0 , h = not 0 , u = val 1 , q = not 1 .
//!                 Output: h = val 1
//! s3 (pointers):  Input: b = not p , v = val x , h = not e , u = val m , q = val k .
//!                 Output: h = not e
//! s4 (2 hops):    Input: b = val v , v = val p , h = val e , u = val h , q = val b .
//!                 Output: b = val p
//! ```
//!
//! A clause `x = val d` gives x the bit d, `x = not d` the bit 1 − d; the answer is the queried
//! variable's bit. This is the ability a pretrained LM brings to LEGO (find the clause that names
//! the queried variable, read its bit, apply its operator) without any LEGO chain, so a model
//! trained on it has seen no skill of LEGO beyond the root's literal bit. With `pointers`, s3
//! relates each variable to a letter that names no clause and asks for that letter: the first hop
//! of a LEGO lookup without the second. With `hops` = h > 1, skills s4..s(h + 2) follow pointers
//! d = 2..h deep: the clauses form a forest of letter pointers (the queried variable's chain of
//! length d, and at least one other root, so the answer is one of several letters that name no
//! clause), every operator is `val`, and the answer is the letter at the end of the queried
//! variable's chain. That is LEGO's lookup, hop after hop, without its bits and parities: the
//! answer is a 26-way letter, so each hop learned narrows it (a first-order signal), where LEGO's
//! XOR of operators gives none until the whole path is known. `order` places a chase's clauses:
//! `any` (uniform, as LEGO), `queried_first` (each clause before the one it points to) or
//! `queried_last` (each after it); the other clauses stay where the shuffle put them.
//!
//! With `queries` = q > 1 the output asks q distinct variables in turn (`Output: v = val 0 ,
//! h = val 1 , b = val 0`), each answer supervised by the whole-sequence loss: q lookups per
//! sequence instead of one, the dense supervision under which small attention models learn recall
//! quickly (multi-query associative recall, Zoology); the example's answer is the last one. Fewer
//! queries than clauses keep the last answer from following by counting the bits not yet asked.
//! With one query the corpus has LEGO's vocabulary and sequence layout (5k + 6 tokens), so a base
//! trained on it continues on LEGO with the same token ids and positions.
//!
//! With `dense`, the output asks every clause in reading order and the whole output is the answer
//! (teacher-forced, each token supervised under the answer loss; an example is right when every
//! token is): a chase example supervises the chain end of every clause of its forest, k chases of
//! several depths per sequence instead of one (`Input: b = val v , v = val p , h = val e , u = val
//! h , q = val b . Output: b = val p , v = val p , h = val e , u = val e , q = val p`).
//!
//! Names, bits, operators, clause order and the queried clauses are uniform and independent.

use rand::seq::SliceRandom;
use rand::{Rng, RngCore};

use crate::lego::{self, VOCAB};
use crate::{permutations, Error, Example, Task, TaskRng, Vocab};

/// The number of skills: literal recall, recall through an operator (and, with `pointers`, the
/// recall of a clause's letter).
pub const SKILLS: usize = 2;

/// Where a pointer chase's clauses stand relative to each other in the text (the other clauses
/// stay where the shuffle put them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainOrder {
    /// A uniform order, as LEGO's clauses.
    #[default]
    Any,
    /// The queried clause first, each clause before the one it points to (the order a causal
    /// model can follow while reading).
    QueriedFirst,
    /// The queried clause last, each clause after the one it points to.
    QueriedLast,
}

/// One-hop recall over k literal clauses, q queries.
#[derive(Debug, Clone)]
pub struct Recall {
    k: usize,
    queries: usize,
    /// Every clause asked, in reading order, every answer supervised.
    dense: bool,
    pointers: bool,
    /// The deepest pointer chain asked (1: pointers without chains).
    hops: usize,
    /// The chase's clause order.
    order: ChainOrder,
    /// A chase answers the parity of the clause's distance to its chain's end, not the end.
    parity: bool,
}

/// The error of a switch (`field = true`) that the other settings do not allow.
fn refused(field: &'static str, allowed: &str) -> Error {
    Error::InvalidParameter {
        task: "recall",
        field,
        value: "true".into(),
        allowed: allowed.into(),
    }
}

impl Recall {
    /// Recall over `k` clauses (2..=26, single-letter names as in LEGO) with one query.
    pub fn new(k: usize) -> Result<Self, Error> {
        Self::with_queries(k, 1)
    }

    /// Recall over `k` clauses asking `queries` distinct variables (1..=k).
    pub fn with_queries(k: usize, queries: usize) -> Result<Self, Error> {
        if !(1..=k).contains(&queries) {
            return Err(Error::InvalidParameter {
                task: "recall",
                field: "queries",
                value: queries.to_string(),
                allowed: format!("queries must be in 1..=k = {k}"),
            });
        }
        if !(lego::MIN_K..=lego::MAX_K).contains(&k) {
            return Err(Error::InvalidParameter {
                task: "recall",
                field: "k",
                value: k.to_string(),
                allowed: format!("k must be in {}..={}", lego::MIN_K, lego::MAX_K),
            });
        }
        Ok(Self {
            k,
            queries,
            dense: false,
            pointers: false,
            hops: 1,
            order: ChainOrder::Any,
            parity: false,
        })
    }

    /// Adds skill s3, pointer recall: every clause relates its variable to a letter that names no
    /// clause (`x = not p`: a pointer with nothing behind it, so no chain), and the answer is the
    /// queried clause's letter, copied with its operator (`Output: x = not p`). It is the first
    /// hop of a LEGO lookup (which variable does x refer to?) without the second. Needs 2k ≤ 26.
    pub fn with_pointers(mut self) -> Result<Self, Error> {
        if 2 * self.k > 26 {
            return Err(Error::InvalidParameter {
                task: "recall",
                field: "k",
                value: self.k.to_string(),
                allowed: "pointers need k ≤ 13 (2k distinct letters)".into(),
            });
        }
        self.pointers = true;
        Ok(self)
    }

    /// Adds skills s4..s(hops + 2): follow letter pointers d = 2..=hops deep (see the module
    /// docs). Needs pointers, one query, and 2 ≤ hops ≤ k − 1 (another root beside the queried
    /// chain, so the answer is never the only letter that names no clause).
    pub fn with_hops(mut self, hops: usize) -> Result<Self, Error> {
        let invalid = |allowed: String| Error::InvalidParameter {
            task: "recall",
            field: "hops",
            value: hops.to_string(),
            allowed,
        };
        if hops == 1 {
            return Ok(self);
        }
        if !self.pointers || self.queries != 1 {
            return Err(invalid(
                "hops > 1 needs pointers = true and queries = 1".into(),
            ));
        }
        if !(2..self.k).contains(&hops) {
            return Err(invalid(format!(
                "hops must be in 1..=k − 1 = {}",
                self.k - 1
            )));
        }
        self.hops = hops;
        Ok(self)
    }

    /// Asks every clause, in the order the clauses are read (`Output: b = val p , v = val p ,
    /// h = val e , …`), and makes the whole output the answer: each example supervises k lookups
    /// (k chases of every depth its forest holds, for skills s4..) instead of one, the dense
    /// supervision of multi-query recall and of the LEGO experiments of Zhang et al. (2022),
    /// who trained every variable's value at once. The example's skill is still the depth of its
    /// designated chain. Needs queries = 1 (dense replaces them).
    pub fn with_dense(mut self) -> Result<Self, Error> {
        if self.queries != 1 {
            return Err(refused(
                "dense",
                "dense asks every clause: it needs queries = 1 (the default)",
            ));
        }
        self.dense = true;
        Ok(self)
    }

    /// Makes every chase (skills s4..) answer a bit instead of a letter: the parity of the
    /// distance from the asked clause to the end of its chain, 0 for a clause that points to a
    /// letter naming no clause (a root), 1 for one that points to a root, and so on (`Input: b = val
    /// v , v = val p , … . Output: b = val 1`). The chase the same, but the answer accumulates
    /// along it (one flip per hop) instead of copying its end: the counting a LEGO chain's value
    /// needs (an XOR per hop), here with no operator, no literal bit and a flip at every hop, so
    /// the answer says nothing about a LEGO variable's value. Needs hops > 1.
    pub fn with_parity(mut self) -> Result<Self, Error> {
        if self.hops == 1 {
            return Err(refused(
                "parity",
                "parity answers a chase: it needs hops > 1",
            ));
        }
        self.parity = true;
        Ok(self)
    }

    /// The clauses the output asks.
    fn asked(&self) -> usize {
        if self.dense {
            self.k
        } else {
            self.queries
        }
    }

    /// The example made of `tokens`: its answer is the last token, or the whole output when dense.
    fn finish(&self, skill: usize, tokens: Vec<u32>) -> Example {
        debug_assert_eq!(tokens.len(), self.seq_len());
        if !self.dense {
            return Example::answer_last(skill, tokens);
        }
        // `Input:`, k clauses of 4 words, k − 1 commas, `.`, `Output:`; then the answers.
        Example::answer_from(skill, tokens, 5 * self.k + 2)
    }

    /// Puts the clauses of every pointer chase (skills s4..) in `order` (needs hops > 1 unless
    /// `order` is `any`). The draws are those of `any`, the chase's clauses then moved among the
    /// places the shuffle gave them, so the default's examples do not change.
    pub fn with_chain_order(mut self, order: ChainOrder) -> Result<Self, Error> {
        if order != ChainOrder::Any && self.hops == 1 {
            return Err(Error::InvalidParameter {
                task: "recall",
                field: "order",
                value: format!("{order:?}"),
                allowed: "a chain order needs hops > 1".into(),
            });
        }
        self.order = order;
        Ok(self)
    }

    /// The number of clauses.
    pub fn k(&self) -> usize {
        self.k
    }
}

impl Recall {
    /// A pointer chase `depth` (2..=hops) deep. The queried chain c_1 → … → c_depth (c_1 points
    /// to a letter that names no clause, each later c_j to c_{j−1}); the first other clause is a
    /// second root with its own letter; each further one points to a uniform choice among the
    /// clauses placed before it and a new letter. The clauses appear in a uniform order.
    fn chase(&self, depth: usize, rng: &mut TaskRng) -> Example {
        let k = self.k;
        let mut letters: [u8; 26] = std::array::from_fn(|i| i as u8);
        letters.shuffle(rng);
        // letters[..k] name the clauses (the chain first); letters[k..] are the pointers' ends.
        let mut fresh = k;
        let mut target = vec![0u8; k];
        for (n, t) in target.iter_mut().enumerate() {
            let pick = if n == 0 || n == depth {
                k
            } else if n < depth {
                n - 1
            } else {
                // A new letter (k) or one of the n clauses placed so far.
                match rng.random_range(0..=n) {
                    0 => k,
                    m => m - 1,
                }
            };
            *t = if pick == k {
                fresh += 1;
                letters[fresh - 1]
            } else {
                letters[pick]
            };
        }
        let mut order: Vec<usize> = (0..k).collect();
        order.shuffle(rng);
        if self.order != ChainOrder::Any {
            // The places of the chain's clauses (0..depth, c_1 first), in reading order, get the
            // chain in the asked order: the queried clause c_depth first or last.
            let places: Vec<usize> = (0..k).filter(|&i| order[i] < depth).collect();
            for (j, &place) in places.iter().enumerate() {
                order[place] = match self.order {
                    ChainOrder::QueriedFirst => depth - 1 - j,
                    _ => j,
                };
            }
        }
        let name = |n: usize| lego::LETTER_A + letters[n] as u32;
        let mut tokens = Vec::with_capacity(self.seq_len());
        tokens.push(lego::INPUT);
        for (i, &n) in order.iter().enumerate() {
            if i > 0 {
                tokens.push(lego::COMMA);
            }
            tokens.extend([
                name(n),
                lego::EQ,
                lego::VAL,
                lego::LETTER_A + target[n] as u32,
            ]);
        }
        tokens.extend([lego::DOT, lego::OUTPUT]);
        // The letter at the end of clause n's chain, and the hops from n to its chain's root.
        let end = |n: usize| {
            let (mut letter, mut hops) = (target[n], 0);
            while let Some(m) = letters[..k].iter().position(|&l| l == letter) {
                (letter, hops) = (target[m], hops + 1);
            }
            (letter, hops)
        };
        let asked: Vec<usize> = if self.dense {
            order.clone()
        } else {
            vec![depth - 1]
        };
        for (i, &n) in asked.iter().enumerate() {
            if i > 0 {
                tokens.push(lego::COMMA);
            }
            let (letter, hops) = end(n);
            let answer = if self.parity {
                lego::BIT0 + hops % 2
            } else {
                lego::LETTER_A + letter as u32
            };
            tokens.extend([name(n), lego::EQ, lego::VAL, answer]);
        }
        self.finish(depth + 2, tokens)
    }
}

impl Task for Recall {
    fn name(&self) -> &'static str {
        "recall"
    }

    fn num_skills(&self) -> usize {
        SKILLS + if self.pointers { self.hops } else { 0 }
    }

    fn skill_name(&self, id: usize) -> String {
        match id {
            1 => "s1 (literal)".into(),
            2 => "s2 (operators)".into(),
            3 => "s3 (pointer)".into(),
            _ => format!("s{id} ({} hops)", id - 2),
        }
    }

    fn vocab(&self) -> &Vocab {
        VOCAB
    }

    fn seq_len(&self) -> usize {
        // Input:, k clauses of 4 words and k − 1 commas, `.`, Output:, q answers of 4 words and
        // q − 1 commas (q = k when dense).
        5 * self.k + 5 * self.asked() + 1
    }

    fn default_val_seed(&self) -> u64 {
        4242
    }

    fn example(&self, skill: usize, rng: &mut TaskRng) -> Example {
        if skill > 3 {
            return self.chase(skill - 2, rng);
        }
        let k = self.k;
        let pointer = skill == 3;
        let mut letters: [u8; 26] = std::array::from_fn(|i| i as u8);
        // Pointer recall draws k more letters, the clauses' pointers.
        let (names, _) = letters.partial_shuffle(rng, if pointer { 2 * k } else { k });
        let name = |n: usize| lego::LETTER_A + names[n] as u32;
        let target = |n: usize| lego::LETTER_A + names[k + n] as u32;
        let bits = rng.next_u32();
        // Operators only for s2: bit n set = `not`.
        let nots = if skill == 1 { 0 } else { rng.next_u32() };
        // The queried clauses: q distinct ones in a uniform order (one query: a uniform clause).
        let mut clauses: [u8; 26] = std::array::from_fn(|i| i as u8);
        let queried: &[u8] = if self.dense {
            // Every clause, in reading order (clause n is the n-th read).
            &clauses[..k]
        } else if self.queries == 1 {
            clauses[0] = rng.random_range(0..k) as u8;
            &clauses[..1]
        } else {
            clauses[..k].partial_shuffle(rng, self.queries).0
        };
        // Clause n (in order of appearance) names variable n: the names are already a uniform
        // permutation, so no separate order is drawn.
        let written = |n: usize| (bits >> n) & 1;
        let negated = |n: usize| (nots >> n) & 1;
        let mut tokens = Vec::with_capacity(self.seq_len());
        tokens.push(lego::INPUT);
        for n in 0..k {
            if n > 0 {
                tokens.push(lego::COMMA);
            }
            let op = if negated(n) == 1 {
                lego::NOT
            } else {
                lego::VAL
            };
            let value = if pointer {
                target(n)
            } else {
                lego::BIT0 + written(n)
            };
            tokens.extend([name(n), lego::EQ, op, value]);
        }
        tokens.extend([lego::DOT, lego::OUTPUT]);
        for (i, &n) in queried.iter().enumerate() {
            let n = n as usize;
            if i > 0 {
                tokens.push(lego::COMMA);
            }
            if pointer {
                let op = if negated(n) == 1 {
                    lego::NOT
                } else {
                    lego::VAL
                };
                tokens.extend([name(n), lego::EQ, op, target(n)]);
            } else {
                let answer = written(n) ^ negated(n);
                tokens.extend([name(n), lego::EQ, lego::VAL, lego::BIT0 + answer]);
            }
        }
        self.finish(skill, tokens)
    }

    fn capacity(&self, skill: usize) -> u128 {
        // Ordered names P(26, k) × 2^k bits (× 2^k operators for s2) × P(k, q) ordered queries.
        let k = self.k as u128;
        let queries = match self.dense {
            true => 1,
            false => permutations(k, self.queries as u128),
        };
        // Pointer recall: P(26, 2k) ordered names and pointers × 2^k operators.
        let (names, per_clause) = match skill {
            1 => (permutations(26, k), 2),
            2 => (permutations(26, k), 4),
            3 => (permutations(26, 2 * k), 2),
            // A lower bound: the k names in their roles and the two roots' letters, each tuple
            // written in a different text (clause order and the other pointers only add more).
            _ => return permutations(26, k + 2),
        };
        (0..self.k)
            .fold(names, |acc, _| acc.saturating_mul(per_clause))
            .saturating_mul(queries)
    }

    fn describe(&self) -> String {
        let mut d = format!("recall k={}", self.k);
        if self.queries > 1 {
            d += &format!(" queries={}", self.queries);
        }
        if self.dense {
            d += " dense";
        }
        if self.pointers {
            d += " pointers";
        }
        if self.hops > 1 {
            d += &format!(" hops={}", self.hops);
        }
        if self.parity {
            d += " parity";
        }
        match self.order {
            ChainOrder::Any => {}
            ChainOrder::QueriedFirst => d += " order=queried_first",
            ChainOrder::QueriedLast => d += " order=queried_last",
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream_rng;
    use crate::Purpose;

    /// Reads an example back from its text: (name, operator, bit) per clause, the queried name and
    /// the answer.
    fn parse(e: &Example) -> (Vec<(String, String, u32)>, String, u32) {
        let text = e.text(VOCAB);
        let (input, output) = text.split_once(" . Output: ").unwrap();
        let clauses = input
            .trim_start_matches("Input: ")
            .split(" , ")
            .map(|c| {
                let w: Vec<&str> = c.split(' ').collect();
                assert_eq!(w[1], "=");
                (w[0].to_string(), w[2].to_string(), w[3].parse().unwrap())
            })
            .collect();
        let last = output.split(" , ").last().unwrap();
        let w: Vec<&str> = last.split(' ').collect();
        assert_eq!(&w[1..3], ["=", "val"]);
        (clauses, w[0].to_string(), w[3].parse().unwrap())
    }

    /// An example's clauses, each as its words, and its output.
    fn clauses_and_output(text: &str) -> (Vec<Vec<&str>>, &str) {
        let (input, output) = text.split_once(" . Output: ").unwrap();
        let clauses = input
            .trim_start_matches("Input: ")
            .split(" , ")
            .map(|c| c.split(' ').collect())
            .collect();
        (clauses, output)
    }

    #[test]
    fn pointer_recall_copies_the_queried_clause_and_names_no_clause() {
        let task = Recall::new(5).unwrap().with_pointers().unwrap();
        assert_eq!(task.num_skills(), 3);
        assert!(Recall::new(14).unwrap().with_pointers().is_err());
        let mut rng = stream_rng(2, Purpose::TRAIN, 3);
        for _ in 0..300 {
            let e = task.example(3, &mut rng);
            assert_eq!(e.tokens.len(), 31);
            let text = e.text(VOCAB);
            let (clauses, output) = clauses_and_output(&text);
            let names: Vec<&str> = clauses.iter().map(|c| c[0]).collect();
            // Every right-hand side is a letter that names no clause: no chain.
            for c in &clauses {
                assert!(c[3].len() == 1 && c[3].chars().all(|ch| ch.is_ascii_lowercase()));
                assert!(!names.contains(&c[3]), "{text}");
            }
            let w: Vec<&str> = output.split(' ').collect();
            let clause = clauses.iter().find(|c| c[0] == w[0]).unwrap();
            assert_eq!(&w[1..], &clause[1..], "{text}");
            assert_eq!(e.answer(VOCAB), clause[3]);
        }
        // The other skills draw as without pointers.
        let plain = Recall::new(5).unwrap();
        let draw = |t: &Recall, skill| task_draws(t, skill);
        assert_eq!(draw(&task, 2), draw(&plain, 2));
        // k = 2: 26·25·24·23 names and pointers × 2² operators × 2 queries.
        let two = Recall::new(2).unwrap().with_pointers().unwrap();
        assert_eq!(two.capacity(3), 26 * 25 * 24 * 23 * 4 * 2);
    }

    #[test]
    fn hops_follow_a_pointer_chain_of_the_skills_depth_to_one_of_several_ends() {
        let task = Recall::new(5)
            .unwrap()
            .with_pointers()
            .unwrap()
            .with_hops(4)
            .unwrap();
        assert_eq!(task.num_skills(), 6);
        assert_eq!(task.skill_name(5), "s5 (3 hops)");
        let mut rng = stream_rng(5, Purpose::TRAIN, 4);
        let mut other_depths = [0usize; 6];
        for skill in 4..=6 {
            for _ in 0..400 {
                let e = task.example(skill, &mut rng);
                assert_eq!((e.skill, e.tokens.len(), e.answer_pos), (skill, 31, 30));
                let text = e.text(VOCAB);
                let (clauses, output) = clauses_and_output(&text);
                assert!(clauses.iter().all(|c| c[2] == "val"), "{text}");
                let points: std::collections::HashMap<&str, &str> =
                    clauses.iter().map(|c| (c[0], c[3])).collect();
                // Follow the pointers from a name to a letter that names no clause.
                let follow = |start| follow(&points, start, &text);
                let w: Vec<&str> = output.split(' ').collect();
                assert_eq!(&w[1..3], ["=", "val"]);
                assert_eq!(follow(w[0]), (w[3], skill - 2), "{text}");
                assert_eq!(e.answer(VOCAB), w[3]);
                // At least two chains end in different letters, so the end is looked up.
                let mut ends: Vec<&str> = clauses.iter().map(|c| follow(c[0]).0).collect();
                ends.sort();
                ends.dedup();
                assert!(ends.len() >= 2, "{text}");
                for c in &clauses {
                    other_depths[follow(c[0]).1] += 1;
                }
            }
        }
        // The other clauses sit at every depth 1..=5 - 1 = 4 (they may extend the queried chain).
        assert!(
            other_depths[1..=4].iter().all(|&n| n > 0),
            "{other_depths:?}"
        );
        // Skills s1..s3 draw as without hops.
        let pointers = Recall::new(5).unwrap().with_pointers().unwrap();
        for skill in 1..=3 {
            assert_eq!(task_draws(&task, skill), task_draws(&pointers, skill));
        }
        assert_eq!(task_draws(&task, 5), task_draws(&task, 5));
        let bad = |r: Result<Recall, Error>| r.unwrap_err().to_string();
        assert!(bad(pointers.clone().with_hops(5)).contains("hops must be in 1..=k − 1 = 4"));
        assert!(bad(Recall::new(5).unwrap().with_hops(2)).contains("pointers = true"));
        assert!(task.capacity(6) >= 26 * 25 * 24 * 23 * 22 * 21 * 20);
    }

    /// The dense pointer corpus of the eighth session: k = 5, chases 2..4 deep, every clause asked.
    fn dense_chase() -> Recall {
        Recall::new(5)
            .unwrap()
            .with_pointers()
            .unwrap()
            .with_dense()
            .unwrap()
            .with_hops(4)
            .unwrap()
    }

    #[test]
    fn dense_asks_every_clause_in_reading_order_and_answers_with_the_whole_output() {
        let task = dense_chase();
        // 5 clauses of 5 tokens (with its comma or `.`), `Input:`, `Output:`, 5 answers of 5
        // tokens less the last comma: 1 + 25 + 1 + 24 = 51.
        assert_eq!(task.seq_len(), 51);
        assert!(task.describe().contains("dense"));
        let mut rng = stream_rng(6, Purpose::TRAIN, 1);
        let mut depths = [0usize; 6];
        for skill in 1..=6 {
            for _ in 0..300 {
                let e = task.example(skill, &mut rng);
                assert_eq!(e.tokens.len(), 51);
                // The answer is the whole output, after `Output:` (token 26).
                assert_eq!((e.skill, e.answer_pos, e.answer_len), (skill, 27, 24));
                assert_eq!(e.tokens[26], lego::OUTPUT);
                let text = e.text(VOCAB);
                let (clauses, output) = clauses_and_output(&text);
                assert_eq!(e.answer(VOCAB), output);
                let answers: Vec<Vec<&str>> = output
                    .split(" , ")
                    .map(|a| a.split(' ').collect())
                    .collect();
                assert_eq!(answers.len(), 5, "{text}");
                let points: std::collections::HashMap<&str, &str> =
                    clauses.iter().map(|c| (c[0], c[3])).collect();
                for (c, a) in clauses.iter().zip(&answers) {
                    // Asked in reading order.
                    assert_eq!(a[0], c[0], "{text}");
                    match skill {
                        // Literal recall: the clause's bit; through an operator: flipped by `not`.
                        1 | 2 => {
                            let bit: u32 = c[3].parse().unwrap();
                            let want = if c[2] == "not" { 1 - bit } else { bit };
                            assert_eq!((a[2], a[3]), ("val", want.to_string().as_str()));
                        }
                        // Pointer recall copies the clause.
                        3 => assert_eq!(&a[1..], &c[1..], "{text}"),
                        // A chase: the letter at the end of the clause's chain.
                        _ => {
                            let (end, depth) = follow(&points, c[0], &text);
                            assert_eq!((a[2], a[3]), ("val", end), "{text}");
                            depths[depth] += 1;
                        }
                    }
                }
                // The designated chain's clause is among them at the skill's depth (the
                // single-query example asks it alone).
                if skill > 3 {
                    let deepest = clauses
                        .iter()
                        .map(|c| follow(&points, c[0], &text).1)
                        .max()
                        .unwrap();
                    assert!(deepest >= skill - 2, "{text}");
                }
            }
        }
        // Each output supervises chases of every depth 1..=4.
        assert!(depths[1..=4].iter().all(|&n| n > 0), "{depths:?}");
        // Deterministic; only one ordering of the queries, so the capacity loses P(k, 1) = k.
        assert_eq!(task_draws(&task, 5), task_draws(&task, 5));
        let single = Recall::new(5).unwrap().with_pointers().unwrap();
        let dense = single.clone().with_dense().unwrap();
        assert_eq!(dense.capacity(3) * 5, single.capacity(3));
        assert!(Recall::with_queries(5, 2)
            .unwrap()
            .with_dense()
            .unwrap_err()
            .to_string()
            .contains("queries = 1"));
    }

    #[test]
    fn parity_answers_the_distance_to_the_chain_end_mod_2_on_the_same_chase() {
        let letters = dense_chase();
        let parity = letters.clone().with_parity().unwrap();
        assert!(parity.describe().contains("parity"));
        let mut seen = [[0usize; 2]; 6];
        for skill in 1..=6 {
            let (with, without) = (task_draws(&parity, skill), task_draws(&letters, skill));
            for (e, plain) in with.iter().zip(&without) {
                let text = e.text(VOCAB);
                let (clauses, output) = clauses_and_output(&text);
                let plain_text = plain.text(VOCAB);
                let (_, plain_output) = clauses_and_output(&plain_text);
                // The same draws: the same sentence and answer span, only the chases' answers
                // differ.
                assert_eq!(e.tokens[..27], plain.tokens[..27], "{text}");
                assert_eq!((e.answer_pos, e.answer_len), (27, 24));
                if skill <= 3 {
                    assert_eq!(output, plain_output);
                    continue;
                }
                let points: std::collections::HashMap<&str, &str> =
                    clauses.iter().map(|c| (c[0], c[3])).collect();
                for (c, a) in clauses.iter().zip(output.split(" , ")) {
                    // A root (depth 1, its letter names no clause) answers 0, the clause that
                    // points to it 1, the next 0: (depth − 1) mod 2.
                    let (_, depth) = follow(&points, c[0], &text);
                    let bit = (depth - 1) % 2;
                    assert_eq!(a, format!("{} = val {bit}", c[0]), "{text}");
                    seen[depth][bit] += 1;
                }
            }
        }
        // Every depth 1..=4 answered, with the bit its depth gives.
        assert!(seen[1..=4].iter().all(|s| s[0] + s[1] > 0), "{seen:?}");
        // A single query answers the designated chain's queried clause: depth − 1 = skill − 3.
        let single = Recall::new(5)
            .unwrap()
            .with_pointers()
            .unwrap()
            .with_hops(4)
            .unwrap()
            .with_parity()
            .unwrap();
        for skill in 4..=6 {
            for e in task_draws(&single, skill) {
                let want = lego::BIT0 + (skill as u32 - 3) % 2;
                assert_eq!((e.answer_len, e.tokens[e.answer_pos]), (1, want));
            }
        }
        let err = Recall::new(5)
            .unwrap()
            .with_pointers()
            .unwrap()
            .with_parity()
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("parity answers a chase: it needs hops > 1"));
    }

    #[test]
    fn a_chain_order_moves_only_the_chase_clauses() {
        let any = Recall::new(5)
            .unwrap()
            .with_pointers()
            .unwrap()
            .with_hops(4)
            .unwrap();
        let first = any
            .clone()
            .with_chain_order(ChainOrder::QueriedFirst)
            .unwrap();
        let last = any
            .clone()
            .with_chain_order(ChainOrder::QueriedLast)
            .unwrap();
        // (name, target) per clause in reading order, and the queried name.
        let clauses = |e: &Example| {
            let text = e.text(VOCAB);
            let (input, output) = text.split_once(" . Output: ").unwrap();
            let cs: Vec<(String, String)> = input
                .trim_start_matches("Input: ")
                .split(" , ")
                .map(|c| {
                    let w: Vec<&str> = c.split_whitespace().collect();
                    (w[0].to_string(), w[3].to_string())
                })
                .collect();
            (cs, output.split_whitespace().next().unwrap().to_string())
        };
        for skill in 4..=6 {
            for seed in 0..50 {
                let draw = |t: &Recall| t.example(skill, &mut stream_rng(seed, Purpose::TRAIN, 9));
                let (a, f, l) = (draw(&any), draw(&first), draw(&last));
                // The same answer and the same clauses, only their order differs.
                assert_eq!(a.answer_token(), f.answer_token());
                assert_eq!(a.answer_token(), l.answer_token());
                let (ca, q) = clauses(&a);
                let (cf, _) = clauses(&f);
                let (cl, _) = clauses(&l);
                let sorted = |mut v: Vec<(String, String)>| {
                    v.sort();
                    v
                };
                assert_eq!(sorted(ca.clone()), sorted(cf.clone()));
                assert_eq!(sorted(ca), sorted(cl.clone()));
                // Follow the chain from the query: each hop's clause stands after (queried
                // first) or before (queried last) the one that points to it.
                let place =
                    |cs: &[(String, String)], name: &str| cs.iter().position(|c| c.0 == name);
                for (cs, later) in [(&cf, true), (&cl, false)] {
                    let mut at = place(cs, &q).unwrap();
                    let mut hops = 1;
                    while let Some(next) = place(cs, &cs[at].1) {
                        assert_eq!(next > at, later, "skill {skill} seed {seed}: {cs:?}");
                        at = next;
                        hops += 1;
                    }
                    assert_eq!(hops, skill - 2);
                }
            }
        }
        let bad = Recall::new(5)
            .unwrap()
            .with_chain_order(ChainOrder::QueriedLast);
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("a chain order needs hops > 1"));
    }

    /// The end of `start`'s pointer chain (the first letter that names no clause of `points`) and
    /// the number of pointers followed to it; panics, naming `text`, on a cycle.
    fn follow<'a>(
        points: &std::collections::HashMap<&'a str, &'a str>,
        start: &'a str,
        text: &str,
    ) -> (&'a str, usize) {
        let (mut name, mut depth) = (start, 0);
        while let Some(&next) = points.get(name) {
            (name, depth) = (next, depth + 1);
            assert!(depth <= 5, "a cycle: {text}");
        }
        (name, depth)
    }

    fn task_draws(task: &Recall, skill: usize) -> Vec<Example> {
        let mut rng = stream_rng(9, Purpose::TRAIN, skill as u64);
        (0..50).map(|_| task.example(skill, &mut rng)).collect()
    }

    #[test]
    fn several_queries_ask_distinct_clauses_each_answered() {
        let task = Recall::with_queries(5, 3).unwrap();
        assert_eq!(task.seq_len(), 41);
        let mut rng = stream_rng(4, Purpose::TRAIN, 0);
        for _ in 0..300 {
            let e = task.example(2, &mut rng);
            assert_eq!(e.tokens.len(), 41);
            assert_eq!(e.answer_pos, 40);
            let text = e.text(VOCAB);
            let (input, output) = text.split_once(" . Output: ").unwrap();
            let value = |name: &str| {
                let clause = input
                    .trim_start_matches("Input: ")
                    .split(" , ")
                    .find(|c| c.starts_with(&format!("{name} ")))
                    .unwrap();
                let w: Vec<&str> = clause.split(' ').collect();
                let bit: u32 = w[3].parse().unwrap();
                if w[2] == "not" {
                    1 - bit
                } else {
                    bit
                }
            };
            let answers: Vec<&str> = output.split(" , ").collect();
            assert_eq!(answers.len(), 3);
            let mut names: Vec<&str> = answers.iter().map(|a| &a[..1]).collect();
            for a in &answers {
                let w: Vec<&str> = a.split(' ').collect();
                assert_eq!(w[3].parse::<u32>().unwrap(), value(w[0]), "{text}");
            }
            names.dedup();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), 3, "distinct queries: {text}");
        }
        assert!(Recall::with_queries(5, 0).is_err());
        assert!(Recall::with_queries(5, 6).is_err());
        // k = 2, q = 2: 26·25 names × 2² bits × 2 orders of the two queries.
        assert_eq!(
            Recall::with_queries(2, 2).unwrap().capacity(1),
            26 * 25 * 4 * 2
        );
    }

    #[test]
    fn the_answer_is_the_queried_clause_through_its_operator() {
        let task = Recall::new(5).unwrap();
        let mut rng = stream_rng(3, Purpose::TRAIN, 0);
        let mut saw_not = false;
        for skill in [1, 2] {
            for _ in 0..500 {
                let e = task.example(skill, &mut rng);
                assert_eq!(e.tokens.len(), 31);
                assert_eq!(e.answer_pos, 30);
                let (clauses, queried, answer) = parse(&e);
                assert_eq!(clauses.len(), 5);
                let mut names: Vec<&String> = clauses.iter().map(|c| &c.0).collect();
                names.sort();
                names.dedup();
                assert_eq!(names.len(), 5, "names are distinct");
                let (_, op, bit) = clauses.iter().find(|c| c.0 == queried).unwrap();
                // No chains: every clause's right side is a bit, never a variable.
                assert!(clauses.iter().all(|c| c.2 <= 1));
                if skill == 1 {
                    assert!(clauses.iter().all(|c| c.1 == "val"));
                }
                saw_not |= op == "not";
                let expected = if op == "not" { 1 - bit } else { *bit };
                assert_eq!(answer, expected);
            }
        }
        assert!(saw_not);
    }

    #[test]
    fn draws_are_balanced_and_deterministic() {
        let task = Recall::new(5).unwrap();
        let draw = |seed| {
            let mut rng = stream_rng(seed, Purpose::TRAIN, 2);
            (0..2000)
                .map(|_| task.example(2, &mut rng))
                .collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        // Answers and the queried clause's position are uniform: 1000 ± 4σ (σ = √500 ≈ 22).
        let ones = a
            .iter()
            .filter(|e| e.answer_token() == lego::BIT0 + 1)
            .count();
        assert!((910..=1090).contains(&ones), "{ones} ones of 2000");
        let nots = a
            .iter()
            .map(|e| {
                let (clauses, queried, _) = parse(e);
                clauses.iter().find(|c| c.0 == queried).unwrap().1 == "not"
            })
            .filter(|&n| n)
            .count();
        assert!((910..=1090).contains(&nots), "{nots} negated of 2000");
    }

    #[test]
    fn k_range_and_capacity() {
        assert!(Recall::new(1).is_err());
        assert!(Recall::new(27).is_err());
        // k = 2: 26·25 ordered names × 2² bits × 2 queries; with operators × 2² more.
        let r = Recall::new(2).unwrap();
        assert_eq!(r.capacity(1), 26 * 25 * 4 * 2);
        assert_eq!(r.capacity(2), 26 * 25 * 16 * 2);
        assert_eq!(r.seq_len(), Recall::new(2).unwrap().seq_len());
    }
}
