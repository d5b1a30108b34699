//! A task read from a file: skill-labelled rows of JSON Lines, the format `skillit generate` writes.
//!
//! ```text
//! {"skill": 1, "prompt": "Input: b = val 1 . Output: b = val", "answer": "1", "split": "train"}
//! {"skill": "code", "prompt": "def f ( x ) :", "answer": "return x"}
//! ```
//!
//! One JSON object a line: `skill` (a 1-based integer, or a string name: names are numbered 1, 2, …
//! in order of first appearance), `prompt` and `answer` (non-empty text, split on whitespace into
//! words), and optionally `split` (`train` or `val`); other fields are ignored. Blank lines are
//! skipped. The vocabulary is built from the file: `<pad>`, `<unk>`, then every word in order of
//! first appearance, so the same file always gives the same ids. The answer may be several words.
//!
//! The rows are read once per process (a cache keyed by the file's path, size and modification
//! time) into one flat array of token ids plus 24 bytes a row, with the file's SHA-256 computed on
//! the way, so a changed file can be recognised. [`crate::ValidationSet`] takes the `val` rows, or
//! without any `split` a seeded holdout per skill; [`crate::TrainStream`] walks each skill's
//! training rows in a seeded shuffled order, a new shuffle each epoch.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Error, Example, Task, TaskRng, Vocab};

/// One row: where its tokens are in the flat array, and what it is.
#[derive(Debug, Clone, Copy)]
struct Row {
    start: u64,
    line: u32,
    prompt: u32,
    answer: u32,
    /// 0-based.
    skill: u16,
    /// 0 none, 1 train, 2 val.
    split: u8,
}

/// The rows of a JSONL file, tokenized.
#[derive(Debug)]
pub struct JsonlRows {
    path: String,
    sha256: String,
    vocab: Vocab,
    /// The skills' names, by id − 1 (`s1`, `s2`, … for integer skills).
    skill_names: Vec<String>,
    named: bool,
    tokens: Vec<u32>,
    rows: Vec<Row>,
    /// Row indices by skill (id − 1), in file order.
    per_skill: Vec<Vec<u32>>,
    longest: usize,
    longest_line: u64,
    any_split: bool,
}

impl JsonlRows {
    /// The file as it was named.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The SHA-256 of the file's bytes (hex).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The vocabulary built from the file.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The number of skills.
    pub fn num_skills(&self) -> usize {
        self.skill_names.len()
    }

    /// Whether the skills were given by name (strings) rather than by number.
    pub fn named(&self) -> bool {
        self.named
    }

    /// The skills' names in id order.
    pub fn skill_names(&self) -> &[String] {
        &self.skill_names
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Never true: a file without rows is an error.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The longest row in tokens, and its line.
    pub fn longest(&self) -> (usize, u64) {
        (self.longest, self.longest_line)
    }

    /// Row `index` as an example.
    pub fn example(&self, index: u32) -> Example {
        let r = self.rows[index as usize];
        let start = r.start as usize;
        let len = (r.prompt + r.answer) as usize;
        Example {
            skill: usize::from(r.skill) + 1,
            tokens: self.tokens[start..start + len].to_vec(),
            answer_pos: r.prompt as usize,
            answer_len: r.answer as usize,
        }
    }

    /// The file line (1-based) of row `index`.
    pub fn line(&self, index: u32) -> u64 {
        u64::from(self.rows[index as usize].line)
    }

    /// The row indices of `skill` (1-based), in file order.
    pub fn skill_rows(&self, skill: usize) -> &[u32] {
        &self.per_skill[skill - 1]
    }

    /// The validation and training rows of every skill: the `val` rows and the rest when the file
    /// has a `split` field, else `n` rows per skill drawn with `rng_of(skill)` and the rest.
    #[allow(clippy::type_complexity)]
    pub fn partition(
        &self,
        n: usize,
        mut rng_of: impl FnMut(usize) -> TaskRng,
    ) -> Result<(Vec<Vec<u32>>, Vec<Vec<u32>>), Error> {
        let mut val = Vec::with_capacity(self.num_skills());
        let mut train = Vec::with_capacity(self.num_skills());
        for skill in 1..=self.num_skills() {
            let rows = self.skill_rows(skill);
            let name = &self.skill_names[skill - 1];
            let (v, t): (Vec<u32>, Vec<u32>) = if self.any_split {
                rows.iter()
                    .partition(|&&i| self.rows[i as usize].split == 2)
            } else {
                if rows.len() <= n {
                    return Err(self.error(
                        0,
                        format!(
                            "skill {skill} ({name}) has {} rows: holding out {n} for validation \
                             leaves none to train on (give the file `split` fields, or lower \
                             val_per_skill)",
                            rows.len()
                        ),
                    ));
                }
                let mut order = rows.to_vec();
                let mut rng = rng_of(skill);
                order.partial_shuffle(&mut rng, n);
                let (v, t) = order.split_at(n);
                let mut v = v.to_vec();
                let mut t = t.to_vec();
                v.sort_unstable();
                t.sort_unstable();
                (v, t)
            };
            if v.is_empty() {
                return Err(self.error(
                    0,
                    format!("skill {skill} ({name}) has no `split: \"val\"` row to evaluate it on"),
                ));
            }
            if t.is_empty() {
                return Err(self.error(
                    0,
                    format!(
                        "skill {skill} ({name}) has only `split: \"val\"` rows: none to train on"
                    ),
                ));
            }
            val.push(v);
            train.push(t);
        }
        Ok((val, train))
    }

    fn error(&self, line: u64, message: String) -> Error {
        Error::Jsonl {
            path: self.path.clone(),
            line,
            message,
        }
    }
}

/// A JSONL file as a task.
#[derive(Debug, Clone)]
pub struct Jsonl {
    rows: Arc<JsonlRows>,
}

type CacheKey = (PathBuf, u64, Option<std::time::SystemTime>);

fn cache() -> &'static Mutex<HashMap<CacheKey, Arc<JsonlRows>>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Arc<JsonlRows>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

impl Jsonl {
    /// Reads `path` (once per process while its size and modification time stay the same).
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with_progress(path, &mut |_, _| {})
    }

