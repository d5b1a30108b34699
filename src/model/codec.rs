//! From a task's examples to a model's token ids. The from-scratch transformer reads the task's own
//! word-level ids; a pretrained model reads the task's *text* through its own tokenizer
//! (`tokenizer.json`, the `tokenizers` crate): the answer is the one token after the prompt, or,
//! for an answer that ends its example (a JSONL row), every token after the prompt.
//! Examples keep their skill; only `tokens` and `answer_pos` change, so evaluation and loss are
//! the same for both.

use std::borrow::Cow;
use std::path::Path;

use skillit_synthetic::{Example, Vocab};
use tokenizers::Tokenizer;

use crate::{Error, Result};

/// How a model reads examples.
#[derive(Clone)]
pub enum Codec {
    /// The task's own ids, unchanged.
    Task,
    /// The task's text through a pretrained tokenizer.
    Text(Box<TextCodec>),
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Codec::Task => f.write_str("Codec::Task"),
            Codec::Text(c) => write!(f, "Codec::Text({})", c.origin),
        }
    }
}

impl Codec {
    /// The examples in the model's ids.
    pub fn encode(&self, examples: Vec<Example>) -> Result<Vec<Example>> {
        match self {
            Codec::Task => Ok(examples),
            Codec::Text(c) => examples.iter().map(|e| c.encode(e)).collect(),
        }
    }

    /// [`Codec::encode`] of borrowed examples: the task's own ids are lent back, not copied.
    pub fn encoded<'a>(&self, examples: &'a [Example]) -> Result<Cow<'a, [Example]>> {
        match self {
            Codec::Task => Ok(Cow::Borrowed(examples)),
            Codec::Text(c) => examples
                .iter()
                .map(|e| c.encode(e))
                .collect::<Result<Vec<_>>>()
                .map(Cow::Owned),
        }
    }
}

/// A pretrained tokenizer reading a task's text.
#[derive(Clone)]
pub struct TextCodec {
    tokenizer: Tokenizer,
    vocab: Vocab,
    /// The longest sequence the model takes.
    context: usize,
    /// The tokenizer file, for messages.
    origin: String,
}

impl TextCodec {
    /// Reads `path` (a Hugging Face `tokenizer.json`) for the task vocabulary `vocab` and a model of
    /// `context` positions.
    pub fn read(path: &Path, vocab: &Vocab, context: usize) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path).map_err(|e| Error::Invalid {
            origin: path.display().to_string(),
            field: "tokenizer".into(),
            message: format!("is not a Hugging Face tokenizer.json: {e}"),
        })?;
        Ok(Self {
            tokenizer,
            vocab: vocab.clone(),
            context,
            origin: path.display().to_string(),
        })
    }

    /// The ids of `text`, with no special tokens added (GPT-Neo adds none).
    pub fn ids(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| self.error(format!("cannot encode '{text}': {e}")))
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| self.error(format!("cannot decode {ids:?}: {e}")))
    }

    /// `example` in the tokenizer's ids: the whole text's ids, the answer at the position after the
    /// prompt's ids. An answer that ends the example is every token after the prompt's; any other
    /// must be one token that the prompt's ids are followed by.
    pub fn encode(&self, example: &Example) -> Result<Example> {
        let prompt = self.ids(&example.prompt(&self.vocab))?;
        let text = example.text(&self.vocab);
        let tokens = self.ids(&text)?;
        let answer = example.answer(&self.vocab);
        let answer_pos = prompt.len();
        let answer_len = if example.answer_pos + example.answer_len == example.tokens.len() {
            tokens.len().saturating_sub(answer_pos).max(1)
        } else {
            1
        };
        let fits = tokens.len() >= answer_pos + answer_len
            && tokens[..answer_pos] == prompt[..]
            && self
                .decode(&tokens[answer_pos..answer_pos + answer_len])?
                .trim()
                == answer;
        if !fits {
            return Err(self.error(format!(
                "does not give the answer '{answer}' of '{text}' as the tokens after the prompt's \
                 (the text's ids: {tokens:?}; the prompt's: {prompt:?})"
            )));
        }
        if tokens.len() > self.context {
            return Err(self.error(format!(
                "makes {} tokens of '{text}', more than the model's {} positions",
                tokens.len(),
                self.context
            )));
        }
        Ok(Example {
            skill: example.skill,
            tokens,
            answer_pos,
            answer_len,
        })
    }

    fn error(&self, message: String) -> Error {
        Error::Invalid {
            origin: self.origin.clone(),
            field: "tokenizer".into(),
            message,
        }
    }
}
