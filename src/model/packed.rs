//! Packed runs (issue 24): R scratch transformers of one shape trained as one model whose every
//! parameter has a leading run axis `[R, ...]`. One forward/backward serves all R runs: the
//! linear layers are batched matmuls `[R, N, in] × [R, in, out]`, attention runs over
//! `[R·B, heads, S, d]`, the embeddings look up `[R·V, d]` through per-run offsets. Run r's slice
//! of every parameter only ever meets run r's examples, so the sum of the runs' losses has
//! run r's gradient in run r's slice: the runs stay independent, and AdamW, being element-wise,
//! updates each slice exactly as it would alone.
//!
//! [`PackedTransformer::stack`] and [`PackedTransformer::unstack_into`] move between the pack and R
//! ordinary [`Transformer`]s (evaluation, checkpoints and model.bpk stay per run).

use super::*;
use burn::module::{ModuleVisitor, ParamId};

/// LayerNorm's ε: `LayerNormConfig`'s default, which every scratch LayerNorm uses.
const LN_EPSILON: f64 = 1e-5;

/// R linear layers: `weight [R, in, out]`, `bias [R, out]`.
#[derive(Module, Debug)]
pub struct PackedLinear {
    weight: Param<Tensor<3>>,
    bias: Param<Tensor<2>>,
}

impl PackedLinear {
    fn stack(layers: &[&Linear]) -> Self {
        let device = layers[0].weight.val().device();
        Self {
            weight: stacked(layers.iter().map(|l| l.weight.val()).collect()),
            bias: stacked(
                layers
                    .iter()
                    .map(|l| match &l.bias {
                        Some(b) => b.val(),
                        None => Tensor::zeros([l.weight.val().dims()[1]], &device),
                    })
                    .collect(),
            ),
        }
    }

    /// Run r's layer, written into `into` (its parameter ids kept).
    fn unstack_into(&self, r: usize, into: &mut Linear) {
        into.weight = slice_param(&into.weight, &self.weight, r);
        if let Some(b) = &into.bias {
            into.bias = Some(slice_param(b, &self.bias, r));
        }
    }

    /// `[R, N, in]` → `[R, N, out]`.
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [runs, out] = self.bias.val().dims();
        x.matmul(self.weight.val()) + self.bias.val().reshape([runs, 1, out])
    }
}

/// R LayerNorms: `gamma`, `beta` `[R, d]`.
#[derive(Module, Debug)]
pub struct PackedNorm {
    gamma: Param<Tensor<2>>,
    beta: Param<Tensor<2>>,
}

impl PackedNorm {
    fn stack(norms: &[&LayerNorm]) -> Self {
        let device = norms[0].gamma.val().device();
        Self {
            gamma: stacked(norms.iter().map(|n| n.gamma.val()).collect()),
            beta: stacked(
                norms
                    .iter()
                    .map(|n| match &n.beta {
                        Some(b) => b.val(),
                        None => Tensor::zeros(n.gamma.val().dims(), &device),
                    })
                    .collect(),
            ),
        }
    }

    fn unstack_into(&self, r: usize, into: &mut LayerNorm) {
        into.gamma = slice_param(&into.gamma, &self.gamma, r);
        if let Some(b) = &into.beta {
            into.beta = Some(slice_param(b, &self.beta, r));
        }
    }

    /// `[R, N, d]` → `[R, N, d]`: the backend's normalisation, then each run's scale and shift.
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [runs, d] = self.gamma.val().dims();
        let ones = Tensor::ones([d], &x.device());
        let normed = burn::tensor::module::layer_norm(x, ones, None, LN_EPSILON);
        normed * self.gamma.val().reshape([runs, 1, d]) + self.beta.val().reshape([runs, 1, d])
    }
}

/// R depthwise causal convolutions with their pre-norms: `weight [R, K, d]`, `bias [R, d]`.
#[derive(Module, Debug)]
pub struct PackedConv {
    ln: PackedNorm,
    weight: Param<Tensor<3>>,
    bias: Param<Tensor<2>>,
}

impl PackedConv {
    fn stack(convs: &[&CausalConv]) -> Self {
        Self {
            ln: PackedNorm::stack(&convs.iter().map(|c| &c.ln).collect::<Vec<_>>()),
            weight: stacked(convs.iter().map(|c| c.weight.val()).collect()),
            bias: stacked(convs.iter().map(|c| c.bias.val()).collect()),
        }
    }

