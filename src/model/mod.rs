//! The models: [`Transformer`], the small causal transformer trained from scratch
//! (docs/paper.md §11), and [`GptNeo`] (gpt_neo.rs), the paper's pretrained model loaded from
//! Hugging Face weights; [`Model`] is either, behind one interface, and [`Codec`] (codec.rs) turns
//! a task's examples into its ids.
//!
//! The transformer: token and learned position embeddings, pre-norm blocks (an optional short
//! causal convolution, causal multi-head attention, GELU MLP), a final LayerNorm and a linear head.
//! Plain burn 0.22 modules: no backend generic; the device decides where it runs.
//!
//! The convolution (`conv_kernel` = K > 0) is a depthwise causal convolution over the last K
//! positions, a residual sub-layer before attention: `x + conv(LN(x))`, with
//! `conv(h)_t = b + Σ_{j<K} w_j ⊙ h_{t−j}` (zeros before the first position). It hands each
//! position its predecessors' features, the previous-token half of the induction circuit that
//! attention is slow to form by itself: with it, key→value recall is learned in 200–300 steps
//! instead of a 3,000-step plateau (docs/paper.md §12; cf. the Canon layers of Allen-Zhu's Physics
//! of Language Models 4.1, the short convolutions of Zoology/Based, RWKV's token shift).
//!
//! Initialisation follows GPT-2 / nanoGPT: every weight ~ N(0, 0.02), the two residual projections
//! of each block ~ N(0, 0.02 / √(2·n_layers)), biases 0, LayerNorm γ = 1, β = 0. The weights are
//! drawn on the host from a ChaCha stream and uploaded, so a seed gives the same initial model on
//! every backend (flex, wgpu, ...) and whatever else runs in the process. The convolutions'
//! weights and biases ~ U(−1/√K, 1/√K) (PyTorch's `Conv1d` default for a depthwise kernel of K
//! taps) are drawn after every other weight, so a model with the convolution has the same other
//! weights as the one without it from the same seed.
//!
//! The prefix LM (`prefix_lm = true`): the prompt (every token before the first answer token)
//! attends in both directions, the answer tokens causally, as in the prefix LMs of UniLM and T5;
//! the convolution stays causal. A causal model must read a chain's clauses in the order they
//! come: a clause can look up only the clauses before it, and a chase whose clauses come the
//! other way round needs a second circuit (docs/defaults.md, "Pointer chains before LEGO": the
//! model learned one order's chase at the other's expense). In the prefix LM every clause sees
//! every other. Only with the answer loss: under a whole-sequence loss each prompt token would
//! see the token it predicts.

use burn::module::{Module, Param};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::tensor::activation::{gelu, log_softmax};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use std::path::PathBuf;

use skillit_synthetic::Vocab;

use crate::{Error, Result};

pub mod base;
pub mod codec;
pub mod gpt_neo;
pub mod packed;

pub use codec::{Codec, TextCodec};
pub use gpt_neo::{GptNeo, GptNeoConfig};

/// Which model a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// The small transformer, initialised from the run's seed (the shape fields below).
    #[default]
    Scratch,
    /// A pretrained GPT-Neo from a Hugging Face snapshot folder (`weights`); its shape comes
    /// from the folder's config.json and the shape fields here are not used.
    GptNeo,
}

impl ModelKind {
    fn is_scratch(&self) -> bool {
        *self == ModelKind::Scratch
    }
}

