//! Which depth-2 pointer chases does a hop-trained model get wrong? (docs/defaults.md, "Pointer
//! chains before LEGO": depth 2 sits at about 0.8 whatever its share.) Loads the weights of a model
//! trained on `recall k=5 pointers hops=4` (8 layers, d_model 128, conv 4) and scores fresh depth-2
//! examples (skill s4, drawn from a stream no run trains on), split by the order of the two clauses
//! of the chase (the queried clause before or after the clause it points to) and by the number of
//! roots of the forest.
//!
//! `cargo run --example hop_orders -- MODEL.bpk [N] [LAYERS] [HEADS] [prefix]` (LAYERS: 8 unless
//! the model was grown, `init_layers`; HEADS: 4 unless it is the 8-head candidate; `prefix` for a
//! model trained as a prefix LM, `prefix_lm`).

use std::collections::BTreeMap;

use skillit::synthetic::{stream_rng, Example, Purpose, TaskSpec};

mod support;

/// (queried clause first, roots) of a depth-2 example's text
/// `Input: b = val v , v = val p , … . Output: b = val p`.
fn classify(text: &str) -> (bool, usize) {
    let (clauses, output) = support::clauses(text);
    let query = output.split_whitespace().next().expect("a query");
    let position = |name: &str| clauses.iter().position(|(n, _)| *n == name);
    let q = position(query).expect("the queried clause");
    let p = position(clauses[q].1).expect("the clause it points to");
    let mut roots: Vec<&str> = clauses
        .iter()
        .map(|(_, t)| *t)
        .filter(|t| position(t).is_none())
        .collect();
    roots.sort_unstable();
    roots.dedup();
    (q < p, roots.len())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let weights = args
        .get(1)
        .expect("usage: hop_orders MODEL.bpk [N] [LAYERS] [HEADS] [prefix]");
    let n: usize = args.get(2).map_or(2000, |s| s.parse().expect("N"));
    let layers: usize = args.get(3).map_or(8, |s| s.parse().expect("LAYERS"));
    let heads: usize = args.get(4).map_or(4, |s| s.parse().expect("HEADS"));
    let prefix_lm = args.get(5).is_some_and(|s| s == "prefix");
    let task = TaskSpec::Recall {
        k: 5,
        queries: 1,
        dense: false,
        pointers: true,
        hops: 4,
        order: skillit::synthetic::ChainOrder::Any,
        parity: false,
    }
    .build()
    .unwrap();
    let (model, device) = support::load(weights, task.as_ref(), layers, heads, prefix_lm);
    let mut rng = stream_rng(7, Purpose(98), 4);
    let mut classes: BTreeMap<(bool, usize), Vec<Example>> = BTreeMap::new();
    for _ in 0..n {
        let e = task.example(4, &mut rng);
        classes
            .entry(classify(&e.text(task.vocab())))
            .or_default()
            .push(e);
    }
    println!("queried clause first | roots | examples | accuracy | loss");
    for ((first, roots), examples) in &classes {
        let eval = skillit::train::evaluate(&model, examples, task.num_skills(), &device, 0);
        println!(
            "{first:>20} | {roots:>5} | {:>8} | {:>8.3} | {:.3}",
            examples.len(),
            eval.accuracy[3],
            eval.loss[3]
        );
    }
}