    fn unstack_into(&self, r: usize, into: &mut CausalConv) {
        self.ln.unstack_into(r, &mut into.ln);
        into.weight = slice_param(&into.weight, &self.weight, r);
        into.bias = slice_param(&into.bias, &self.bias, r);
    }

    /// `[R, B·S, d]` (rows of `seq` positions) → the same: output t reads inputs t−K+1..=t of
    /// its own row only, as [`CausalConv::forward`].
    fn forward(&self, x: Tensor<3>, batch: usize, seq: usize) -> Tensor<3> {
        let [runs, n, d] = x.dims();
        let h = self.ln.forward(x).reshape([runs, batch, seq, d]);
        let weight = self.weight.val();
        let [_, kernel, _] = weight.dims();
        let tap = |j: usize| weight.clone().narrow(1, j, 1).reshape([runs, 1, 1, d]);
        let mut out = h.clone() * tap(0);
        for j in 1..kernel.min(seq) {
            let shifted = Tensor::cat(
                vec![
                    Tensor::zeros([runs, batch, j, d], &h.device()),
                    h.clone().narrow(2, 0, seq - j),
                ],
                2,
            );
            out = out + shifted * tap(j);
        }
        (out + self.bias.val().reshape([runs, 1, 1, d])).reshape([runs, n, d])
    }
}

/// R blocks of the same shape.
#[derive(Module, Debug)]
pub struct PackedBlock {
    ln_attn: PackedNorm,
    qkv: PackedLinear,
    proj: PackedLinear,
    ln_mlp: PackedNorm,
    fc: PackedLinear,
    fc_out: PackedLinear,
    n_heads: usize,
    conv: Option<PackedConv>,
}

impl PackedBlock {
    fn stack(blocks: &[&Block]) -> Self {
        let linears = |f: fn(&Block) -> &Linear| {
            PackedLinear::stack(&blocks.iter().map(|b| f(b)).collect::<Vec<_>>())
        };
        let norms = |f: fn(&Block) -> &LayerNorm| {
            PackedNorm::stack(&blocks.iter().map(|b| f(b)).collect::<Vec<_>>())
        };
        let convs: Option<Vec<&CausalConv>> = blocks.iter().map(|b| b.conv.as_ref()).collect();
        Self {
            ln_attn: norms(|b| &b.ln_attn),
            qkv: linears(|b| &b.qkv),
            proj: linears(|b| &b.proj),
            ln_mlp: norms(|b| &b.ln_mlp),
            fc: linears(|b| &b.fc),
            fc_out: linears(|b| &b.fc_out),
            n_heads: blocks[0].n_heads,
            conv: convs.map(|c| PackedConv::stack(&c)),
        }
    }

    fn unstack_into(&self, r: usize, into: &mut Block) {
        self.ln_attn.unstack_into(r, &mut into.ln_attn);
        self.qkv.unstack_into(r, &mut into.qkv);
        self.proj.unstack_into(r, &mut into.proj);
        self.ln_mlp.unstack_into(r, &mut into.ln_mlp);
        self.fc.unstack_into(r, &mut into.fc);
        self.fc_out.unstack_into(r, &mut into.fc_out);
        if let (Some(conv), Some(into)) = (&self.conv, &mut into.conv) {
            conv.unstack_into(r, into);
        }
    }

    /// `[R, B·S, d]` → the same, as [`Block::forward`] on each run (no dropout: packs are
    /// built only from models without it); `visible` over the `R·B` rows.
    fn forward(&self, x: Tensor<3>, batch: usize, seq: usize, visible: &Visibility) -> Tensor<3> {
        let x = match &self.conv {
            Some(conv) => x.clone() + conv.forward(x, batch, seq),
            None => x,
        };
        let [runs, n, d_model] = x.dims();
        let head_dim = d_model / self.n_heads;
        let qkv = self.qkv.forward(self.ln_attn.forward(x.clone()));
        let heads = |i: usize| {
            qkv.clone()
                .narrow(2, i * d_model, d_model)
                .reshape([runs * batch, seq, self.n_heads, head_dim])
                .swap_dims(1, 2)
        };
        let context = visible.attend(heads(0), heads(1), heads(2));
        let context = context.swap_dims(1, 2).reshape([runs, n, d_model]);
        let x = x + self.proj.forward(context);
        let hidden = gelu(self.fc.forward(self.ln_mlp.forward(x.clone())));
        x + self.fc_out.forward(hidden)
    }
}