/// The model of a run: the shape of the transformer (the vocabulary size comes from the task), or
/// a pretrained checkpoint (`kind = "gpt-neo"`, `weights = "DIR"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `scratch` (default) or `gpt-neo`.
    #[serde(skip_serializing_if = "ModelKind::is_scratch")]
    pub kind: ModelKind,
    /// The snapshot folder of a pretrained model (config.json, model.safetensors or
    /// pytorch_model.bin, tokenizer.json).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
    /// gpt-neo only: the architecture of the folder's config.json with fresh weights drawn from
    /// the run's seed (N(0, initializer_range²) for matrices and embeddings, as `transformers`
    /// initialises them) instead of the pretrained ones: the paper's model trained from scratch,
    /// or a speed measurement without the weights file.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub random_init: bool,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Attention heads per block; must divide `d_model`.
    pub n_heads: usize,
    /// Hidden width of each block's MLP.
    pub d_ff: usize,
    /// Dropout after attention and MLP (0 = none; the synthetic tasks have no repeats to overfit).
    pub dropout: f64,
    /// The longest sequence the position embedding covers.
    pub context: usize,
    /// Taps of the depthwise causal convolution before each block's attention (0 = none; the
    /// module docs say why it helps).
    #[serde(skip_serializing_if = "is_zero")]
    pub conv_kernel: usize,
    /// With a run's `init` weights of fewer blocks than `n_layers`: the blocks they hold. The
    /// model grows on top of them: blocks `init_layers..n_layers` are new and start as the
    /// identity (their attention output, MLP output and convolution zeroed), so at step 0 the grown
    /// model computes what the init model did, with room for more circuits (0: the init weights
    /// have every block).
    #[serde(skip_serializing_if = "is_zero")]
    pub init_layers: usize,
    /// With `init_layers`: keep the init weights' blocks and the embeddings fixed (no gradient),
    /// so that only the new blocks, the final norm and the head train and the circuits the init
    /// model holds cannot be overwritten.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub freeze_init: bool,
    /// With a run's `init` weights of a smaller vocabulary whose words are the first of this
    /// task's (LEGO's 36 within the shared vocabulary's 55): the init weights' vocabulary size. The
    /// embedding and head rows of the old words keep their weights, the new words' rows start as
    /// the seed draws them, so the model answers what it did on the old words and can learn the
    /// new (0: the same vocabulary).
    #[serde(skip_serializing_if = "is_zero")]
    pub init_vocab: usize,
    /// The prompt attends in both directions, the answer causally (the module docs say why);
    /// scratch models under the answer loss only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub prefix_lm: bool,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            kind: ModelKind::Scratch,
            weights: None,
            random_init: false,
            d_model: 128,
            n_layers: 2,
            n_heads: 4,
            d_ff: 512,
            dropout: 0.0,
            context: 64,
            conv_kernel: 0,
            init_layers: 0,
            freeze_init: false,
            init_vocab: 0,
            prefix_lm: false,
        }
    }
}

