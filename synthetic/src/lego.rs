//! LEGO (Zhang et al. 2022, as used by Skill-it!; docs/paper.md §2).
//!
//! An example with k = 5 on the default chain graph:
//!
//! ```text
//! Input: b = not y , r = val 1 , m = val b , q = val m , y = not r . Output: b = val 1
//! ```
//!
//! Variable *v* (0-based node of the graph) is named by letter *v* of a random permutation of the
//! alphabet and holds an independent fair bit. A root's clause states its bit literally (`r = val 1`);
//! every other variable's clause relates it to its parent (`y = not r`: the opposite bit,
//! `m = val b`: the same bit). The k clauses appear in a uniformly random order. Skill *i* queries
//! variable *i* (node i − 1), which on the chain is the variable at depth *i*.
//!
//! Sequence layout (5k + 6 tokens; 31 for k = 5): `Input:`, k clauses of 4 words separated by `,`,
//! `.`, `Output:`, the queried name, `=`, `val`, and the answer bit as the last token.
//!
//! With `dense` (a diagnostic, not the paper's task), the output asks every variable in reading
//! order (`Output: b = val 1 , r = val 1 , m = val 1 , q = val 1 , y = val 0`, 10k + 1 tokens) and
//! the whole output is the answer, teacher-forced, every token supervised under the answer loss:
//! every depth supervised in every sequence, as Zhang et al. trained LEGO (every variable's value
//! predicted), where the single query supervises one. An example is right when all k bits are; the
//! skill an example is drawn for no longer changes it. The answers read before a variable's own
//! can shorten its path: a variable whose parent (or child) was answered before it is one hop from
//! a known bit (`examples/dense_depths.rs` scores each answer by the hops it needs). Reading order
//! also lets a model find each asked clause by its place instead of by its name; with `shuffled`,
//! the output asks the example's skill's variable first (the single query of LEGO, word for word)
//! and the others in a uniform order, so every answer needs the lookup by name. The names asked
//! after the first are then unpredictable: a shuffled example is right only when they are guessed
//! too, so a run's accuracy column says little and the examples score the answers.

use rand::seq::SliceRandom;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::{permutations, Error, Example, Task, TaskRng, Vocab};

/// The LEGO vocabulary (36 tokens). Letters a..z have ids 10..=35.
pub static VOCAB: &Vocab = &Vocab::new(
    "lego",
    &[
        "<pad>", "Input:", "Output:", "=", "val", "not", ",", ".", "0", "1", "a", "b", "c", "d",
        "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v",
        "w", "x", "y", "z",
    ],
);

pub(crate) const INPUT: u32 = 1;
pub(crate) const OUTPUT: u32 = 2;
pub(crate) const EQ: u32 = 3;
pub(crate) const VAL: u32 = 4;
pub(crate) const NOT: u32 = 5;
pub(crate) const COMMA: u32 = 6;
pub(crate) const DOT: u32 = 7;
pub(crate) const BIT0: u32 = 8;
pub(crate) const LETTER_A: u32 = 10;

/// The default number of variables (the paper's k).
pub const DEFAULT_K: usize = 5;
/// The smallest and largest k: a chain needs two variables, and names are single letters.
pub const MIN_K: usize = 2;
pub const MAX_K: usize = 26;

/// The dependency graph between a LEGO example's variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegoGraph {
    /// A path 1 → 2 → … → k (the paper's graph).
    #[default]
    Chain,
    /// The binary tree of the authors' code (`networkx.full_rary_tree(2, 4)`): 1 → 2, 1 → 3, 2 → 4.
    /// Only for k = 4.
    Tree,
    /// The authors' `disconnected` graph: the variables split into two halves (numpy `array_split`:
    /// the first half takes the odd one), each half's first variable is a root with a literal bit and
    /// every other variable of that half refers to its half's root. (The authors' code adds edges
    /// i → j for all i < j within a half and takes each variable's first in-edge as its parent, which
    /// is the half's root: two stars, although the code's comment says "two path graphs".)
    Disconnected,
}

