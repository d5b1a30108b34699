//! Skills graphs: A[i][j] ≥ 0 is how much training on train skill i helps eval skill j
//! (docs/paper.md §1). The published graphs of docs/paper.md §7 are built in; a graph can also be
//! read from a TOML file:
//!
//! ```toml
//! train = [1, 2, 3, 4, 5]        # train skill ids (rows)
//! eval = [1, 2, 3, 4, 5]         # eval skill ids (columns)
//! matrix = [[1, 0, 0, 0, 0],
//!           [0.5, 1, 0.5, 0.5, 0],
//!           [0, 0, 1, 0, 0],
//!           [0, 0, 0, 1, 0],
//!           [0, 0, 0, 0, 1]]
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::common::Evaluation;
use crate::{Error, Result};

/// A k×m skills graph over train skills (rows) and eval skills (columns), both 1-based ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillsGraph {
    #[serde(rename = "train")]
    pub train_skills: Vec<usize>,
    #[serde(rename = "eval")]
    pub eval_skills: Vec<usize>,
    pub matrix: Vec<Vec<f64>>,
}

/// The weight of every off-diagonal edge of the synthetic tasks' published graphs
/// (docs/paper.md §1).
pub const EDGE_WEIGHT: f64 = 0.5;

impl SkillsGraph {
    /// A square graph over skills 1..=k from its matrix.
    pub fn from_matrix(matrix: Vec<Vec<f64>>) -> Result<Self> {
        let k = matrix.len();
        let g = Self {
            train_skills: (1..=k).collect(),
            eval_skills: (1..=k).collect(),
            matrix,
        };
        g.validate("graph", k)?;
        Ok(g)
    }

    /// A = I over k skills: each skill helps only itself (the `no_graph` ablation).
    pub fn identity(k: usize) -> Self {
        let matrix = (0..k)
            .map(|i| (0..k).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
            .collect();
        Self {
            train_skills: (1..=k).collect(),
            eval_skills: (1..=k).collect(),
            matrix,
        }
    }

    /// The graphs the paper published (docs/paper.md §7): LEGO pre-training s2 → s1, s3, s4;
    /// addition pre-training s2 → s1; LEGO fine-tuning on s3 over (s1, s2, s3): [0, 0.5, 1];
    /// addition fine-tuning on s1 over (s1, s2): [1, 0.5]. `None` where the paper gives no graph.
    pub fn published(task: &str, setting: &str, k: usize) -> Option<Self> {
        let square = |edges: &[(usize, usize)]| {
            let mut g = Self::identity(k);
            for &(from, to) in edges {
                g.matrix[from - 1][to - 1] = EDGE_WEIGHT;
            }
            g
        };
        match (task, setting, k) {
            ("lego", "pretrain", 5) => Some(square(&[(2, 1), (2, 3), (2, 4)])),
            ("addition", "pretrain", 3) => Some(square(&[(2, 1)])),
            ("lego", "finetune", 5) => Some(Self {
                train_skills: vec![1, 2, 3],
                eval_skills: vec![3],
                matrix: vec![vec![0.0], vec![EDGE_WEIGHT], vec![1.0]],
            }),
            ("addition", "finetune", 3) => Some(Self {
                train_skills: vec![1, 2],
                eval_skills: vec![1],
                matrix: vec![vec![1.0], vec![EDGE_WEIGHT]],
            }),
            _ => None,
        }
    }

    /// The graph a task's own structure gives in pre-training, where the paper publishes none:
    /// an edge of weight [`EDGE_WEIGHT`] from each skill to every skill computed from it
    /// ([`skillit_synthetic::Task::prerequisites`]: LEGO's parent → child, addition's carry
    /// i → i + 1), the direction of the paper's fine-tuning graph (LEGO s2 → s3, docs/paper.md §7).
    /// `None` for a task whose skills do not build on each other.
    pub fn prerequisites(task: &dyn skillit_synthetic::Task) -> Option<Self> {
        let edges = task.prerequisites();
        if edges.is_empty() {
            return None;
        }
        let mut g = Self::identity(task.num_skills());
        for (from, to) in edges {
            g.matrix[from - 1][to - 1] = EDGE_WEIGHT;
        }
        Some(g)
    }

    /// Reads a graph file (TOML, see the module docs).
    pub fn read(path: &Path, k: usize) -> Result<Self> {
        let origin = path.display().to_string();
        let g: Self = crate::common::read_toml(path)?;
        g.validate(&origin, k)?;
        Ok(g)
    }

    /// Checks the shape (rows = train skills, columns = eval skills, ids in 1..=k) and the entries
    /// (finite, ≥ 0).
    pub fn validate(&self, origin: &str, k: usize) -> Result<()> {
        let bad = |field: &str, message: String| {
            Err(Error::Invalid {
                origin: origin.into(),
                field: field.into(),
                message,
            })
        };
        for (field, ids) in [("train", &self.train_skills), ("eval", &self.eval_skills)] {
            if ids.is_empty() {
                return bad(field, "needs at least one skill".into());
            }
            if let Some(s) = ids.iter().find(|&&s| s == 0 || s > k) {
                return bad(field, format!("skill {s} is not in 1..={k}"));
            }
        }
        if self.matrix.len() != self.train_skills.len() {
            return bad(
                "matrix",
                format!(
                    "{} rows for {} train skills",
                    self.matrix.len(),
                    self.train_skills.len()
                ),
            );
        }
        for (i, row) in self.matrix.iter().enumerate() {
            if row.len() != self.eval_skills.len() {
                return bad(
                    "matrix",
                    format!(
                        "row {} has {} entries for {} eval skills",
                        i + 1,
                        row.len(),
                        self.eval_skills.len()
                    ),
                );
            }
            if let Some(v) = row.iter().find(|v| !v.is_finite() || **v < 0.0) {
                return bad(
                    "matrix",
                    format!("entry {v} in row {} is not a finite number ≥ 0", i + 1),
                );
            }
        }
        Ok(())
    }

    /// Eval skill j's (0-based column) validation loss in an evaluation.
    pub fn eval_loss(&self, evaluation: &Evaluation, j: usize) -> f64 {
        evaluation.loss[self.eval_skills[j] - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_the_wrong_shape_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| {
            let p = dir.path().join("g.toml");
            std::fs::write(&p, text).unwrap();
            p
        };
        let ok = write("train = [1, 2]\neval = [1, 2]\nmatrix = [[1, 0], [0.5, 1]]\n");
        assert_eq!(SkillsGraph::read(&ok, 2).unwrap().matrix[1][0], 0.5);
        for (text, needle) in [
            (
                "train = [1, 2]\neval = [1, 2]\nmatrix = [[1, 0]]\n",
                "1 rows for 2 train skills",
            ),
            (
                "train = [1, 2]\neval = [1, 2]\nmatrix = [[1, 0], [1]]\n",
                "row 2 has 1 entries",
            ),
            (
                "train = [1, 2]\neval = [1, 2]\nmatrix = [[1, -1], [0, 1]]\n",
                "entry -1",
            ),
            (
                "train = [1, 3]\neval = [1, 2]\nmatrix = [[1, 0], [0, 1]]\n",
                "skill 3 is not in 1..=2",
            ),
        ] {
            let err = SkillsGraph::read(&write(text), 2).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
