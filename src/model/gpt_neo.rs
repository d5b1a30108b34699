//! GPT-Neo, the paper's pretrained model (docs/paper.md §5: GPT-Neo-125M), as Hugging Face
//! `transformers` defines it (`modeling_gpt_neo.py`), loaded from a local snapshot folder:
//!
//! - learned token and position embeddings, then blocks of x + attn(ln_1(x)), x + mlp(ln_2(x)),
//!   a final LayerNorm, and the head tied to the token embedding (logits = h · wteᵀ);
//! - attention with q/k/v projections without bias, an output projection with bias, and **no**
//!   1/√d scaling of the scores (the reference leaves it out); layers alternate `global` (causal)
//!   and `local` attention (causal, and a query at i sees only keys j with i − j < `window_size`),
//!   in the order `attention_layers` of config.json lists;
//! - the MLP's activation is `gelu_new` (GELU's tanh approximation); LayerNorm ε from the config.
//!
//! Weights come through burn's stores: `model.safetensors` (SafeTensors) or else
//! `pytorch_model.bin` (PyTorch), with the PyTorch → burn adapter (linear weights transposed,
//! LayerNorm weight/bias → γ/β) and the `transformer.` prefix of `GPTNeoForCausalLM` removed.
//! The tokenizer is the folder's `tokenizer.json`, read by the `tokenizers` crate (codec.rs).

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
};
use burn::store::{
    ApplyResult, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use burn::tensor::activation::gelu_approximate;
use burn::tensor::module::{attention, linear};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::Deserialize;

use crate::{Error, Result};

/// The fields of a Hugging Face GPT-Neo `config.json` that shape the model (others are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct GptNeoConfig {
    /// `gpt_neo` for a GPT-Neo checkpoint (checked when present).
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    /// `null` means 4 × hidden_size.
    #[serde(default)]
    pub intermediate_size: Option<usize>,
    pub window_size: usize,
    /// One entry per layer, `global` or `local`; when absent, expanded from `attention_types`.
    #[serde(default)]
    pub attention_layers: Vec<String>,
    /// `[[["global", "local"], 6]]`: the pattern and how many times it repeats.
    #[serde(default)]
    pub attention_types: Vec<(Vec<String>, usize)>,
    #[serde(default = "default_activation")]
    pub activation_function: String,
    #[serde(default = "default_epsilon")]
    pub layer_norm_epsilon: f64,
    #[serde(default)]
    pub embed_dropout: f64,
    #[serde(default)]
    pub resid_dropout: f64,
    #[serde(default)]
    pub attention_dropout: f64,
    #[serde(default = "default_tied")]
    pub tie_word_embeddings: bool,
    /// The standard deviation of a fresh model's weights.
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
}

fn default_initializer_range() -> f64 {
    0.02
}

fn default_activation() -> String {
    "gelu_new".into()
}

fn default_epsilon() -> f64 {
    1e-5
}

fn default_tied() -> bool {
    true
}