impl LegoGraph {
    pub const ALL: [LegoGraph; 3] = [LegoGraph::Chain, LegoGraph::Tree, LegoGraph::Disconnected];

    pub fn as_str(self) -> &'static str {
        match self {
            LegoGraph::Chain => "chain",
            LegoGraph::Tree => "tree",
            LegoGraph::Disconnected => "disconnected",
        }
    }
}

impl std::fmt::Display for LegoGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LegoGraph {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        LegoGraph::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| Error::InvalidParameter {
                task: "lego",
                field: "graph",
                value: s.to_string(),
                allowed: "one of chain, tree, disconnected".to_string(),
            })
    }
}

/// The LEGO task with k variables on a dependency graph.
#[derive(Debug, Clone)]
pub struct Lego {
    k: usize,
    graph: LegoGraph,
    /// The parent of each variable (0-based), `None` for a root.
    parent: Vec<Option<usize>>,
    /// The depth of each variable: 1 for a root.
    depth: Vec<usize>,
    /// Every variable asked, in reading order, the whole output the answer.
    dense: bool,
    /// Dense, asked in a shuffled order: the skill's variable first, then the others.
    shuffled: bool,
    /// Written in the shared vocabulary (the same ids, more words).
    shared: bool,
}

impl Lego {
    /// A LEGO task with `k` variables (2..=26) on `graph` (the tree needs k = 4).
    pub fn new(k: usize, graph: LegoGraph) -> Result<Self, Error> {
        if !(MIN_K..=MAX_K).contains(&k) {
            return Err(Error::InvalidParameter {
                task: "lego",
                field: "k",
                value: k.to_string(),
                allowed: format!("k must be in {MIN_K}..={MAX_K}"),
            });
        }
        let parent: Vec<Option<usize>> = match graph {
            LegoGraph::Chain => (0..k).map(|v| v.checked_sub(1)).collect(),
            LegoGraph::Tree => {
                if k != 4 {
                    return Err(Error::InvalidParameter {
                        task: "lego",
                        field: "k",
                        value: k.to_string(),
                        allowed: "the tree graph needs k = 4".to_string(),
                    });
                }
                vec![None, Some(0), Some(0), Some(1)]
            }
            LegoGraph::Disconnected => {
                let second = k.div_ceil(2);
                (0..k)
                    .map(|v| match v {
                        0 => None,
                        v if v < second => Some(0),
                        v if v == second => None,
                        _ => Some(second),
                    })
                    .collect()
            }
        };
        let mut depth = vec![0; k];
        for v in 0..k {
            // Parents always precede their children, so their depth is known.
            depth[v] = parent[v].map_or(1, |p| depth[p] + 1);
        }
        Ok(Self {
            k,
            graph,
            parent,
            depth,
            dense: false,
            shuffled: false,
            shared: false,
        })
    }

    /// Asks every variable in reading order, the whole output the answer (see the module's doc).
    pub fn with_dense(mut self) -> Self {
        self.dense = true;
        self
    }

    /// Dense, asking the skill's variable first and the others in a uniform order instead of
    /// reading order (see the module's doc). Needs dense.
    pub fn with_shuffled(mut self) -> Result<Self, Error> {
        if !self.dense {
            return Err(Error::InvalidParameter {
                task: "lego",
                field: "shuffled",
                value: "true".into(),
                allowed: "shuffled orders dense's answers: it needs dense = true".into(),
            });
        }
        self.shuffled = true;
        Ok(self)
    }

    /// The same examples in [`crate::SHARED`], the vocabulary of LEGO and addition together: every
    /// id is LEGO's own, only the model's vocabulary is larger.
    pub fn with_shared_vocab(mut self) -> Self {
        self.shared = true;
        self
    }

    /// The number of variables.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The dependency graph.
    pub fn graph(&self) -> LegoGraph {
        self.graph
    }