impl ModelConfig {
    /// Checks the shape; `origin` names the config file or the preset in the message.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |field: &str, message: String| {
            Err(Error::Invalid {
                origin: origin.to_string(),
                field: format!("model.{field}"),
                message,
            })
        };
        for (field, v) in [
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("context", self.context),
        ] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return bad(
                "n_heads",
                format!(
                    "{} heads do not divide d_model = {}",
                    self.n_heads, self.d_model
                ),
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", format!("{} is not in [0, 1)", self.dropout));
        }
        if self.freeze_init && self.init_layers == 0 {
            return bad(
                "freeze_init",
                "freezes the blocks a model grows from: set init_layers too".into(),
            );
        }
        if self.init_layers > 0
            && (self.kind != ModelKind::Scratch || self.init_layers >= self.n_layers)
        {
            return bad(
                "init_layers",
                format!(
                    "{} must be fewer than n_layers = {} (a scratch model grown from init \
                     weights of fewer blocks)",
                    self.init_layers, self.n_layers
                ),
            );
        }
        if self.init_vocab > 0 && self.kind != ModelKind::Scratch {
            return bad(
                "init_vocab",
                "only a scratch model grows its vocabulary from init weights".into(),
            );
        }
        match (self.kind, &self.weights) {
            (ModelKind::GptNeo, _) if self.prefix_lm => bad(
                "prefix_lm",
                "only the scratch model has a prefix-LM mask; a gpt-neo model keeps its own \
                 causal attention"
                    .into(),
            ),
            (ModelKind::GptNeo, _) if self.conv_kernel > 0 => bad(
                "conv_kernel",
                "only the scratch model has the convolution; a gpt-neo model keeps its own \
                 architecture"
                    .into(),
            ),
            // The folder's files are checked up front, so that a wrong folder stops a run or a
            // sweep before anything is written.
            (ModelKind::GptNeo, Some(dir)) => {
                GptNeoConfig::read(dir)?;
                if !self.random_init {
                    gpt_neo::weights_file(dir)?;
                }
                let tokenizer = dir.join("tokenizer.json");
                if !tokenizer.is_file() {
                    return Err(Error::Invalid {
                        origin: dir.display().to_string(),
                        field: "weights".into(),
                        message: "has no tokenizer.json".into(),
                    });
                }
                Ok(())
            }
            (ModelKind::GptNeo, None) => bad(
                "weights",
                "a gpt-neo model needs the folder of its weights (config.json, \
                 model.safetensors or pytorch_model.bin, tokenizer.json)"
                    .into(),
            ),
            (ModelKind::Scratch, _) if self.random_init => bad(
                "random_init",
                "only a pretrained model (kind = \"gpt-neo\") has weights to replace; the \
                 scratch model is always drawn from the seed"
                    .into(),
            ),
            (ModelKind::Scratch, Some(_)) => bad(
                "weights",
                "only a pretrained model (kind = \"gpt-neo\") reads weights; use `init` to \
                 start the scratch model from a saved run"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// The run's model on `device` and how it reads the task `vocab`'s examples: the scratch
    /// transformer drawn from `rng`, or the pretrained model loaded from its folder.
    pub fn build(
        &self,
        vocab: &Vocab,
        rng: &mut rand_chacha::ChaCha8Rng,
        device: &Device,
    ) -> Result<(Model, Codec)> {
        match (self.kind, &self.weights) {
            (ModelKind::GptNeo, Some(dir)) => {
                let (model, _) = if self.random_init {
                    gpt_neo::random(dir, rng, device)?
                } else {
                    gpt_neo::load(dir, device)?
                };
                let codec = TextCodec::read(&dir.join("tokenizer.json"), vocab, model.context())?;
                Ok((Model::GptNeo(model), Codec::Text(Box::new(codec))))
            }
            _ => Ok((self.init(vocab.len(), rng, device), Codec::Task)),
        }
    }

    /// A freshly initialised scratch model for a vocabulary of `vocab_size` tokens, its weights
    /// drawn from `rng`.
    pub fn init(
        &self,
        vocab_size: usize,
        rng: &mut rand_chacha::ChaCha8Rng,
        device: &Device,
    ) -> Model {
        Model::Scratch(self.init_transformer(vocab_size, rng, device))
    }

    fn init_transformer(
        &self,
        vocab_size: usize,
        rng: &mut rand_chacha::ChaCha8Rng,
        device: &Device,
    ) -> Transformer {
        let std = 0.02;
        let residual_std = std / (2.0 * self.n_layers as f64).sqrt();
        let linear = |d_in: usize, d_out: usize, std: f64, rng: &mut rand_chacha::ChaCha8Rng| {
            let mut l = LinearConfig::new(d_in, d_out).init(device);
            l.weight = normal_param(l.weight, std, rng);
            l.bias = l.bias.map(|b| b.map(|t| t.zeros_like().require_grad()));
            l
        };
        let embedding = |n: usize, rng: &mut rand_chacha::ChaCha8Rng| {
            let mut e = EmbeddingConfig::new(n, self.d_model).init(device);
            e.weight = normal_param(e.weight, std, rng);
            e
        };
        let token = embedding(vocab_size, rng);
        let position = embedding(self.context, rng);
        let mut blocks = Vec::with_capacity(self.n_layers);
        for _ in 0..self.n_layers {
            blocks.push(Block {
                ln_attn: LayerNormConfig::new(self.d_model).init(device),
                qkv: linear(self.d_model, 3 * self.d_model, std, rng),
                proj: linear(self.d_model, self.d_model, residual_std, rng),
                ln_mlp: LayerNormConfig::new(self.d_model).init(device),
                fc: linear(self.d_model, self.d_ff, std, rng),
                fc_out: linear(self.d_ff, self.d_model, residual_std, rng),
                dropout: DropoutConfig::new(self.dropout).init(),
                n_heads: self.n_heads,
                conv: None,
            });
        }
        let head = linear(self.d_model, vocab_size, std, rng);
        if self.conv_kernel > 0 {
            for block in &mut blocks {
                block.conv = Some(CausalConv::init(
                    self.d_model,
                    self.conv_kernel,
                    rng,
                    device,
                ));
            }
        }
        Transformer {
            token,
            position,
            blocks,
            ln_final: LayerNormConfig::new(self.d_model).init(device),
            head,
            prefix_lm: self.prefix_lm,
        }
    }
}

/// The SHA-256 (hex) and length in bytes of the file at `path`: the fingerprint of weights.
pub fn sha256_file(path: &std::path::Path) -> Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut hasher).map_err(io)?;
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, bytes))
}

/// The parameter with its values replaced by zeros (same shape, device, id, gradient leaf where it
/// was one).
pub(crate) fn zeroed_param<const D: usize>(param: Param<Tensor<D>>) -> Param<Tensor<D>> {
    param.map(|t| {
        let leaf = t.is_require_grad();
        t.zeros_like().set_require_grad(leaf)
    })
}

