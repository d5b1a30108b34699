//! `skillit generate`: write examples of a task to stdout, one per line (JSONL or plain text).

use super::*;

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The task.
    #[arg(long, value_enum)]
    pub task: TaskName,
    /// Variables (LEGO, 2..=26, default 5) or digits (addition, 1..=18, default 3).
    #[arg(long)]
    pub k: Option<usize>,
    /// LEGO's dependency graph: chain (default), tree (k = 4 only) or disconnected.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["chain", "tree", "disconnected"])
        .try_map(|s| s.parse::<LegoGraph>()))]
    pub graph: Option<LegoGraph>,
    /// One skill id (1..=k) or `all` (then --n examples of each skill).
    #[arg(long, default_value = "all")]
    pub skill: SkillSelection,
    /// The training stream or the fixed validation set.
    #[arg(long, value_enum, default_value = "train")]
    pub split: Split,
    /// Examples per skill.
    #[arg(long, default_value_t = 10)]
    pub n: usize,
    /// Run seed (train, default 0) or validation seed (val, default 42 / 420).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
}

impl GenerateArgs {
    pub fn run(self) -> skillit::Result<()> {
        let GenerateArgs {
            task,
            k,
            graph,
            skill,
            split,
            n,
            seed,
            format,
        } = self;
        let generation = GenerateRequest {
            task,
            k,
            graph,
            skill,
            split,
            n,
            seed,
        }
        .plan()?;
        let stdout = io::stdout();
        let mut out = io::BufWriter::new(stdout.lock());
        generation.run(|record| {
            match format {
                Format::Jsonl => serde_json::to_writer(&mut out, record)?,
                Format::Text => out.write_all(record.text.as_bytes())?,
            }
            out.write_all(b"\n")
        })?;
        out.flush().map_err(|source| skillit::Error::Io {
            path: "<stdout>".into(),
            source,
        })
    }
}