    /// The depth in the graph of the variable that skill `skill` (1-based) queries; 1 = a root.
    pub fn depth(&self, skill: usize) -> usize {
        self.depth[skill - 1]
    }

    /// The parent (1-based) of skill `skill`'s variable, `None` for a root.
    pub fn parent(&self, skill: usize) -> Option<usize> {
        self.parent[skill - 1].map(|p| p + 1)
    }

    /// Automorphisms of the graph that fix `fixed`: how many (names, bits, clause order) draws give
    /// the same text. Only the disconnected graph has interchangeable variables (a half's leaves).
    fn symmetries(&self, fixed: usize) -> u128 {
        let mut total: u128 = 1;
        for root in (0..self.k).filter(|&v| self.parent[v].is_none()) {
            let leaves = (0..self.k)
                .filter(|&v| v != fixed && self.parent[v] == Some(root))
                .filter(|&v| (0..self.k).all(|c| self.parent[c] != Some(v)))
                .count() as u128;
            total *= (1..=leaves).product::<u128>();
        }
        total
    }
}

impl Task for Lego {
    fn name(&self) -> &'static str {
        "lego"
    }

    fn num_skills(&self) -> usize {
        self.k
    }

    fn skill_name(&self, id: usize) -> String {
        format!("s{id} (depth {})", self.depth(id))
    }

    fn vocab(&self) -> &Vocab {
        if self.shared {
            crate::SHARED
        } else {
            VOCAB
        }
    }

    fn seq_len(&self) -> usize {
        // Dense: `Input:`, k clauses of 4 words, k − 1 commas, `.`, `Output:`, k answers of 4
        // words and k − 1 commas.
        if self.dense {
            10 * self.k + 1
        } else {
            5 * self.k + 6
        }
    }

    fn default_val_seed(&self) -> u64 {
        42
    }

    fn example(&self, skill: usize, rng: &mut TaskRng) -> Example {
        let k = self.k;
        let queried = skill - 1;
        // Names: the first k letters of a random permutation of the alphabet.
        let mut letters: [u8; 26] = std::array::from_fn(|i| i as u8);
        let (names, _) = letters.partial_shuffle(rng, k);
        let name = |v: usize| LETTER_A + names[v] as u32;
        // One independent fair bit per variable (bit v of one 32-bit draw; k <= 26).
        let bits = rng.next_u32();
        let bit = |v: usize| (bits >> v) & 1;
        // Clause order: a uniform permutation.
        let mut order: [u8; 26] = std::array::from_fn(|i| i as u8);
        order[..k].shuffle(rng);

        let mut tokens = Vec::with_capacity(self.seq_len());
        tokens.push(INPUT);
        for (n, &v) in order[..k].iter().enumerate() {
            let v = v as usize;
            if n > 0 {
                tokens.push(COMMA);
            }
            tokens.push(name(v));
            tokens.push(EQ);
            match self.parent[v] {
                None => tokens.extend([VAL, BIT0 + bit(v)]),
                Some(p) => {
                    let relation = if bit(v) == bit(p) { VAL } else { NOT };
                    tokens.extend([relation, name(p)]);
                }
            }
        }
        tokens.push(DOT);
        tokens.push(OUTPUT);
        // Shuffled: the queried variable first, then the others in a uniform order (drawn only
        // here, so the other formats' examples do not change).
        let mut shuffled: [u8; 26] = std::array::from_fn(|i| i as u8);
        shuffled.swap(0, queried);
        let asked: &[u8] = if self.shuffled {
            shuffled[1..k].shuffle(rng);
            &shuffled[..k]
        } else if self.dense {
            &order[..k]
        } else {
            &[queried as u8]
        };
        let answer_pos = tokens.len();
        for (n, &v) in asked.iter().enumerate() {
            let v = v as usize;
            if n > 0 {
                tokens.push(COMMA);
            }
            tokens.extend([name(v), EQ, VAL, BIT0 + bit(v)]);
        }
        debug_assert_eq!(tokens.len(), self.seq_len());
        if self.dense {
            Example::answer_from(skill, tokens, answer_pos)
        } else {
            Example::answer_last(skill, tokens)
        }
    }

    fn capacity(&self, skill: usize) -> u128 {
        // Ordered names P(26, k), 2^k bits and k! clause orders, each text reached by as many draws
        // as the graph has symmetries fixing the queried variable.
        // Dense: the same texts, every variable asked; shuffled asks the skill's variable first,
        // then the others in an order of its own: × (k − 1)!.
        let k = self.k as u128;
        let names = permutations(26, k);
        let asked = if self.shuffled {
            permutations(k - 1, k - 1)
        } else {
            1
        };
        let draws = names
            .saturating_mul(1u128 << self.k)
            .saturating_mul(permutations(k, k))
            .saturating_mul(asked);
        if draws == u128::MAX {
            draws
        } else {
            // Dense asks in reading order, so no variable is fixed: every symmetry is the same text.
            let fixed = if self.dense && !self.shuffled {
                usize::MAX
            } else {
                skill - 1
            };
            draws / self.symmetries(fixed)
        }
    }

    fn describe(&self) -> String {
        let dense = match (self.dense, self.shuffled) {
            (_, true) => " dense shuffled",
            (true, false) => " dense",
            _ => "",
        };
        let vocab = if self.shared { " vocab=shared" } else { "" };
        format!("lego k={} graph={}{dense}{vocab}", self.k, self.graph)
    }

    fn prerequisites(&self) -> Vec<(usize, usize)> {
        (1..=self.k)
            .filter_map(|s| self.parent(s).map(|p| (p, s)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphs_have_the_authors_shape() {
        let chain = Lego::new(5, LegoGraph::Chain).unwrap();
        assert_eq!(
            (1..=5).map(|s| chain.depth(s)).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        let tree = Lego::new(4, LegoGraph::Tree).unwrap();
        assert_eq!(
            (1..=4).map(|s| tree.parent(s)).collect::<Vec<_>>(),
            [None, Some(1), Some(1), Some(2)]
        );
        // numpy.array_split(arange(5), 2) = [0 1 2], [3 4]
        let dis = Lego::new(5, LegoGraph::Disconnected).unwrap();
        assert_eq!(
            (1..=5).map(|s| dis.parent(s)).collect::<Vec<_>>(),
            [None, Some(1), Some(1), None, Some(4)]
        );
        assert!(Lego::new(5, LegoGraph::Tree).is_err());
        assert!(Lego::new(1, LegoGraph::Chain).is_err());
        assert!(Lego::new(27, LegoGraph::Chain).is_err());
    }

    #[test]
    fn capacity_counts_distinct_texts() {
        // k = 2 chain: 26·25 names × 4 bit pairs × 2 clause orders.
        let lego = Lego::new(2, LegoGraph::Chain).unwrap();
        assert_eq!(lego.capacity(1), 26 * 25 * 4 * 2);
        // k = 5 disconnected: leaves of root 1 are variables 2 and 3, interchangeable unless queried.
        let dis = Lego::new(5, LegoGraph::Disconnected).unwrap();
        let draws: u128 = 26 * 25 * 24 * 23 * 22 * 32 * 120;
        assert_eq!(dis.capacity(1), draws / 2);
        assert_eq!(dis.capacity(2), draws);
        assert_eq!(
            Lego::new(26, LegoGraph::Chain).unwrap().capacity(1),
            u128::MAX
        );
    }

    #[test]
    fn dense_asks_every_variable_in_reading_order_with_the_values_the_clauses_give() {
        let lego = Lego::new(5, LegoGraph::Chain).unwrap().with_dense();
        assert!(lego.describe().ends_with("dense"));
        assert_eq!(lego.seq_len(), 51);
        let mut rng = crate::stream_rng(3, crate::Purpose(0), 0);
        for skill in [1, 3, 5, 2, 4].into_iter().cycle().take(200) {
            let e = lego.example(skill, &mut rng);
            assert_eq!(e.tokens.len(), 51);
            // The answer is the whole output: after `Input:`, 5 clauses, 4 commas, `.`, `Output:`.
            assert_eq!((e.answer_pos, e.answer_len), (27, 24));
            assert_eq!(e.tokens[e.answer_pos - 1], OUTPUT);
            let text = e.text(VOCAB);
            let (input, output) = text.split_once(" . Output: ").unwrap();
            let clauses: Vec<Vec<&str>> = input
                .trim_start_matches("Input: ")
                .split(" , ")
                .map(|c| c.split_whitespace().collect())
                .collect();
            // A variable's value: its literal bit, or its parent's value through the operator.
            fn value(clauses: &[Vec<&str>], name: &str) -> u32 {
                let c = clauses.iter().find(|c| c[0] == name).unwrap();
                let flip = u32::from(c[2] == "not");
                match c[3] {
                    "0" | "1" => c[3].parse().unwrap(),
                    parent => value(clauses, parent) ^ flip,
                }
            }
            let answers: Vec<Vec<&str>> = output
                .split(" , ")
                .map(|a| a.split_whitespace().collect())
                .collect();
            assert_eq!(answers.len(), 5);
            for (clause, answer) in clauses.iter().zip(&answers) {
                assert_eq!(answer[0], clause[0], "reading order: {text}");
                assert_eq!(answer[1..3], ["=", "val"]);
                let bit: u32 = answer[3].parse().unwrap();
                assert_eq!(bit, value(&clauses, clause[0]), "{text}");
            }
        }
        // The same texts as the single query, every one reachable from any skill.
        let single = Lego::new(5, LegoGraph::Chain).unwrap();
        assert_eq!(lego.capacity(2), single.capacity(2));
        let dis = Lego::new(5, LegoGraph::Disconnected).unwrap();
        assert_eq!(dis.clone().with_dense().capacity(2), dis.capacity(1));
    }

    #[test]
    fn shuffled_asks_the_skills_variable_first_then_every_other_once() {
        assert!(Lego::new(5, LegoGraph::Chain)
            .unwrap()
            .with_shuffled()
            .is_err());
        let reading = Lego::new(5, LegoGraph::Chain).unwrap().with_dense();
        let lego = reading.clone().with_shuffled().unwrap();
        assert!(lego.describe().ends_with("dense shuffled"));
        let single = Lego::new(5, LegoGraph::Chain).unwrap();
        let mut firsts = [0usize; 5];
        for skill in 1..=5 {
            let mut rng = crate::stream_rng(9, crate::Purpose(0), skill as u64);
            for _ in 0..100 {
                // The input and the first answer are the single query's, word for word, from the
                // same draws: the shuffle is drawn after them.
                let one = single.example(skill, &mut rng.clone());
                let e = lego.example(skill, &mut rng);
                assert_eq!(e.tokens[..one.tokens.len()], one.tokens[..]);
                let text = e.text(VOCAB);
                let (input, output) = text.split_once(" . Output: ").unwrap();
                let mut clauses: Vec<&str> = input
                    .trim_start_matches("Input: ")
                    .split(" , ")
                    .map(|c| c.split_whitespace().next().unwrap())
                    .collect();
                let mut asked: Vec<&str> = output
                    .split(" , ")
                    .map(|a| a.split_whitespace().next().unwrap())
                    .collect();
                // The second asked variable's place in reading order, to check the shuffle.
                firsts[clauses.iter().position(|&c| c == asked[1]).unwrap()] += 1;
                clauses.sort_unstable();
                asked.sort_unstable();
                assert_eq!(asked, clauses, "every variable asked once: {text}");
            }
        }
        // Uniform over the four others: no reading place gets more than half of the 500.
        assert!(firsts.iter().all(|&n| n < 250), "{firsts:?}");
        assert_eq!(lego.capacity(3), reading.capacity(3) * 24);
    }
}