/// `fresh` (same id and gradient setting) with `old`'s values where the two overlap: along the one
/// axis where `fresh` is longer (the vocabulary's), the first entries are `old`'s, the rest stay
/// `fresh`'s.
fn grown_rows<const D: usize>(old: Param<Tensor<D>>, fresh: Param<Tensor<D>>) -> Param<Tensor<D>> {
    let old = old.val().detach();
    fresh.map(|t| {
        let leaf = t.is_require_grad();
        let (short, long) = (old.dims(), t.dims());
        let axis = (0..D)
            .find(|&a| short[a] != long[a])
            .expect("the vocabulary axis is longer");
        let device = t.device();
        let rest = t
            .detach()
            .narrow(axis, short[axis], long[axis] - short[axis]);
        // Through the data, so the result is a leaf that can be tracked.
        Tensor::from_data(Tensor::cat(vec![old, rest], axis).into_data(), &device)
            .set_require_grad(leaf)
    })
}

/// The parameter with its values replaced by N(0, std²) draws from `rng` (same shape, device, id).
pub(crate) fn normal_param<const D: usize>(
    param: Param<Tensor<D>>,
    std: f64,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Param<Tensor<D>> {
    param.map(|t| {
        let shape = t.dims();
        let values: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|_| {
                let z: f64 = StandardNormal.sample(rng);
                (std * z) as f32
            })
            .collect();
        // `map` keeps the parameter's id and training state; the new value must be a gradient
        // leaf again where the old one was (on an autodiff device).
        let leaf = t.is_require_grad();
        Tensor::from_data(TensorData::new(values, shape), &t.device()).set_require_grad(leaf)
    })
}

/// A depthwise causal convolution with its pre-norm: `conv(LN(x))`, the residual added by the
/// block.
#[derive(Module, Debug)]
pub struct CausalConv {
    ln: LayerNorm,
    /// `[K, d_model]`: row j weighs the position j steps back.
    weight: Param<Tensor<2>>,
    bias: Param<Tensor<1>>,
}

impl CausalConv {
    fn init(
        d_model: usize,
        kernel: usize,
        rng: &mut rand_chacha::ChaCha8Rng,
        device: &Device,
    ) -> Self {
        let bound = 1.0 / (kernel as f64).sqrt();
        let mut uniform = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| (bound * (2.0 * rng.random::<f64>() - 1.0)) as f32)
                .collect()
        };
        let weight = uniform(kernel * d_model);
        let bias = uniform(d_model);
        Self {
            ln: LayerNormConfig::new(d_model).init(device),
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(weight, [kernel, d_model]),
                device,
            )),
            bias: Param::from_tensor(Tensor::from_data(TensorData::new(bias, [d_model]), device)),
        }
    }

    /// `[batch, seq, d]` → `[batch, seq, d]`; output t reads inputs t−K+1..=t only.
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, seq, d] = x.dims();
        let h = self.ln.forward(x);
        let weight = self.weight.val();
        let [kernel, _] = weight.dims();
        let tap = |j: usize| weight.clone().narrow(0, j, 1).reshape([1, 1, d]);
        let mut out = h.clone() * tap(0);
        for j in 1..kernel.min(seq) {
            // h shifted j positions later, zeros in front.
            let shifted = Tensor::cat(
                vec![
                    Tensor::zeros([batch, j, d], &h.device()),
                    h.clone().narrow(1, 0, seq - j),
                ],
                1,
            );
            out = out + shifted * tap(j);
        }
        out + self.bias.val().reshape([1, 1, d])
    }
}

/// One pre-norm block: x + conv(ln(x)) when it has the convolution, x + attn(ln(x)), then
/// x + mlp(ln(x)).
#[derive(Module, Debug)]
pub struct Block {
    ln_attn: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ln_mlp: LayerNorm,
    fc: Linear,
    fc_out: Linear,
    dropout: Dropout,
    n_heads: usize,
    conv: Option<CausalConv>,
}

impl Block {
    fn forward(&self, x: Tensor<3>, visible: &Visibility) -> Tensor<3> {
        let x = match &self.conv {
            Some(conv) => x.clone() + conv.forward(x),
            None => x,
        };
        let [batch, seq, d_model] = x.dims();
        let head_dim = d_model / self.n_heads;
        let qkv = self.qkv.forward(self.ln_attn.forward(x.clone()));
        // [batch, seq, 3·d] → three [batch, heads, seq, head_dim]
        let heads = |i: usize| {
            qkv.clone()
                .narrow(2, i * d_model, d_model)
                .reshape([batch, seq, self.n_heads, head_dim])
                .swap_dims(1, 2)
        };
        let context = visible.attend(heads(0), heads(1), heads(2));
        let context = context.swap_dims(1, 2).reshape([batch, seq, d_model]);
        let x = x + self.dropout.forward(self.proj.forward(context));
        let hidden = gelu(self.fc.forward(self.ln_mlp.forward(x.clone())));
        x.clone() + self.dropout.forward(self.fc_out.forward(hidden))
    }
}