impl GptNeoConfig {
    /// Reads and checks `dir/config.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        if !path.is_file() {
            let what = if dir.is_dir() {
                "has no config.json (a Hugging Face snapshot folder holds config.json, \
                 model.safetensors or pytorch_model.bin, and tokenizer.json)"
            } else {
                "is not a folder; fetch the weights first, e.g. `huggingface-cli download \
                 EleutherAI/gpt-neo-125m --local-dir DIR` (skillit never downloads)"
            };
            return Err(Error::Invalid {
                origin: dir.display().to_string(),
                field: "weights".into(),
                message: what.into(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let mut config: Self = serde_json::from_str(&text).map_err(|e| Error::Invalid {
            origin: path.display().to_string(),
            field: "config".into(),
            message: format!("is not a GPT-Neo config.json: {e}"),
        })?;
        if config.attention_layers.is_empty() {
            config.attention_layers = config
                .attention_types
                .iter()
                .flat_map(|(pattern, times)| std::iter::repeat_n(pattern.clone(), *times).flatten())
                .collect();
        }
        config.check(&path)?;
        Ok(config)
    }

    /// What skillit can load: a `gpt_neo` config with sizes ≥ 1, heads dividing the width, one
    /// global or local attention layer per layer, `gelu_new`, a tied head and no attention
    /// dropout. Each failure names `path` and the field.
    fn check(&self, path: &Path) -> Result<()> {
        let config = self;
        let bad = |field: &str, message: String| Error::Invalid {
            origin: path.display().to_string(),
            field: field.into(),
            message,
        };
        if let Some(kind) = config.model_type.as_deref().filter(|k| *k != "gpt_neo") {
            return Err(bad(
                "model_type",
                format!("is '{kind}'; skillit loads 'gpt_neo' checkpoints"),
            ));
        }
        for (field, v) in [
            ("vocab_size", config.vocab_size),
            ("max_position_embeddings", config.max_position_embeddings),
            ("hidden_size", config.hidden_size),
            ("num_layers", config.num_layers),
            ("num_heads", config.num_heads),
            ("window_size", config.window_size),
        ] {
            if v == 0 {
                return Err(bad(field, "must be at least 1".into()));
            }
        }
        if !config.hidden_size.is_multiple_of(config.num_heads) {
            return Err(bad(
                "num_heads",
                format!(
                    "{} heads do not divide hidden_size = {}",
                    config.num_heads, config.hidden_size
                ),
            ));
        }
        if config.attention_layers.len() != config.num_layers {
            return Err(bad(
                "attention_layers",
                format!(
                    "names {} layers but num_layers = {}",
                    config.attention_layers.len(),
                    config.num_layers
                ),
            ));
        }
        if let Some(other) = config
            .attention_layers
            .iter()
            .find(|a| *a != "global" && *a != "local")
        {
            return Err(bad(
                "attention_layers",
                format!("'{other}' is neither 'global' nor 'local'"),
            ));
        }
        if config.activation_function != "gelu_new" {
            return Err(bad(
                "activation_function",
                format!(
                    "is '{}'; skillit implements GPT-Neo's 'gelu_new'",
                    config.activation_function
                ),
            ));
        }
        if !config.tie_word_embeddings {
            return Err(bad(
                "tie_word_embeddings",
                "is false; skillit implements GPT-Neo's tied head".into(),
            ));
        }
        if config.attention_dropout != 0.0 {
            return Err(bad(
                "attention_dropout",
                format!(
                    "is {}; skillit's attention has no dropout (GPT-Neo checkpoints use 0)",
                    config.attention_dropout
                ),
            ));
        }
        for (field, p) in [
            ("embed_dropout", config.embed_dropout),
            ("resid_dropout", config.resid_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(bad(field, format!("{p} is not in [0, 1)")));
            }
        }
        Ok(())
    }

    /// The model with every parameter zero, shaped for this config (the weights then load into it).
    fn zeros(&self, device: &Device) -> GptNeo {
        let d = self.hidden_size;
        let inner = self.intermediate_size.unwrap_or(4 * d);
        let linear = |d_in: usize, d_out: usize, bias: bool| {
            LinearConfig::new(d_in, d_out)
                .with_bias(bias)
                .with_initializer(Initializer::Zeros)
                .init(device)
        };
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(self.layer_norm_epsilon)
                .init(device)
        };
        let embedding = |n: usize| {
            EmbeddingConfig::new(n, d)
                .with_initializer(Initializer::Zeros)
                .init(device)
        };
        let h = self
            .attention_layers
            .iter()
            .map(|kind| NeoBlock {
                ln_1: norm(),
                attn: NeoAttention {
                    attention: NeoSelfAttention {
                        q_proj: linear(d, d, false),
                        k_proj: linear(d, d, false),
                        v_proj: linear(d, d, false),
                        out_proj: linear(d, d, true),
                        n_heads: self.num_heads,
                        window: if kind == "local" { self.window_size } else { 0 },
                    },
                },
                ln_2: norm(),
                mlp: NeoMlp {
                    c_fc: linear(d, inner, true),
                    c_proj: linear(inner, d, true),
                },
                dropout: DropoutConfig::new(self.resid_dropout).init(),
            })
            .collect();
        GptNeo {
            wte: embedding(self.vocab_size),
            wpe: embedding(self.max_position_embeddings),
            h,
            ln_f: norm(),
            dropout: DropoutConfig::new(self.embed_dropout).init(),
        }
    }
}

/// The weights file of a snapshot folder: SafeTensors first, else PyTorch's.
pub fn weights_file(dir: &Path) -> Result<PathBuf> {
    for name in ["model.safetensors", "pytorch_model.bin"] {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    let message = if dir.join("model.safetensors.index.json").is_file() {
        "holds a sharded checkpoint; skillit reads one model.safetensors or pytorch_model.bin"
    } else {
        "has neither model.safetensors nor pytorch_model.bin"
    };
    Err(Error::Invalid {
        origin: dir.display().to_string(),
        field: "weights".into(),
        message: message.into(),
    })
}

/// What identifies a pretrained model's weights in a run's manifest.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WeightsRecord {
    /// The weights file read.
    pub file: PathBuf,
    pub bytes: u64,
    /// SHA-256 of the weights file, hex.
    pub sha256: String,
    /// SHA-256 of config.json and of tokenizer.json, hex.
    pub config_sha256: String,
    pub tokenizer_sha256: String,
}

/// The fingerprint of the snapshot folder `dir`: its weights file, config.json and tokenizer.json.
pub fn fingerprint(dir: &Path) -> Result<WeightsRecord> {
    let hash = super::sha256_file;
    let file = weights_file(dir)?;
    let (sha256, bytes) = hash(&file)?;
    Ok(WeightsRecord {
        file,
        bytes,
        sha256,
        config_sha256: hash(&dir.join("config.json"))?.0,
        tokenizer_sha256: hash(&dir.join("tokenizer.json"))?.0,
    })
}

/// The model of the snapshot folder `dir` on `device`.
pub fn load(dir: &Path, device: &Device) -> Result<(GptNeo, GptNeoConfig)> {
    let config = GptNeoConfig::read(dir)?;
    let path = weights_file(dir)?;
    let mut model = config.zeros(device);
    let fail = |message: String| Error::Invalid {
        origin: path.display().to_string(),
        field: "weights".into(),
        message,
    };
    // `GPTNeoForCausalLM` saves `transformer.*` (and a tied `lm_head.weight`); `GPTNeoModel`
    // saves the same names without the prefix.
    let result = if path.extension().is_some_and(|e| e == "safetensors") {
        load_into(
            &mut model,
            SafetensorsStore::from_file(&path)
                .with_from_adapter(PyTorchToBurnAdapter)
                .with_key_remapping(r"^transformer\.", "")
                .allow_partial(true),
        )
    } else {
        // The PyTorch store applies the PyTorch → burn adapter itself.
        load_into(
            &mut model,
            PytorchStore::from_file(&path)
                .with_key_remapping(r"^transformer\.", "")
                .allow_partial(true),
        )
    }
    .map_err(|e| fail(format!("cannot be read: {e}")))?;
    if let Some(e) = result.errors.first() {
        return Err(fail(format!("does not fit config.json: {e}")));
    }
    if let Some((name, _)) = result.missing.first() {
        return Err(fail(format!(
            "lacks the tensor '{name}' ({} missing in all)",
            result.missing.len()
        )));
    }
    Ok((model, config))
}

/// Applies the tensors of `store` to `model`; the store's error as text.
fn load_into<S: ModuleStore>(
    model: &mut GptNeo,
    mut store: S,
) -> std::result::Result<ApplyResult, String> {
    model.load_from(&mut store).map_err(|e| e.to_string())
}

/// The architecture of the snapshot folder `dir` (its config.json alone) with fresh weights from
/// `rng`: every matrix and embedding N(0, initializer_range²), biases 0, LayerNorm γ = 1, β = 0, as
/// `transformers` initialises GPT-Neo (drawn on the host, so a seed gives the same model on every
/// backend).
pub fn random(
    dir: &Path,
    rng: &mut rand_chacha::ChaCha8Rng,
    device: &Device,
) -> Result<(GptNeo, GptNeoConfig)> {
    let config = GptNeoConfig::read(dir)?;
    let model = config.zeros(device).map(&mut NormalInit {
        rng,
        std: config.initializer_range,
    });
    Ok((model, config))
}

/// Draws every rank-2 parameter (matrices, embeddings) from N(0, std²).
struct NormalInit<'a> {
    rng: &'a mut rand_chacha::ChaCha8Rng,
    std: f64,
}