/// R scratch transformers of one shape as one model.
#[derive(Module, Debug)]
pub struct PackedTransformer {
    /// `[R, V, d]`, looked up as `[R·V, d]`.
    token: Param<Tensor<3>>,
    /// `[R, context, d]`, looked up as `[R·context, d]`.
    position: Param<Tensor<3>>,
    blocks: Vec<PackedBlock>,
    ln_final: PackedNorm,
    head: PackedLinear,
    /// Every run a prefix LM ([`ModelConfig::prefix_lm`]): each row's prompt attends in both
    /// directions when the answer's log-probabilities are asked.
    prefix_lm: bool,
}

impl PackedTransformer {
    /// Whether `models` can share a pack: all scratch transformers of one shape, without
    /// dropout, all prefix LMs or all causal.
    pub fn can_pack(models: &[&Model]) -> bool {
        let shapes: Option<Vec<_>> = models
            .iter()
            .map(|m| match m {
                Model::Scratch(t) => Some(t),
                Model::GptNeo(_) => None,
            })
            .collect();
        let Some(shapes) = shapes else { return false };
        let shape = |t: &Transformer| {
            let params: Vec<Vec<usize>> = param_shapes(t).into_iter().map(|(_, d)| d).collect();
            (
                params,
                t.blocks.iter().map(|b| b.n_heads).collect::<Vec<_>>(),
            )
        };
        let first = shape(shapes[0]);
        shapes.iter().all(|t| {
            shape(t) == first
                && t.prefix_lm == shapes[0].prefix_lm
                && t.blocks.iter().all(|b| b.dropout.prob == 0.0)
        })
    }

    /// The pack of `models` (scratch transformers of one shape: see [`Self::can_pack`]), run r
    /// being `models[r]`.
    ///
    /// # Panics
    /// When `models` is empty or cannot be packed.
    pub fn stack(models: &[&Model]) -> Self {
        assert!(
            !models.is_empty() && Self::can_pack(models),
            "packs hold scratch transformers of one shape"
        );
        let ts: Vec<&Transformer> = models
            .iter()
            .map(|m| match m {
                Model::Scratch(t) => t,
                Model::GptNeo(_) => unreachable!("checked by can_pack"),
            })
            .collect();
        let blocks = (0..ts[0].blocks.len())
            .map(|i| PackedBlock::stack(&ts.iter().map(|t| &t.blocks[i]).collect::<Vec<_>>()))
            .collect();
        Self {
            token: stacked(ts.iter().map(|t| t.token.weight.val()).collect()),
            position: stacked(ts.iter().map(|t| t.position.weight.val()).collect()),
            blocks,
            ln_final: PackedNorm::stack(&ts.iter().map(|t| &t.ln_final).collect::<Vec<_>>()),
            head: PackedLinear::stack(&ts.iter().map(|t| &t.head).collect::<Vec<_>>()),
            prefix_lm: ts[0].prefix_lm,
        }
    }

    /// The number of runs in the pack.
    pub fn runs(&self) -> usize {
        self.token.val().dims()[0]
    }

    /// Run r's current weights, written into its model `into` (which keeps its parameter ids,
    /// so its optimizer state and records stay its own).
    pub fn unstack_into(&self, r: usize, into: &mut Model) {
        let Model::Scratch(t) = into else {
            panic!("a pack unstacks into scratch transformers");
        };
        t.token.weight = slice_param(&t.token.weight, &self.token, r);
        t.position.weight = slice_param(&t.position.weight, &self.position, r);
        for (b, into) in self.blocks.iter().zip(&mut t.blocks) {
            b.unstack_into(r, into);
        }
        self.ln_final.unstack_into(r, &mut t.ln_final);
        self.head.unstack_into(r, &mut t.head);
    }

    /// Next-token logits `[R, B, S, V]` for tokens `[R, B, S]`: run r's model on its own rows,
    /// every position causal (as [`Transformer::forward`]).
    pub fn forward(&self, tokens: Tensor<3, Int>) -> Tensor<4> {
        let [runs, batch, seq] = tokens.dims();
        let logits = self.head.forward(self.hidden(tokens, None));
        let vocab = logits.dims()[2];
        logits.reshape([runs, batch, seq, vocab])
    }