/// Which positions each position's attention reads.
#[derive(Clone)]
enum Visibility {
    /// Itself and the positions before it.
    Causal,
    /// Every position (a prompt alone, under the prefix LM).
    All,
    /// Causal, and within each row's prompt every prompt position: `[batch, 1, seq, seq]`,
    /// `true` where masked.
    Prefix(Box<Tensor<4, burn::tensor::Bool>>),
}

impl Visibility {
    /// The visibility of a `[batch, seq]` input whose row b has a prompt of `prompt[b]` tokens:
    /// no mask when every prompt covers the whole input. Position i of row b reads position j
    /// when j ≤ i, or when both lie in the prompt; so it is masked exactly when j > i and j is
    /// past the prompt.
    fn prefix(prompt: &[usize], seq: usize, device: &Device) -> Self {
        if prompt.iter().all(|&p| p >= seq) {
            return Visibility::All;
        }
        let batch = prompt.len();
        let mut masked = Vec::with_capacity(batch * seq * seq);
        for &p in prompt {
            for i in 0..seq {
                masked.extend((0..seq).map(|j| j > i && j >= p));
            }
        }
        let mask = Tensor::<4, burn::tensor::Bool>::from_data(
            TensorData::new(masked, [batch, 1, seq, seq]),
            device,
        );
        Visibility::Prefix(Box::new(mask))
    }

    /// Scaled dot-product attention `[batch, heads, seq, head_dim]` under this visibility.
    fn attend(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
        let [batch, heads, seq, _] = q.dims();
        let mask = match self {
            Visibility::Prefix(mask) => Some((**mask).clone().expand([batch, heads, seq, seq])),
            _ => None,
        };
        attention(
            q,
            k,
            v,
            mask,
            None,
            AttentionModuleOptions {
                scale: None,
                softcap: None,
                is_causal: matches!(self, Visibility::Causal),
            },
        )
    }
}

/// The causal transformer.
#[derive(Module, Debug)]
pub struct Transformer {
    token: Embedding,
    position: Embedding,
    blocks: Vec<Block>,
    ln_final: LayerNorm,
    head: Linear,
    /// The prompt attends in both directions ([`ModelConfig::prefix_lm`]).
    prefix_lm: bool,
}

impl Transformer {
    /// Next-token logits `[batch, seq, vocab]` for tokens `[batch, seq]`, every position causal
    /// (the whole-sequence view, which a prefix LM is never trained under).
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.head.forward(self.hidden(tokens, None))
    }

    /// The final hidden states `[batch, seq, d_model]` (after the final LayerNorm); under the
    /// prefix LM, row b's first `prompt[b]` tokens attend to each other in both directions.
    fn hidden(&self, tokens: Tensor<2, Int>, prompt: Option<&[usize]>) -> Tensor<3> {
        let [batch, seq] = tokens.dims();
        let device = tokens.device();
        let visible = match prompt {
            Some(prompt) if self.prefix_lm => Visibility::prefix(prompt, seq, &device),
            _ => Visibility::Causal,
        };
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &device)
            .reshape([1, seq])
            .expand([batch, seq]);
        let mut x = self.token.forward(tokens) + self.position.forward(positions);
        for block in &self.blocks {
            x = block.forward(x, &visible);
        }
        self.ln_final.forward(x)
    }

    /// Log-probabilities `[batch, vocab]` of the token at `answer_pos`, predicted from the tokens
    /// before it (the prompt, the only input).
    pub fn answer_log_probs(&self, tokens: Tensor<2, Int>, answer_pos: usize) -> Tensor<2> {
        let [batch, _] = tokens.dims();
        let prompt = tokens.narrow(1, 0, answer_pos);
        let logits = self
            .head
            .forward(self.hidden(prompt, Some(&vec![answer_pos; batch])));
        let [_, seq, vocab] = logits.dims();
        log_softmax(logits.narrow(1, seq - 1, 1).reshape([batch, vocab]), 1)
    }
}

/// The model a run trains: either kind, one interface.
#[derive(Module, Debug)]
pub enum Model {
    Scratch(Transformer),
    GptNeo(GptNeo),
}