impl ModuleMapper for NormalInit<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D == 2 {
            super::normal_param(param, self.std, self.rng)
        } else {
            param
        }
    }
}

/// GPT-Neo's causal self-attention, global (`window` = 0) or local.
#[derive(Module, Debug)]
pub struct NeoSelfAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    n_heads: usize,
    /// Keys further back than this are masked (0 = none: global attention).
    window: usize,
}

impl NeoSelfAttention {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, seq, d] = x.dims();
        let head_dim = d / self.n_heads;
        let heads = |t: Tensor<3>| {
            t.reshape([batch, seq, self.n_heads, head_dim])
                .swap_dims(1, 2)
        };
        let q = heads(self.q_proj.forward(x.clone()));
        let k = heads(self.k_proj.forward(x.clone()));
        let v = heads(self.v_proj.forward(x));
        let mask = (self.window > 0 && seq > self.window).then(|| {
            // True where the key j is `window` or more positions before the query i.
            let far: Vec<bool> = (0..seq)
                .flat_map(|i| (0..seq).map(move |j| i >= j + self.window))
                .collect();
            Tensor::<4, Bool>::from_data(TensorData::new(far, [1, 1, seq, seq]), &q.device())
                .expand([batch, self.n_heads, seq, seq])
        });
        let context = attention(
            q,
            k,
            v,
            mask,
            None,
            AttentionModuleOptions {
                // GPT-Neo does not scale the scores by 1/√d.
                scale: Some(1.0),
                softcap: None,
                is_causal: true,
            },
        );
        self.out_proj
            .forward(context.swap_dims(1, 2).reshape([batch, seq, d]))
    }
}