    /// Final hidden states `[R, B·S, d]`; under the prefix LM, row (r, b)'s first
    /// `prompt[r·B + b]` tokens attend to each other in both directions (as
    /// [`Transformer::hidden`]).
    fn hidden(&self, tokens: Tensor<3, Int>, prompt: Option<&[usize]>) -> Tensor<3> {
        let [runs, batch, seq] = tokens.dims();
        let device = tokens.device();
        let visible = match prompt {
            Some(prompt) if self.prefix_lm => Visibility::prefix(prompt, seq, &device),
            _ => Visibility::Causal,
        };
        let [_, vocab, d] = self.token.val().dims();
        let context = self.position.val().dims()[1];
        // Run r's rows index its own slice of the flattened tables.
        let offsets = |n: usize| {
            Tensor::<1, Int>::arange(0..runs as i64, &device)
                .mul_scalar(n as i64)
                .reshape([runs, 1, 1])
        };
        let token_ids = (tokens + offsets(vocab)).reshape([runs * batch, seq]);
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &device)
            .reshape([1, 1, seq])
            .expand([runs, batch, seq]);
        let position_ids = (positions + offsets(context)).reshape([runs * batch, seq]);
        let table = |p: &Param<Tensor<3>>, n: usize| p.val().reshape([runs * n, d]);
        let x = burn::tensor::module::embedding(table(&self.token, vocab), token_ids)
            + burn::tensor::module::embedding(table(&self.position, context), position_ids);
        let mut x = x.reshape([runs, batch * seq, d]);
        for block in &self.blocks {
            x = block.forward(x, batch, seq, &visible);
        }
        self.ln_final.forward(x)
    }

    /// Log-probabilities `[R, B, V]` of each example's answer token, predicted from the tokens
    /// before it: example (r, b)'s answer is at `answer_pos[r·B + b]` of its row (rows padded on
    /// the right), as [`Model::answer_log_probs`] for one run.
    pub fn answer_log_probs(&self, tokens: Tensor<3, Int>, answer_pos: &[usize]) -> Tensor<3> {
        let [runs, batch, _] = tokens.dims();
        let longest = answer_pos.iter().copied().max().unwrap_or(1);
        let hidden = self.hidden(tokens.narrow(2, 0, longest), Some(answer_pos));
        let d = hidden.dims()[2];
        // Row (r, b)'s hidden state at its answer position − 1, then the head on those alone.
        let index: Vec<i64> = answer_pos
            .iter()
            .enumerate()
            .map(|(i, &p)| ((i % batch) * longest + p - 1) as i64)
            .collect();
        let index =
            Tensor::<3, Int>::from_data(TensorData::new(index, [runs, batch, 1]), &hidden.device())
                .expand([runs, batch, d]);
        let last = hidden.gather(1, index);
        log_softmax(self.head.forward(last), 2)
    }
}

/// Every float parameter of a module in visit order: its id and shape.
pub(crate) fn param_shapes<M: Module>(module: &M) -> Vec<(ParamId, Vec<usize>)> {
    struct Shapes(Vec<(ParamId, Vec<usize>)>);
    impl ModuleVisitor for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push((param.id, param.val().dims().to_vec()));
        }
    }
    let mut shapes = Shapes(Vec::new());
    module.visit(&mut shapes);
    shapes.0
}

/// `into`'s parameter (id kept) holding slice r of the packed `from`, a gradient leaf where
/// `into` was one.
fn slice_param<const D: usize, const P: usize>(
    into: &Param<Tensor<D>>,
    from: &Param<Tensor<P>>,
    r: usize,
) -> Param<Tensor<D>> {
    let value = from.val().narrow(0, r, 1).squeeze_dim::<D>(0).detach();
    let leaf = into.val().is_require_grad();
    Param::initialized(into.id, value.set_require_grad(leaf))
}

/// A packed parameter: `values` stacked on a new leading run axis, a fresh gradient leaf.
fn stacked<const D: usize, const P: usize>(values: Vec<Tensor<D>>) -> Param<Tensor<P>> {
    Param::from_tensor(Tensor::stack::<P>(values, 0).detach())
}