impl Model {
    /// This fresh model grown from `base`, a scratch model of the same shape but fewer blocks
    /// (see [`ModelConfig::init_layers`]): `base`'s embeddings, blocks, final norm and head, then
    /// this model's blocks beyond `base`'s as identities (their residual outputs zeroed); with
    /// `freeze`, `base`'s blocks and the embeddings without gradients.
    pub fn grown_from(self, base: Model, freeze: bool) -> Model {
        let (Model::Scratch(fresh), Model::Scratch(base)) = (self, base) else {
            panic!("only scratch models grow (checked by ModelConfig::validate)");
        };
        let kept = base.blocks.len();
        let (mut blocks, token, position) = match freeze {
            true => (
                base.blocks.into_iter().map(|b| b.no_grad()).collect(),
                base.token.no_grad(),
                base.position.no_grad(),
            ),
            false => (base.blocks, base.token, base.position),
        };
        for mut b in fresh.blocks.into_iter().skip(kept) {
            b.proj.weight = zeroed_param(b.proj.weight);
            b.proj.bias = b.proj.bias.map(zeroed_param);
            b.fc_out.weight = zeroed_param(b.fc_out.weight);
            b.fc_out.bias = b.fc_out.bias.map(zeroed_param);
            if let Some(conv) = &mut b.conv {
                conv.weight = zeroed_param(conv.weight.clone());
                conv.bias = zeroed_param(conv.bias.clone());
            }
            blocks.push(b);
        }
        Model::Scratch(Transformer {
            token,
            position,
            blocks,
            ln_final: base.ln_final,
            head: base.head,
            prefix_lm: fresh.prefix_lm,
        })
    }

    /// `base` (a scratch model of a smaller vocabulary whose words are the first of this model's;
    /// see [`ModelConfig::init_vocab`]) with this fresh model's vocabulary: the token embedding
    /// and the head keep `base`'s rows for the old words and take this model's fresh rows for the
    /// new ones; everything else is `base`'s. Only the embedding and head change shape, so this
    /// model may have more blocks than `base` (grow it with [`Model::grown_from`] afterwards).
    pub fn vocab_grown_from(self, base: Model) -> Model {
        let (Model::Scratch(fresh), Model::Scratch(mut base)) = (self, base) else {
            panic!("only scratch models grow (checked by ModelConfig::validate)");
        };
        base.token.weight = grown_rows(base.token.weight, fresh.token.weight);
        base.head.weight = grown_rows(base.head.weight, fresh.head.weight);
        base.head.bias = match (base.head.bias, fresh.head.bias) {
            (Some(old), Some(new)) => Some(grown_rows(old, new)),
            (old, _) => old,
        };
        Model::Scratch(base)
    }

