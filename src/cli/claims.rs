//! `skillit claims`: test the paper's claims on results folders and write the headline table.

use super::*;

#[derive(clap::Args)]
pub struct ClaimsArgs {
    /// A claims file: `[[claim]]` tables (src/claims.rs; e.g. results/claims_scratch.toml).
    pub file: PathBuf,
    /// Write the table to this file (atomically) instead of printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl ClaimsArgs {
    pub fn run(self) -> skillit::Result<()> {
        let results = skillit::claims::evaluate_file(&self.file)?;
        let table = skillit::claims::render(&results, &self.file);
        match &self.out {
            Some(out) => {
                skillit::results::write_atomic(out, table.as_bytes())?;
                eprintln!("wrote {} ({} claims)", out.display(), results.len());
                Ok(())
            }
            None => emit(&table),
        }
    }
}
