//! How deep does a model chase? (docs/defaults.md, "The chase densely supervised".) On fresh dense
//! pointer-chase examples (`recall k=5 pointers dense hops=4`, skills s4..s6, a stream no run
//! trains on) this scores every answered letter on its own, teacher-forced as in training (the
//! prompt up to `Output:` read in both directions under the prefix LM, the output causally), and
//! prints the accuracy and mean −log p per chain depth of the answered clause: depth 1 copies the
//! clause's own letter, depth d follows d − 1 pointers. A run's evaluation counts an example right
//! only when all five chases are; this separates the depths.
//!
//! With `lego`, the examples are dense LEGO k = 5 (`lego k=5 dense`: every variable asked in
//! reading order) and each answered bit is scored by its variable's depth and by the hops it needs
//! from the nearest bit already known: the root's literal (depth − 1 hops) or a variable of the
//! chain answered earlier in the output (as many hops as their depths differ). The single query of
//! LEGO's skill i needs i − 1; an earlier answer can shorten that to one. With `lego shuffled`, the
//! output asks the skill's variable first and the others in a uniform order (`lego k=5 dense
//! shuffled`); the first answer is then LEGO's single query, word for word.
//!
//! With `chains`, the examples are digit chains k = 5 (`chains k=5`: every variable asked, the
//! skill's first) and each answered digit is scored by its depth and by the hops it needs from the
//! nearest value already known: its root's literal sum (depth − 1 hops) or an ancestor answered
//! earlier in the output (a descendant would do too, by subtraction; not counted). With
//! `lego_syntax`, the chains' clauses are in LEGO's shape (`b = 1 q`).
//!
//! `cargo run --example dense_depths -- MODEL.bpk [N] [prefix] [parity] [lego [shuffled] [shared]] [chains [offsets=N] [lego_syntax]]` (the 8-layer,
//! d_model 128, conv-4 model of `results/base_search/configs/`; N examples per skill; `prefix` for a
//! prefix LM; `parity` for the corpus whose chases answer the parity of the distance to the chain's
//! end, where depth d's answer is (d − 1) mod 2).

use std::collections::{BTreeMap, HashMap};

use burn::tensor::{Int, Tensor, TensorData};
use skillit::synthetic::{stream_rng, Example, Purpose, TaskSpec};

mod support;

/// The chain depth of every answered clause, in the output's order (1: its letter names no
/// clause, or its bit is literal).
fn depths(text: &str) -> Vec<usize> {
    let (clauses, output) = support::clauses(text);
    let points: HashMap<&str, &str> = clauses.iter().copied().collect();
    output
        .split(" , ")
        .map(|answer| {
            let name = answer.split_whitespace().next().expect("a name");
            let (mut at, mut depth) = (name, 0);
            while let Some(next) = points.get(at) {
                (at, depth) = (next, depth + 1);
            }
            depth
        })
        .collect()
}