    /// Next-token logits `[batch, seq, vocab]` for tokens `[batch, seq]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        match self {
            Model::Scratch(m) => m.forward(tokens),
            Model::GptNeo(m) => m.head(m.hidden(tokens)),
        }
    }

    /// Log-probabilities `[batch, vocab]` of each example's answer token, predicted from the
    /// tokens before it: example b's answer is at `answer_pos[b]` of its row of `tokens` (rows
    /// padded on the right). Only the prompt enters the computation that matters: attention is
    /// causal after it (and within it too, but for the prefix LM).
    pub fn answer_log_probs(&self, tokens: Tensor<2, Int>, answer_pos: &[usize]) -> Tensor<2> {
        let first = answer_pos[0];
        if answer_pos.iter().all(|&p| p == first) {
            if let Model::Scratch(m) = self {
                return m.answer_log_probs(tokens, first);
            }
        }
        let [batch, _] = tokens.dims();
        let longest = answer_pos.iter().copied().max().unwrap_or(1);
        let hidden = self.hidden(tokens.narrow(1, 0, longest), answer_pos);
        let [_, _, d] = hidden.dims();
        // Row b's hidden state at answer_pos[b] − 1, then the head on those rows alone.
        let index: Vec<i64> = answer_pos.iter().map(|&p| p as i64 - 1).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [batch]), &hidden.device())
            .reshape([batch, 1, 1])
            .expand([batch, 1, d]);
        let last = hidden.gather(1, index);
        let logits = self.head(last);
        let [_, _, vocab] = logits.dims();
        log_softmax(logits.reshape([batch, vocab]), 1)
    }

    /// Log-probabilities `[n, vocab]` of the next token after each `(row, position)` of `at`:
    /// the prediction made from `tokens[row][..=position]` (several answer tokens of one example,
    /// teacher-forced).
    pub fn next_token_log_probs(&self, tokens: Tensor<2, Int>, at: &[(usize, usize)]) -> Tensor<2> {
        let [batch, _] = tokens.dims();
        let longest = at.iter().map(|&(_, p)| p + 1).max().unwrap_or(1);
        // Each row's prompt ends at its first prediction: its first answer token follows it.
        let mut prompt = vec![usize::MAX; batch];
        for &(b, p) in at {
            prompt[b] = prompt[b].min(p + 1);
        }
        let hidden = self.hidden(tokens.narrow(1, 0, longest), &prompt);
        let [_, seq, d] = hidden.dims();
        let index: Vec<i64> = at.iter().map(|&(b, p)| (b * seq + p) as i64).collect();
        let index =
            Tensor::<1, Int>::from_data(TensorData::new(index, [at.len()]), &hidden.device());
        let picked = hidden.reshape([batch * seq, d]).select(0, index);
        let logits = self.head(picked.reshape([1, at.len(), d]));
        let [_, _, vocab] = logits.dims();
        log_softmax(logits.reshape([at.len(), vocab]), 1)
    }

    /// The final hidden states; `prompt[b]`: row b's prompt length (see [`Transformer::hidden`]).
    fn hidden(&self, tokens: Tensor<2, Int>, prompt: &[usize]) -> Tensor<3> {
        match self {
            Model::Scratch(m) => m.hidden(tokens, Some(prompt)),
            Model::GptNeo(m) => m.hidden(tokens),
        }
    }

    fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        match self {
            Model::Scratch(m) => m.head.forward(hidden),
            Model::GptNeo(m) => m.head(hidden),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const VOCAB: usize = 20;
    const SEQ: usize = 12;

    fn config(prefix_lm: bool) -> ModelConfig {
        ModelConfig {
            d_model: 32,
            n_layers: 2,
            n_heads: 2,
            d_ff: 64,
            context: 16,
            conv_kernel: 4,
            prefix_lm,
            ..ModelConfig::default()
        }
    }

    fn model(prefix_lm: bool) -> Transformer {
        let config = config(prefix_lm);
        let device = crate::device::select(crate::device::DeviceKind::Flex)
            .unwrap()
            .device
            .autodiff();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        config.init_transformer(VOCAB, &mut rng, &device)
    }

    /// The final hidden states `[rows][position][d]` of `rows` under prompts of `prompt` tokens.
    fn states(m: &Transformer, rows: &[Vec<i64>], prompt: &[usize]) -> Vec<Vec<Vec<f32>>> {
        let seq = rows[0].len();
        let flat: Vec<i64> = rows.concat();
        let device = m.head.weight.val().device();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(flat, [rows.len(), seq]), &device);
        let h = m.hidden(tokens, Some(prompt));
        let d = h.dims()[2];
        let v = h.into_data().try_to_vec::<f32>().unwrap();
        v.chunks(seq * d)
            .map(|row| row.chunks(d).map(<[f32]>::to_vec).collect())
            .collect()
    }

    fn row(shift: i64) -> Vec<i64> {
        (0..SEQ as i64)
            .map(|i| (i * 7 + 3 + shift) % VOCAB as i64)
            .collect()
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn a_grown_vocabulary_keeps_the_old_rows_and_takes_the_fresh_ones() {
        // A 20-word model grown to 26 words: the embedding's and the head's first 20 rows (the
        // head's columns and bias entries) are the old model's, the other 6 the fresh model's,
        // and on old words the grown model's hidden states are the old model's.
        let old = model(false);
        let device = old.head.weight.val().device();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let fresh = config(false).init_transformer(VOCAB + 6, &mut rng, &device);
        let values = |p: &Param<Tensor<2>>| p.val().into_data().try_to_vec::<f32>().unwrap();
        let (old_token, fresh_token) = (values(&old.token.weight), values(&fresh.token.weight));
        let (old_head, fresh_head) = (values(&old.head.weight), values(&fresh.head.weight));
        let old_bias = old.head.bias.as_ref().unwrap().val().into_data();
        let fresh_bias = fresh.head.bias.as_ref().unwrap().val().into_data();
        let before = states(&old, &[row(0)], &[SEQ]);
        let Model::Scratch(grown) = Model::Scratch(fresh).vocab_grown_from(Model::Scratch(old))
        else {
            unreachable!()
        };
        assert_eq!(grown.token.weight.val().dims(), [VOCAB + 6, 32]);
        let token = values(&grown.token.weight);
        assert_eq!(token[..VOCAB * 32], old_token[..]);
        assert_eq!(token[VOCAB * 32..], fresh_token[VOCAB * 32..]);
        // The head's weight is [d_model, vocab]: row r holds word w at r * vocab + w.
        let head = values(&grown.head.weight);
        let n = VOCAB + 6;
        for r in 0..32 {
            assert_eq!(
                head[r * n..r * n + VOCAB],
                old_head[r * VOCAB..(r + 1) * VOCAB]
            );
            assert_eq!(
                head[r * n + VOCAB..(r + 1) * n],
                fresh_head[r * n + VOCAB..(r + 1) * n]
            );
        }
        let bias = grown.head.bias.as_ref().unwrap().val().into_data();
        let (bias, old_bias, fresh_bias) = (
            bias.try_to_vec::<f32>().unwrap(),
            old_bias.try_to_vec::<f32>().unwrap(),
            fresh_bias.try_to_vec::<f32>().unwrap(),
        );
        assert_eq!(bias[..VOCAB], old_bias[..]);
        assert_eq!(bias[VOCAB..], fresh_bias[VOCAB..]);
        assert_eq!(states(&grown, &[row(0)], &[SEQ]), before);
        assert!(grown.token.weight.val().is_require_grad());
    }

    #[test]
    fn the_prefix_lm_reads_its_whole_prompt_and_the_answer_causally() {
        // Prompt of 8 tokens, then 4 answer tokens. Changing prompt token 5 changes positions
        // before it under the prefix LM (not under the causal model); changing answer token 9
        // changes no position before it in either.
        let prompt = [8];
        let base = row(0);
        let mut in_prompt = base.clone();
        in_prompt[5] = (in_prompt[5] + 1) % VOCAB as i64;
        let mut in_answer = base.clone();
        in_answer[9] = (in_answer[9] + 1) % VOCAB as i64;
        for prefix_lm in [true, false] {
            let m = model(prefix_lm);
            let before = &states(&m, std::slice::from_ref(&base), &prompt)[0];
            let after_prompt = &states(&m, &[in_prompt.clone()], &prompt)[0];
            let after_answer = &states(&m, &[in_answer.clone()], &prompt)[0];
            for pos in 0..5 {
                assert_eq!(
                    close(&before[pos], &after_prompt[pos]),
                    !prefix_lm,
                    "prefix_lm {prefix_lm}: position {pos} and prompt token 5"
                );
            }
            for pos in 0..9 {
                assert!(
                    close(&before[pos], &after_answer[pos]),
                    "prefix_lm {prefix_lm}: position {pos} saw answer token 9"
                );
            }
            for pos in 9..SEQ {
                assert!(!close(&before[pos], &after_answer[pos]));
            }
        }
    }

    #[test]
    fn the_prefix_mask_computes_what_each_prompt_alone_does() {
        // Two rows in one batch with prompts of 8 and 12 tokens (the mask path) against each
        // prompt on its own, where every position sees every other (no mask at all): the prompt
        // positions agree; so a row's padding and answer never reach its prompt.
        let m = model(true);
        let rows = [row(0), row(3)];
        let batch = states(&m, &rows, &[8, 12]);
        let alone0 = &states(&m, &[rows[0][..8].to_vec()], &[8])[0];
        let alone1 = &states(&m, &[rows[1].clone()], &[12])[0];
        for pos in 0..8 {
            assert!(close(&batch[0][pos], &alone0[pos]), "row 0, position {pos}");
        }
        for pos in 0..SEQ {
            assert!(close(&batch[1][pos], &alone1[pos]), "row 1, position {pos}");
        }
        // The answer's log-probabilities by either path: the batch of mixed answer positions
        // (mask) and each row alone (its prompt, no mask).
        let model = Model::Scratch(m);
        let device = model.devices()[0].clone();
        let tokens = |rows: &[Vec<i64>]| {
            Tensor::<2, Int>::from_data(TensorData::new(rows.concat(), [rows.len(), SEQ]), &device)
        };
        let mixed = model.answer_log_probs(tokens(&rows), &[8, 11]);
        for (r, p) in [(0, 8), (1, 11)] {
            let alone = model.answer_log_probs(tokens(&[rows[r].clone()]), &[p]);
            let got = mixed
                .clone()
                .narrow(0, r, 1)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let want = alone.into_data().try_to_vec::<f32>().unwrap();
            assert!(close(&got, &want), "row {r}");
        }
    }
}
