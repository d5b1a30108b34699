//! Which rule does a LEGO-trained model follow? (docs/defaults.md, "LEGO from the prefix hop
//! stage".) A model that follows only j of the hops to the queried variable's root and then
//! reads the root's literal bit answers `root bit ⊕ (the nots of the first j clauses of the
//! queried variable's path)`: j = 0 is the s1 shortcut (the only literal bit in the sentence),
//! j = depth − 1 the true answer. A model that counts every `not` in the sentence answers
//! `root bit ⊕ (all nots)`, the true answer of s5 on the chain and a shortcut on the others; one
//! that counts every `not` but the leaf's (the clause of the variable no clause reads: the
//! deepest) answers `root bit ⊕ (all nots but the leaf's)`, the true answer of s4. On
//! fresh LEGO k = 5 examples (a stream no run trains on) this prints, per skill, how often the
//! model's answer agrees with each rule and the mean −log p it gives each rule's bit: a rule the
//! model follows agrees on (nearly) every example, one it ignores on about half (the rules agree
//! with each other on some examples, so read the rows together).
//!
//! `cargo run --example lego_shortcuts -- MODEL.bpk [N] [prefix] [shared]` (the 8-layer, d_model
//! 128, conv-4 model of `results/base_search/configs/`; `prefix` for a model trained as a prefix
//! LM, `shared` for one of the shared LEGO + addition vocabulary).

use skillit::synthetic::{stream_rng, Example, LegoGraph, Purpose, TaskSpec};

mod support;

/// The rules' bits for one example `Input: b = not y , r = val 1 , … . Output: b = val 1`:
/// `[j = 0, 1, …, depth − 1, all nots, all nots but the leaf's]`.
fn rules(text: &str) -> Vec<u32> {
    let (input, output) = text.split_once(" . Output: ").expect("an example");
    let clauses: Vec<(&str, bool, &str)> = input
        .trim_start_matches("Input: ")
        .split(" , ")
        .map(|c| {
            let w: Vec<&str> = c.split_whitespace().collect();
            (w[0], w[2] == "not", w[3])
        })
        .collect();
    let root = clauses
        .iter()
        .find(|c| c.2 == "0" || c.2 == "1")
        .expect("a root");
    let root_bit = u32::from(root.2 == "1");
    let clause = |name: &str| {
        clauses
            .iter()
            .find(|c| c.0 == name)
            .expect("a clause per variable")
    };
    // The queried variable's path to the root, without the root.
    let mut path = Vec::new();
    let mut at = clause(output.split_whitespace().next().expect("a query"));
    while at.0 != root.0 {
        path.push(at.1);
        at = clause(at.2);
    }
    let mut bits: Vec<u32> = (0..=path.len())
        .map(|j| root_bit ^ (path[..j].iter().filter(|&&n| n).count() as u32 % 2))
        .collect();
    let nots = clauses.iter().filter(|c| c.0 != root.0 && c.1).count() as u32;
    bits.push(root_bit ^ (nots % 2));
    let leaf = clauses
        .iter()
        .find(|c| c.0 != root.0 && clauses.iter().all(|d| d.2 != c.0))
        .expect("a leaf");
    bits.push(root_bit ^ ((nots - u32::from(leaf.1)) % 2));
    bits
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let weights = args
        .get(1)
        .expect("usage: lego_shortcuts MODEL.bpk [N] [prefix] [shared]");
    let n: usize = args.get(2).map_or(2000, |s| s.parse().expect("N"));
    let flag = |name: &str| args.iter().skip(3).any(|s| s == name);
    let prefix_lm = flag("prefix");
    let task = TaskSpec::Lego {
        k: 5,
        graph: LegoGraph::Chain,
        dense: false,
        shuffled: false,
        shared_vocab: flag("shared"),
    }
    .build()
    .unwrap();
    let (model, device) = support::load(weights, task.as_ref(), 8, 4, prefix_lm);
    let bit_ids = ["0", "1"].map(|w| task.vocab().id(w).expect("LEGO's bits"));
    println!("skill | rule | examples | agreement | −log p(rule's bit)");
    for skill in 1..=task.num_skills() {
        let mut rng = stream_rng(7, Purpose(97), skill as u64);
        let examples: Vec<Example> = (0..n).map(|_| task.example(skill, &mut rng)).collect();
        let bits: Vec<Vec<u32>> = examples
            .iter()
            .map(|e| rules(&e.text(task.vocab())))
            .collect();
        // A check of the rules: following every hop is the example's own answer.
        assert!(examples
            .iter()
            .zip(&bits)
            .all(|(e, b)| e.answer_token() == bit_ids[b[skill - 1] as usize]));
        for rule in 0..=skill + 1 {
            // The same prompts, each answered by the rule's bit: accuracy against them is the
            // model's agreement with the rule.
            let relabelled: Vec<Example> = examples
                .iter()
                .zip(&bits)
                .map(|(e, b)| {
                    let mut tokens = e.tokens.clone();
                    tokens[e.answer_pos] = bit_ids[b[rule] as usize];
                    Example::answer_last(skill, tokens)
                })
                .collect();
            let eval = skillit::train::evaluate(&model, &relabelled, skill, &device, 0);
            let name = match rule {
                r if r == skill => "all nots".to_string(),
                r if r == skill + 1 => "all but leaf's".to_string(),
                r if r + 1 == skill => format!("{r} hops (truth)"),
                r => format!("{r} hops"),
            };
            println!(
                "{skill:>5} | {name:>14} | {n:>8} | {:>9.3} | {:.3}",
                eval.accuracy[skill - 1],
                eval.loss[skill - 1]
            );
        }
    }
}