    /// [`Jsonl::open`], calling `progress(bytes read, file size)` while it reads.
    pub fn open_with_progress(
        path: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, Error> {
        let io = |e: std::io::Error| Error::Jsonl {
            path: path.display().to_string(),
            line: 0,
            message: format!("cannot read: {e}"),
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
        if let Some(rows) = cache().lock().expect("cache lock").get(&key) {
            return Ok(Self { rows: rows.clone() });
        }
        let file = std::fs::File::open(path).map_err(io)?;
        let rows = Arc::new(read(path, file, meta.len(), progress)?);
        cache()
            .lock()
            .expect("cache lock")
            .insert(key, rows.clone());
        Ok(Self { rows })
    }

    /// The file's rows.
    pub fn data(&self) -> &JsonlRows {
        &self.rows
    }
}

impl Task for Jsonl {
    fn name(&self) -> &'static str {
        "jsonl"
    }

    fn num_skills(&self) -> usize {
        self.rows.num_skills()
    }

    fn skill_name(&self, id: usize) -> String {
        self.rows.skill_names[id - 1].clone()
    }

    fn vocab(&self) -> &Vocab {
        &self.rows.vocab
    }

    fn seq_len(&self) -> usize {
        self.rows.longest
    }

    fn default_val_seed(&self) -> u64 {
        42
    }

    /// A uniform row of `skill` (a benchmark's batch; training and validation walk the rows
    /// through [`Task::rows`]).
    fn example(&self, skill: usize, rng: &mut TaskRng) -> Example {
        let rows = self.rows.skill_rows(skill);
        self.rows.example(rows[rng.random_range(0..rows.len())])
    }

    fn capacity(&self, skill: usize) -> u128 {
        self.rows.skill_rows(skill).len() as u128
    }

    fn describe(&self) -> String {
        format!(
            "jsonl {} sha256={} k={}",
            self.rows.path,
            &self.rows.sha256[..12],
            self.rows.num_skills()
        )
    }

    fn rows(&self) -> Option<&JsonlRows> {
        Some(&self.rows)
    }
}

/// What is being built while the file is read.
struct Reader {
    path: String,
    words: HashMap<String, u32>,
    word_list: Vec<String>,
    skill_ids: HashMap<String, u16>,
    skill_names: Vec<String>,
    named: Option<bool>,
    tokens: Vec<u32>,
    rows: Vec<Row>,
    longest: usize,
    longest_line: u64,
    any_split: bool,
}

fn read(
    path: &Path,
    file: impl Read,
    size: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<JsonlRows, Error> {
    let mut r = Reader {
        path: path.display().to_string(),
        words: HashMap::new(),
        // Ids 0 and 1 are `<pad>` and `<unk>` (Vocab::built); the file's words follow.
        word_list: Vec::new(),
        skill_ids: HashMap::new(),
        skill_names: Vec::new(),
        named: None,
        tokens: Vec::new(),
        rows: Vec::new(),
        longest: 0,
        longest_line: 0,
        any_split: false,
    };
    let mut hasher = Sha256::new();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    let (mut read_bytes, mut number, mut reported) = (0u64, 0u64, 0u64);
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| r.error(number, format!("cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&line);
        read_bytes += n as u64;
        number += 1;
        if read_bytes - reported >= 1 << 22 {
            progress(read_bytes, size);
            reported = read_bytes;
        }
        let text =
            std::str::from_utf8(&line).map_err(|_| r.error(number, "is not UTF-8 text".into()))?;
        if text.trim().is_empty() {
            continue;
        }
        r.row(number, text)?;
    }
    progress(read_bytes, size);
    r.finish(format!("{:x}", hasher.finalize()))
}

impl Reader {
    fn error(&self, line: u64, message: String) -> Error {
        Error::Jsonl {
            path: self.path.clone(),
            line,
            message,
        }
    }

    fn row(&mut self, number: u64, text: &str) -> Result<(), Error> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| self.error(number, format!("is not JSON: {e}")))?;
        let Value::Object(fields) = value else {
            return Err(self.error(number, "is not a JSON object".into()));
        };
        let skill = self.skill(number, fields.get("skill"))?;
        let prompt = self.text(number, &fields, "prompt")?;
        let answer = self.text(number, &fields, "answer")?;
        let split = match fields.get("split") {
            None | Some(Value::Null) => 0,
            Some(Value::String(s)) if s == "train" => 1,
            Some(Value::String(s)) if s == "val" => 2,
            Some(other) => {
                return Err(self.error(
                    number,
                    format!("split = {other} is not allowed: \"train\" or \"val\""),
                ))
            }
        };
        self.any_split |= split != 0;
        let start = self.tokens.len() as u64;
        let prompt_len = self.words_of(prompt);
        let answer_len = self.words_of(answer);
        let len = (prompt_len + answer_len) as usize;
        if len > self.longest {
            self.longest = len;
            self.longest_line = number;
        }
        let line = u32::try_from(number).map_err(|_| {
            self.error(
                number,
                "files of more than 2^32 lines are not supported".into(),
            )
        })?;
        self.rows.push(Row {
            start,
            line,
            prompt: prompt_len,
            answer: answer_len,
            skill,
            split,
        });
        Ok(())
    }

    /// A non-empty string field.
    fn text<'v>(
        &self,
        number: u64,
        fields: &'v serde_json::Map<String, Value>,
        field: &str,
    ) -> Result<&'v str, Error> {
        match fields.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
            Some(Value::String(_)) => Err(self.error(number, format!("`{field}` is empty"))),
            None | Some(Value::Null) => Err(self.error(number, format!("has no `{field}` field"))),
            Some(other) => Err(self.error(number, format!("`{field}` = {other} is not a string"))),
        }
    }

    /// The 0-based skill of a row: an integer ≥ 1, or a name numbered in order of first appearance;
    /// one kind per file.
    fn skill(&mut self, number: u64, value: Option<&Value>) -> Result<u16, Error> {
        let (named, id) = match value {
            None | Some(Value::Null) => {
                return Err(self.error(number, "has no `skill` field".into()))
            }
            Some(Value::Number(n)) => match n.as_u64() {
                Some(s) if (1..=u64::from(u16::MAX)).contains(&s) => (false, s as usize - 1),
                _ => {
                    return Err(self.error(
                        number,
                        format!("skill = {n} is not allowed: an integer from 1 (or a name)"),
                    ))
                }
            },
            Some(Value::String(s)) if !s.trim().is_empty() => {
                let next = self.skill_ids.len();
                if next == usize::from(u16::MAX) && !self.skill_ids.contains_key(s) {
                    return Err(self.error(number, "more than 65,535 skills".into()));
                }
                let id = *self.skill_ids.entry(s.clone()).or_insert(next as u16);
                if usize::from(id) == self.skill_names.len() {
                    self.skill_names.push(s.clone());
                }
                (true, usize::from(id))
            }
            Some(Value::String(_)) => return Err(self.error(number, "`skill` is empty".into())),
            Some(other) => {
                return Err(self.error(
                    number,
                    format!("skill = {other} is not allowed: an integer from 1, or a name"),
                ))
            }
        };
        match self.named {
            Some(n) if n != named => {
                return Err(self.error(
                    number,
                    "mixes integer and named skills: use one kind in a file".into(),
                ))
            }
            _ => self.named = Some(named),
        }
        if !named && id >= self.skill_names.len() {
            self.skill_names.resize(id + 1, String::new());
        }
        Ok(id as u16)
    }

    /// Appends the ids of `text`'s words, adding new words to the vocabulary; returns the count.
    fn words_of(&mut self, text: &str) -> u32 {
        let mut count = 0;
        for w in text.split_whitespace() {
            let id = match self.words.get(w) {
                Some(&id) => id,
                None => {
                    let id = (self.word_list.len() + 2) as u32;
                    self.words.insert(w.to_string(), id);
                    self.word_list.push(w.to_string());
                    id
                }
            };
            self.tokens.push(id);
            count += 1;
        }
        count
    }

    fn finish(mut self, sha256: String) -> Result<JsonlRows, Error> {
        self.tokens.shrink_to_fit();
        self.rows.shrink_to_fit();
        if self.rows.is_empty() {
            return Err(self.error(0, "has no rows".into()));
        }
        let k = self.skill_names.len();
        let mut per_skill = vec![Vec::new(); k];
        for (i, r) in self.rows.iter().enumerate() {
            per_skill[usize::from(r.skill)].push(i as u32);
        }
        let named = self.named == Some(true);
        let mut skill_names = self.skill_names;
        for (s, rows) in per_skill.iter().enumerate() {
            if rows.is_empty() {
                return Err(Error::Jsonl {
                    path: self.path,
                    line: 0,
                    message: format!(
                        "skill {} has no rows (integer skills must be 1..={k} with rows for each)",
                        s + 1
                    ),
                });
            }
            if !named {
                skill_names[s] = format!("s{}", s + 1);
            }
        }
        Ok(JsonlRows {
            vocab: Vocab::built("jsonl", self.word_list),
            path: self.path,
            sha256,
            skill_names,
            named,
            tokens: self.tokens,
            rows: self.rows,
            per_skill,
            longest: self.longest,
            longest_line: self.longest_line,
            any_split: self.any_split,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TrainStream, ValidationSet};

    fn rows(text: &str) -> Result<JsonlRows, Error> {
        read(
            Path::new("t.jsonl"),
            text.as_bytes(),
            text.len() as u64,
            &mut |_, _| {},
        )
    }

    fn message(text: &str) -> String {
        rows(text).unwrap_err().to_string()
    }

    #[test]
    fn rows_tokenize_into_one_vocabulary_in_order_of_first_appearance() {
        let data = rows(concat!(
            r#"{"skill": "b", "prompt": "x y", "answer": "z w", "extra": 3}"#,
            "\n\n",
            r#"{"skill": "a", "prompt": "y x", "answer": "x"}"#,
            "\n",
        ))
        .unwrap();
        assert_eq!(data.vocab().words(), ["<pad>", "<unk>", "x", "y", "z", "w"]);
        assert_eq!(data.skill_names(), ["b", "a"]);
        let e = data.example(0);
        assert_eq!(
            (e.skill, e.tokens.clone(), e.answer_pos, e.answer_len),
            (1, vec![2, 3, 4, 5], 2, 2)
        );
        assert_eq!(e.answer(data.vocab()), "z w");
        assert_eq!(data.example(1).skill, 2);
        // The blank second line still counts: the third line holds row 1.
        assert_eq!(data.line(1), 3);
        assert_eq!(data.longest(), (4, 1));
        assert_eq!(data.sha256().len(), 64);
    }

    #[test]
    fn bad_rows_name_their_line() {
        let ok = r#"{"skill": 1, "prompt": "a", "answer": "b"}"#;
        let m = message(&format!("{ok}\nnot json\n"));
        assert!(m.starts_with("t.jsonl:2: is not JSON"), "{m}");
        assert!(
            message(r#"{"skill": 1, "answer": "b"}"#).contains("t.jsonl:1: has no `prompt` field")
        );
        assert!(
            message(r#"{"skill": 1, "prompt": " ", "answer": "b"}"#).contains("`prompt` is empty")
        );
        assert!(message(r#"{"skill": 1, "prompt": "a", "answer": 7}"#)
            .contains("`answer` = 7 is not a string"));
        assert!(message(r#"{"skill": 0, "prompt": "a", "answer": "b"}"#)
            .contains("skill = 0 is not allowed"));
        assert!(message(r#"{"skill": 1.5, "prompt": "a", "answer": "b"}"#)
            .contains("skill = 1.5 is not allowed"));
        assert!(message(r#"{"skill": true, "prompt": "a", "answer": "b"}"#)
            .contains("skill = true is not allowed"));
        assert!(message(r#"{"prompt": "a", "answer": "b"}"#).contains("has no `skill` field"));
        assert!(
            message(r#"{"skill": 1, "prompt": "a", "answer": "b", "split": "test"}"#)
                .contains(r#"split = "test" is not allowed: "train" or "val""#)
        );
        assert!(message(&format!(
            "{ok}\n{}",
            r#"{"skill": "x", "prompt": "a", "answer": "b"}"#
        ))
        .contains("t.jsonl:2: mixes integer and named skills"));
        assert!(message(&format!(
            "{ok}\n{}",
            r#"{"skill": 3, "prompt": "a", "answer": "b"}"#
        ))
        .contains("t.jsonl: skill 2 has no rows"));
        assert!(message("\n \n").contains("t.jsonl: has no rows"));
        assert!(message("[1, 2]").contains("t.jsonl:1: is not a JSON object"));
    }

    fn numbered(per_skill: usize, split: impl Fn(usize) -> &'static str) -> String {
        let mut text = String::new();
        for i in 0..2 * per_skill {
            let skill = 1 + i % 2;
            text += &format!(
                "{{\"skill\": {skill}, \"prompt\": \"q {i}\", \"answer\": \"a{}\"{}}}\n",
                i % 3,
                split(i)
            );
        }
        text
    }

    fn task(text: &str) -> Jsonl {
        Jsonl {
            rows: Arc::new(rows(text).unwrap()),
        }
    }

    #[test]
    fn a_holdout_per_skill_and_epochs_that_never_repeat_a_row() {
        let t = task(&numbered(10, |_| ""));
        let validation = ValidationSet::new(&t, 3, 42).unwrap();
        assert_eq!(validation.skill(1).len(), 3);
        assert!(validation.skill(2).iter().all(|e| e.skill == 2));
        let held: Vec<&Example> = validation.iter().collect();
        let mut stream = TrainStream::new(&t, 0, &validation);
        // Skill 1 has 10 rows, 3 held out: each epoch of 7 is a permutation of the same 7 rows.
        let first = stream.take(1, 7).unwrap();
        let second = stream.take(1, 7).unwrap();
        let sorted = |v: &[Example]| {
            let mut t: Vec<Vec<u32>> = v.iter().map(|e| e.tokens.clone()).collect();
            t.sort();
            t
        };
        assert_eq!(sorted(&first), sorted(&second));
        assert_eq!(
            sorted(&first).windows(2).filter(|w| w[0] == w[1]).count(),
            0
        );
        assert_ne!(first, second, "each epoch is a new shuffle");
        assert!(first.iter().all(|e| !held.contains(&e)));
        assert_eq!(stream.epochs(1), 2);
        assert_eq!(stream.epochs(2), 0);
        // The same seed gives the same stream; the holdout does not depend on the run seed.
        let mut again = TrainStream::new(&t, 0, &validation);
        assert_eq!(again.take(1, 7).unwrap(), first);
        assert_eq!(
            ValidationSet::new(&t, 3, 42).unwrap().skill(1),
            validation.skill(1)
        );
    }

    #[test]
    fn split_fields_choose_the_validation_rows() {
        let t = task(&numbered(4, |i| {
            if i < 4 {
                r#", "split": "val""#
            } else {
                r#", "split": "train""#
            }
        }));
        let validation = ValidationSet::new(&t, 100, 42).unwrap();
        // Rows 0..4 are val: rows 0 and 2 of skill 1, rows 1 and 3 of skill 2.
        assert_eq!(validation.skill(1).len(), 2);
        assert_eq!(validation.skill(2).len(), 2);
        let only_val = task(&numbered(2, |i| {
            if i == 0 || i == 2 {
                r#", "split": "val""#
            } else {
                ""
            }
        }));
        let m = ValidationSet::new(&only_val, 100, 42)
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("skill 1 (s1) has only `split: \"val\"` rows"),
            "{m}"
        );
        let small = task(&numbered(3, |_| ""));
        let m = ValidationSet::new(&small, 3, 42).unwrap_err().to_string();
        assert!(m.contains("skill 1 (s1) has 3 rows: holding out 3"), "{m}");
    }
}