/// The `attn` of a block (the checkpoint's names nest the attention one level deeper).
#[derive(Module, Debug)]
pub struct NeoAttention {
    attention: NeoSelfAttention,
}

/// The block's MLP: c_fc, gelu_new, c_proj.
#[derive(Module, Debug)]
pub struct NeoMlp {
    c_fc: Linear,
    c_proj: Linear,
}

/// One block: x + attn(ln_1(x)), then x + mlp(ln_2(x)).
#[derive(Module, Debug)]
pub struct NeoBlock {
    ln_1: LayerNorm,
    attn: NeoAttention,
    ln_2: LayerNorm,
    mlp: NeoMlp,
    dropout: Dropout,
}

impl NeoBlock {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let a = self.attn.attention.forward(self.ln_1.forward(x.clone()));
        let x = x + self.dropout.forward(a);
        let m = self.mlp.c_proj.forward(gelu_approximate(
            self.mlp.c_fc.forward(self.ln_2.forward(x.clone())),
        ));
        x + self.dropout.forward(m)
    }
}

/// GPT-Neo with its tied head.
#[derive(Module, Debug)]
pub struct GptNeo {
    wte: Embedding,
    wpe: Embedding,
    h: Vec<NeoBlock>,
    ln_f: LayerNorm,
    dropout: Dropout,
}

impl GptNeo {
    /// The final hidden states `[batch, seq, d]` (after ln_f).
    pub fn hidden(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [batch, seq] = tokens.dims();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &tokens.device())
            .reshape([1, seq])
            .expand([batch, seq]);
        let mut x = self
            .dropout
            .forward(self.wte.forward(tokens) + self.wpe.forward(positions));
        for block in &self.h {
            x = block.forward(x);
        }
        self.ln_f.forward(x)
    }

    /// Logits `[batch, seq, vocab]` of hidden states: the tied head, h · wteᵀ.
    ///
    /// Through burn's `linear`, as every other layer: its backward sums the weight's gradient over
    /// the batch in one product, where a batched `matmul` with `wteᵀ` broadcast over the batch
    /// would first make a `[batch, width, vocab]` gradient (4.9 GB for GPT-Neo-125M at batch 32,
    /// more than one wgpu buffer may hold).
    pub fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        linear(hidden, self.wte.weight.val().transpose(), None)
    }

    /// The longest sequence the position embedding covers.
    pub fn context(&self) -> usize {
        self.wpe.weight.dims()[0]
    }
}