/// The path of every answered variable of a digit-chains text, in the output's order: its own name,
/// its parent's, … up to its root's.
fn paths(text: &str) -> Vec<Vec<&str>> {
    let (clauses, output) = support::clauses(text);
    let points: HashMap<&str, &str> = clauses.iter().copied().collect();
    output
        .split(" , ")
        .map(|answer| {
            let mut path = vec![answer.split_whitespace().next().expect("a name")];
            while let Some(next) = points
                .get(path[path.len() - 1])
                .filter(|n| points.contains_key(*n))
            {
                path.push(next);
            }
            path
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let weights = args.get(1).expect(
        "usage: dense_depths MODEL.bpk [N] [prefix] [parity] [lego [shuffled] [shared]] \
         [chains [offsets=N] [lego_syntax]]",
    );
    let n: usize = args.get(2).map_or(500, |s| s.parse().expect("N"));
    let flag = |name: &str| args.iter().skip(3).any(|s| s == name);
    let prefix_lm = flag("prefix");
    let lego = flag("lego");
    let chains = flag("chains");
    let task = if chains {
        TaskSpec::Chains {
            k: 5,
            offsets: args
                .iter()
                .find_map(|a| a.strip_prefix("offsets="))
                .map_or(3, |o| o.parse().expect("offsets=N")),
            lego_syntax: flag("lego_syntax"),
        }
    } else if lego {
        TaskSpec::Lego {
            k: 5,
            graph: skillit::synthetic::LegoGraph::Chain,
            dense: true,
            shuffled: flag("shuffled"),
            shared_vocab: flag("shared"),
        }
    } else {
        TaskSpec::Recall {
            k: 5,
            queries: 1,
            dense: true,
            pointers: true,
            hops: 4,
            order: skillit::synthetic::ChainOrder::Any,
            parity: flag("parity"),
        }
    }
    .build()
    .unwrap();
    let (model, device) = support::load(weights, task.as_ref(), 8, 4, prefix_lm);
    // (right, −log p, count) per (depth, hops needed) of the answered clause; the recall corpus
    // has no known bits, so its key is (depth, depth).
    let mut tally: BTreeMap<(usize, usize), (usize, f64, usize)> = BTreeMap::new();
    let first_skill = if lego || chains { 1 } else { 4 };
    for skill in first_skill..=task.num_skills() {
        let mut rng = stream_rng(7, Purpose(96), skill as u64);
        let examples: Vec<Example> = (0..n).map(|_| task.example(skill, &mut rng)).collect();
        for batch in examples.chunks(100) {
            let (rows, seq) = (batch.len(), batch[0].tokens.len());
            let ids: Vec<i64> = batch
                .iter()
                .flat_map(|e| e.tokens.iter().map(|&t| i64::from(t)))
                .collect();
            let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, seq]), &device);
            // Every answer token predicted, as in training (the prompt ends at the first); the
            // letters are each answer's fourth word: tokens answer_pos + 5j + 3.
            let first = batch[0].answer_pos;
            let at: Vec<(usize, usize)> = (0..rows)
                .flat_map(|b| (first - 1..seq - 1).map(move |p| (b, p)))
                .collect();
            let lp = model.next_token_log_probs(tokens, &at);
            let lp: Vec<f32> = lp
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 log-probabilities");
            let vocab = lp.len() / at.len();
            for (b, e) in batch.iter().enumerate() {
                let text = e.text(task.vocab());
                let depths = depths(&text);
                let paths = chains.then(|| paths(&text));
                for (j, &depth) in depths.iter().enumerate() {
                    // On the chain, two variables are as many hops apart as their depths differ;
                    // in a forest, an ancestor answered earlier is as many hops up as its place
                    // on the answered variable's path.
                    let needed = match (&paths, lego) {
                        (Some(paths), _) => paths[..j]
                            .iter()
                            .filter_map(|earlier| paths[j].iter().position(|n| n == &earlier[0]))
                            .fold(depth - 1, usize::min),
                        (None, true) => depths[..j]
                            .iter()
                            .map(|&d| d.abs_diff(depth))
                            .fold(depth - 1, usize::min),
                        (None, false) => depth,
                    };
                    let pos = e.answer_pos + 5 * j + 3;
                    let row = b * (seq - first) + (pos - first);
                    let scores = &lp[row * vocab..(row + 1) * vocab];
                    let best = (0..vocab)
                        .max_by(|&x, &y| scores[x].total_cmp(&scores[y]))
                        .expect("a vocabulary");
                    let answer = e.tokens[pos] as usize;
                    let t = tally.entry((depth, needed)).or_default();
                    t.0 += usize::from(best == answer);
                    t.1 -= f64::from(scores[answer]);
                    t.2 += 1;
                }
            }
        }
    }
    let hops_known = lego || chains;
    match hops_known {
        true => println!("depth | hops needed | answers | accuracy | −log p"),
        false => println!("depth | answers | accuracy | −log p"),
    }
    for ((depth, needed), (right, nll, count)) in &tally {
        let hops = match hops_known {
            true => format!(" | {needed:>11}"),
            false => String::new(),
        };
        println!(
            "{depth:>5}{hops} | {count:>7} | {:>8.3} | {:.3}",
            *right as f64 / *count as f64,
            nll / *count as f64
        );
    }
}
