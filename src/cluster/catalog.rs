//! GPU and model catalogs: the hardware and model shapes the latency models and KV-cache
//! sizing read.
//!
//! The built-in entries come from `data/gpus.csv` and `data/models.csv` (compiled into the
//! binary with `include_str!`; sources and licences in `data/README.md`). A scenario can add
//! entries of its own through [`GpuSpec`] / [`ModelSpec`], which have exactly the columns of the
//! CSV files and reject unknown keys. Specs are validated and converted into [`Gpu`] / [`Model`],
//! whose fields are SI units (bytes, bytes/s, FLOP/s) with the unit last in the name.
//!
//! Invariants: every [`Gpu`] has a positive finite memory size and bandwidth and at least one
//! 16-bit peak, and its on-demand price per GPU-hour, when known, is a finite non-negative dollar
//! amount with its source; every [`Model`] has positive shapes, and its derived numbers (parameters, KV
//! bytes per token, linear FLOPs per token) are computed from the shape; a value given in the
//! spec must agree with the shape within 1 % or the spec is rejected (that is how the built-in
//! CSV's derived columns are checked). Lookups are case-insensitive on the name, any alias or
//! the Hugging Face id (`_` and `-` are interchangeable), and names are unique in a [`Catalog`].

use serde::Deserialize;
use std::sync::OnceLock;

const GPUS_CSV: &str = include_str!("../../data/gpus.csv");
const MODELS_CSV: &str = include_str!("../../data/models.csv");

/// GPU memory reserved per GPU, outside weights and KV cache, when sizing the KV cache: 2 GiB.
///
/// vLLM sizes the cache after a profiling forward pass and subtracts its peak activation memory
/// plus memory allocated outside PyTorch. For 7–70B models at the default token budgets
/// (`max_num_batched_tokens` 2048–8192) the activation peak is 0.5–1.5 GiB (MLP intermediates
/// `tokens × 2 × ffn × 2 B` plus fp32 logits of the sampled rows), and CUDA graphs, NCCL
/// buffers and the cuBLAS workspace take about 0.5 GiB more; 2 GiB covers both without
/// depending on engine knobs this layer does not see. It is a field of [`KvCacheConfig`], so a
/// pool can override it.
pub const DEFAULT_RESERVE_BYTES_PER_GPU: u64 = 2 << 30;

/// Bandwidth assumed between GPUs without a scale-up link (PCIe Gen4 x16: 64 GB/s both ways).
pub const PCIE_FALLBACK_BYTES_PER_S_BIDIR: f64 = 64e9;

/// Weight or KV-cache number format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// bfloat16: 2 bytes, BF16 tensor-core peak.
    Bf16,
    /// float16: 2 bytes, FP16 tensor-core peak.
    Fp16,
    /// float8 (E4M3): 1 byte, FP8 tensor-core peak where the GPU has one.
    Fp8,
}

impl Dtype {
    /// All formats, in the order they are listed in messages.
    pub const ALL: [Dtype; 3] = [Dtype::Bf16, Dtype::Fp16, Dtype::Fp8];

    /// Bytes per parameter (or per KV element).
    pub fn bytes(self) -> u64 {
        match self {
            Dtype::Bf16 | Dtype::Fp16 => 2,
            Dtype::Fp8 => 1,
        }
    }

    /// The scenario spelling (`bf16`, `fp16`, `fp8`).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bf16 => "bf16",
            Dtype::Fp16 => "fp16",
            Dtype::Fp8 => "fp8",
        }
    }

    /// Parses a scenario spelling, case-insensitively.
    pub fn parse(s: &str) -> Result<Dtype, CatalogError> {
        Dtype::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| CatalogError::UnknownDtype(s.to_string()))
    }
}

/// How much to trust a catalog entry's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Vendor datasheet or paper, cross-checked.
    High,
    /// One secondary source or a SKU-dependent figure.
    Medium,
    /// Placeholder from press reports; replace with a measured profile before concluding.
    Low,
    /// Defined in a scenario.
    User,
}

impl Confidence {
    /// Lower-case name for listings.
    pub fn name(self) -> &'static str {
        match self {
            Confidence::High => "high",
            Confidence::Medium => "medium",
            Confidence::Low => "low",
            Confidence::User => "user",
        }
    }
}

fn user_confidence() -> Confidence {
    Confidence::User
}

/// Attention variant of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attention {
    /// Multi-head attention: one KV head per query head.
    Mha,
    /// Grouped-query attention: `kv_heads` shared KV heads.
    Gqa,
    /// Multi-head latent attention (DeepSeek): a compressed latent plus a RoPE key per layer.
    Mla,
}

/// Errors of catalog lookups, custom entries and KV sizing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogError {
    /// No GPU has this name or alias.
    #[error("unknown GPU `{name}`; valid GPUs: {valid}")]
    UnknownGpu {
        /// The name asked for.
        name: String,
        /// Comma-separated canonical names.
        valid: String,
    },
    /// No model has this name, alias or Hugging Face id.
    #[error("unknown model `{name}`; valid models: {valid}")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// Comma-separated canonical names.
        valid: String,
    },
    /// Not one of `bf16`, `fp16`, `fp8`.
    #[error("unknown dtype `{0}`; valid dtypes: bf16, fp16, fp8")]
    UnknownDtype(String),
    /// The GPU cannot compute in this format.
    #[error("GPU `{gpu}` has no {dtype} support; use {hint}")]
    UnsupportedDtype {
        /// GPU name.
        gpu: String,
        /// The format asked for.
        dtype: &'static str,
        /// Formats it does support.
        hint: String,
    },
    /// A field of a catalog entry is invalid.
    #[error("{entry}: {field}: {message}")]
    Invalid {
        /// Entry name.
        entry: String,
        /// Field name as in the CSV / scenario.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Two entries share a name or alias.
    #[error("catalog name `{0}` is defined twice; give the custom entry another name")]
    Duplicate(String),
    /// The weights leave no room for a KV cache.
    #[error(
        "model `{model}` does not fit on `{gpu}` with tp {tp}: weights take {weights_gb:.1} GB \
         per GPU but only {usable_gb:.1} GB are usable (memory × gpu_memory_utilization − \
         {reserve_gb:.1} GB reserve); raise tp, use fp8 weights or a larger GPU"
    )]
    DoesNotFit {
        /// Model name.
        model: String,
        /// GPU name.
        gpu: String,
        /// Tensor-parallel degree.
        tp: u32,
        /// Weight bytes per GPU, in GB.
        weights_gb: f64,
        /// Usable bytes per GPU, in GB.
        usable_gb: f64,
        /// Reserve per GPU, in GB.
        reserve_gb: f64,
    },
    /// A CSV row could not be parsed.
    #[error("{file}: {message}")]
    Csv {
        /// The data file.
        file: &'static str,
        /// The parser's message.
        message: String,
    },
}

/// A GPU as written in `data/gpus.csv` or a scenario's `gpus:` section. Units are in the keys;
/// `GB` is 10^9 bytes, as on datasheets. Peaks are dense (no 2:4 sparsity).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// Canonical name.
    pub name: String,
    /// Other accepted names, separated by `;`.
    #[serde(default)]
    pub aliases: String,
    /// Manufacturer.
    #[serde(default)]
    pub vendor: String,
    /// Device memory in GB (10^9 bytes).
    pub memory_gb: f64,
    /// Peak memory bandwidth in GB/s.
    pub mem_bw_gb_per_s: f64,
    /// Dense BF16 tensor peak in TFLOPS (absent: no BF16).
    #[serde(default)]
    pub bf16_dense_tflops: Option<f64>,
    /// Dense FP16 tensor peak in TFLOPS.
    #[serde(default)]
    pub fp16_dense_tflops: Option<f64>,
    /// Dense FP8 tensor peak in TFLOPS (absent: FP8 weights run at the 16-bit peak).
    #[serde(default)]
    pub fp8_dense_tflops: Option<f64>,
    /// Scale-up link (NVLink, Infinity Fabric) bandwidth in GB/s, both directions summed
    /// (absent: PCIe, [`PCIE_FALLBACK_BYTES_PER_S_BIDIR`]).
    #[serde(default)]
    pub scaleup_link_gb_per_s_bidir: Option<f64>,
    /// Thermal design power in watts.
    #[serde(default)]
    pub tdp_w: Option<f64>,
    /// Trust in the numbers (default `user`).
    #[serde(default = "user_confidence")]
    pub confidence: Confidence,
    /// Where the numbers come from.
    #[serde(default)]
    pub source: String,
    /// Free-text remarks.
    #[serde(default)]
    pub notes: String,
    /// On-demand list price of one GPU for one hour in US dollars (absent: unknown; pools then
    /// cost 0 unless they set `lifecycle.gpu_hour_usd`).
    #[serde(default)]
    pub usd_per_gpu_hour: Option<f64>,
    /// Where the price comes from and when it was read.
    #[serde(default)]
    pub price_source: String,
}

/// A validated GPU, in SI units.
#[derive(Clone, Debug, PartialEq)]
pub struct Gpu {
    /// Canonical name.
    pub name: String,
    /// Other accepted names.
    pub aliases: Vec<String>,
    /// Manufacturer.
    pub vendor: String,
    /// Device memory.
    pub memory_bytes: u64,
    /// Peak memory bandwidth.
    pub mem_bw_bytes_per_s: f64,
    /// Dense BF16 peak, if supported.
    pub bf16_flops_per_s: Option<f64>,
    /// Dense FP16 peak, if supported.
    pub fp16_flops_per_s: Option<f64>,
    /// Dense FP8 peak, if supported.
    pub fp8_flops_per_s: Option<f64>,
    /// Scale-up link bandwidth, both directions summed (`None`: PCIe only).
    pub scaleup_link_bytes_per_s_bidir: Option<f64>,
    /// Thermal design power.
    pub tdp_w: Option<f64>,
    /// Trust in the numbers.
    pub confidence: Confidence,
    /// Where the numbers come from.
    pub source: String,
    /// On-demand price of one GPU-hour in US dollars, if known (the default of an `llm` pool's
    /// `lifecycle.gpu_hour_usd`).
    pub usd_per_gpu_hour: Option<f64>,
    /// Where the price comes from and when it was read.
    pub price_source: String,
}

fn positive(entry: &str, field: &'static str, v: f64) -> Result<f64, CatalogError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(CatalogError::Invalid {
            entry: entry.to_string(),
            field,
            message: format!("must be a positive number, got {v}"),
        })
    }
}

fn non_negative(entry: &str, field: &'static str, v: f64) -> Result<f64, CatalogError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(CatalogError::Invalid {
            entry: entry.to_string(),
            field,
            message: format!("must be a non-negative number, got {v}"),
        })
    }
}

fn opt_positive(
    entry: &str,
    field: &'static str,
    v: Option<f64>,
) -> Result<Option<f64>, CatalogError> {
    v.map(|x| positive(entry, field, x)).transpose()
}

fn split_aliases(s: &str) -> Vec<String> {
    s.split(';').map(str::trim).filter(|a| !a.is_empty()).map(str::to_string).collect()
}

/// Lookup key: lower case, `_` as `-`, surrounding blanks dropped.
fn key(s: &str) -> String {
    s.trim().to_ascii_lowercase().replace('_', "-")
}

impl Gpu {
    /// Validates a spec and converts it to SI units.
    pub fn from_spec(s: &GpuSpec) -> Result<Gpu, CatalogError> {
        let n = s.name.as_str();
        if n.trim().is_empty() {
            return Err(CatalogError::Invalid {
                entry: "<gpu>".into(),
                field: "name",
                message: "must not be empty".into(),
            });
        }
        let bf16 = opt_positive(n, "bf16_dense_tflops", s.bf16_dense_tflops)?;
        let fp16 = opt_positive(n, "fp16_dense_tflops", s.fp16_dense_tflops)?;
        if bf16.is_none() && fp16.is_none() {
            return Err(CatalogError::Invalid {
                entry: n.to_string(),
                field: "fp16_dense_tflops",
                message: "a GPU needs a BF16 or FP16 peak".into(),
            });
        }
        Ok(Gpu {
            name: n.to_string(),
            aliases: split_aliases(&s.aliases),
            vendor: s.vendor.clone(),
            memory_bytes: (positive(n, "memory_gb", s.memory_gb)? * 1e9).round() as u64,
            mem_bw_bytes_per_s: positive(n, "mem_bw_gb_per_s", s.mem_bw_gb_per_s)? * 1e9,
            bf16_flops_per_s: bf16.map(|t| t * 1e12),
            fp16_flops_per_s: fp16.map(|t| t * 1e12),
            fp8_flops_per_s: opt_positive(n, "fp8_dense_tflops", s.fp8_dense_tflops)?
                .map(|t| t * 1e12),
            scaleup_link_bytes_per_s_bidir: opt_positive(
                n,
                "scaleup_link_gb_per_s_bidir",
                s.scaleup_link_gb_per_s_bidir,
            )?
            .map(|g| g * 1e9),
            tdp_w: opt_positive(n, "tdp_w", s.tdp_w)?,
            confidence: s.confidence,
            source: s.source.clone(),
            usd_per_gpu_hour: s
                .usd_per_gpu_hour
                .map(|p| non_negative(n, "usd_per_gpu_hour", p))
                .transpose()?,
            price_source: s.price_source.clone(),
        })
    }

    /// The dense tensor peak used for GEMMs whose weights are stored in `dtype`.
    ///
    /// BF16 and FP16 need their own tensor-core support (Volta and Turing have no BF16, as vLLM
    /// also refuses). FP8 weights use the FP8 peak where the GPU has one; elsewhere (Ampere,
    /// Volta) they are weight-only FP8 — dequantised in the kernel, as vLLM does with Marlin —
    /// and run at the 16-bit peak.
    pub fn peak_flops_per_s(&self, dtype: Dtype) -> Result<f64, CatalogError> {
        let sixteen = self.bf16_flops_per_s.or(self.fp16_flops_per_s);
        let peak = match dtype {
            Dtype::Bf16 => self.bf16_flops_per_s,
            Dtype::Fp16 => self.fp16_flops_per_s,
            Dtype::Fp8 => self.fp8_flops_per_s.or(sixteen),
        };
        peak.ok_or_else(|| CatalogError::UnsupportedDtype {
            gpu: self.name.clone(),
            dtype: dtype.name(),
            hint: Dtype::ALL
                .into_iter()
                .filter(|d| *d != dtype && self.peak_flops_per_s(*d).is_ok())
                .map(Dtype::name)
                .collect::<Vec<_>>()
                .join(" or "),
        })
    }

    /// Bandwidth of one direction of the link used for tensor-parallel all-reduce.
    pub fn link_bytes_per_s_per_direction(&self) -> f64 {
        self.scaleup_link_bytes_per_s_bidir.unwrap_or(PCIE_FALLBACK_BYTES_PER_S_BIDIR) / 2.0
    }

    fn answers_to(&self, k: &str) -> bool {
        key(&self.name) == k || self.aliases.iter().any(|a| key(a) == k)
    }
}

/// A model as written in `data/models.csv` or a scenario's `models:` section.
///
/// Shapes are required; the derived columns (`params_*_b`, `kv_bytes_per_token_bf16`,
/// `weight_gb_bf16`, `linear_gflops_per_token`, `attn_flops_per_token_per_context_token`) are
/// optional checks for dense models. Mixture-of-experts models (`n_routed_experts` set) must give
/// `params_total_b` and `params_active_b`, which cannot be derived from these columns.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Canonical name.
    pub name: String,
    /// Other accepted names, separated by `;`.
    #[serde(default)]
    pub aliases: String,
    /// Hugging Face repository id (also accepted as a name).
    #[serde(default)]
    pub hf_id: String,
    /// Total parameters in billions (optional check for dense models).
    #[serde(default)]
    pub params_total_b: Option<f64>,
    /// Parameters active per token in billions (MoE; equals total for dense).
    #[serde(default)]
    pub params_active_b: Option<f64>,
    /// Transformer layers.
    pub layers: u32,
    /// Hidden size.
    pub hidden: u32,
    /// Dense MLP intermediate size.
    pub ffn_intermediate: u32,
    /// Per-expert MLP intermediate size (MoE).
    #[serde(default)]
    pub moe_ffn_intermediate: Option<u32>,
    /// Routed experts per MoE layer.
    #[serde(default)]
    pub n_routed_experts: Option<u32>,
    /// Always-active shared experts per MoE layer.
    #[serde(default)]
    pub n_shared_experts: Option<u32>,
    /// Routed experts chosen per token.
    #[serde(default)]
    pub experts_per_token: Option<u32>,
    /// Leading layers with a dense MLP instead of experts.
    #[serde(default)]
    pub n_dense_layers: Option<u32>,
    /// Query heads.
    pub heads: u32,
    /// KV heads (MHA/GQA).
    #[serde(default)]
    pub kv_heads: Option<u32>,
    /// Head dimension (MLA: the non-RoPE query/key and the value head dimension).
    pub head_dim: u32,
    /// MLA latent rank.
    #[serde(default)]
    pub kv_lora_rank: Option<u32>,
    /// MLA decoupled RoPE key dimension.
    #[serde(default)]
    pub qk_rope_head_dim: Option<u32>,
    /// Vocabulary size.
    pub vocab: u32,
    /// Whether the LM head shares the embedding matrix.
    #[serde(default)]
    pub tied_embeddings: bool,
    /// Longest supported context in tokens.
    pub max_context: u32,
    /// Attention variant.
    pub attention: Attention,
    /// Sliding-window length (caps the KV a sequence keeps).
    #[serde(default)]
    pub sliding_window: Option<u32>,
    /// Format the published weights use (default bf16).
    #[serde(default = "default_native_dtype")]
    pub native_dtype: Dtype,
    /// Check: KV bytes per token in BF16.
    #[serde(default)]
    pub kv_bytes_per_token_bf16: Option<u64>,
    /// Check: weight GB in BF16.
    #[serde(default)]
    pub weight_gb_bf16: Option<f64>,
    /// Check: linear-layer GFLOP per token (2 × active non-embedding params + LM head).
    #[serde(default)]
    pub linear_gflops_per_token: Option<f64>,
    /// Check: attention FLOPs per token per context token.
    #[serde(default)]
    pub attn_flops_per_token_per_context_token: Option<u64>,
    /// Trust in the numbers (default `user`).
    #[serde(default = "user_confidence")]
    pub confidence: Confidence,
    /// Where the shapes come from.
    #[serde(default)]
    pub source: String,
}

fn default_native_dtype() -> Dtype {
    Dtype::Bf16
}

/// A validated model with its shape-derived numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// Canonical name.
    pub name: String,
    /// Other accepted names.
    pub aliases: Vec<String>,
    /// Hugging Face repository id.
    pub hf_id: String,
    /// Transformer layers.
    pub layers: u32,
    /// Hidden size.
    pub hidden: u32,
    /// Query heads.
    pub heads: u32,
    /// KV heads (`None` for MLA, whose latent cache is not split by head).
    pub kv_heads: Option<u32>,
    /// Vocabulary size.
    pub vocab: u32,
    /// Whether the LM head shares the embedding matrix.
    pub tied_embeddings: bool,
    /// Longest supported context in tokens.
    pub max_context: u32,
    /// Attention variant.
    pub attention: Attention,
    /// Sliding-window length, if any.
    pub sliding_window: Option<u32>,
    /// Format of the published weights.
    pub native_dtype: Dtype,
    /// All parameters (embedding counted once when tied).
    pub params_total: f64,
    /// Parameters a token passes through (MoE: shared + top-k experts).
    pub params_active: f64,
    /// KV-cache elements per token (all layers, K and V or MLA latent).
    pub kv_elems_per_token: u64,
    /// Linear-layer parameters of one average layer that a token passes through.
    pub layer_linear_params_active: f64,
    /// LM-head parameters (`vocab × hidden`).
    pub lm_head_params: f64,
    /// Parameters read from memory every step whatever the routing: all except routed experts
    /// and, when untied, the input embedding (only its looked-up rows are read).
    pub always_read_params: f64,
    /// Parameters of all routed experts (0 for dense models).
    pub routed_expert_params: f64,
    /// Routed experts per MoE layer (0 for dense).
    pub routed_experts: u32,
    /// Routed experts chosen per token (0 for dense).
    pub experts_per_token: u32,
    /// Attention FLOPs per (query token, context token) pair: `2·layers·heads·(qk_dim + v_dim)`.
    pub attn_flops_per_token_per_context_token: f64,
    /// Trust in the numbers.
    pub confidence: Confidence,
    /// Where the shapes come from.
    pub source: String,
}

fn check_close(
    entry: &str,
    field: &'static str,
    given: Option<f64>,
    computed: f64,
) -> Result<(), CatalogError> {
    match given {
        Some(g) if (g - computed).abs() > 0.01 * computed.abs().max(1e-12) => {
            Err(CatalogError::Invalid {
                entry: entry.to_string(),
                field,
                message: format!(
                    "given {g} but the shape gives {computed:.4}; fix the shape or drop the column"
                ),
            })
        }
        _ => Ok(()),
    }
}

fn nonzero(entry: &str, field: &'static str, v: u32) -> Result<f64, CatalogError> {
    if v == 0 {
        return Err(CatalogError::Invalid {
            entry: entry.to_string(),
            field,
            message: "must be at least 1".into(),
        });
    }
    Ok(f64::from(v))
}

fn required(
    entry: &str,
    field: &'static str,
    v: Option<u32>,
    why: &str,
) -> Result<u32, CatalogError> {
    match v {
        Some(x) if x > 0 => Ok(x),
        _ => Err(CatalogError::Invalid {
            entry: entry.to_string(),
            field,
            message: format!("required (at least 1) {why}"),
        }),
    }
}

impl Model {
    /// Validates a spec and derives parameters, KV size and FLOPs from its shape.
    pub fn from_spec(s: &ModelSpec) -> Result<Model, CatalogError> {
        let n = s.name.as_str();
        if n.trim().is_empty() {
            return Err(CatalogError::Invalid {
                entry: "<model>".into(),
                field: "name",
                message: "must not be empty".into(),
            });
        }
        let layers = nonzero(n, "layers", s.layers)?;
        let hidden = nonzero(n, "hidden", s.hidden)?;
        let ffn = nonzero(n, "ffn_intermediate", s.ffn_intermediate)?;
        let heads = nonzero(n, "heads", s.heads)?;
        let head_dim = nonzero(n, "head_dim", s.head_dim)?;
        let vocab = nonzero(n, "vocab", s.vocab)?;
        nonzero(n, "max_context", s.max_context)?;
        let emb = vocab * hidden;
        let (kv_elems, attn_params, qk_dim, kv_heads) = match s.attention {
            Attention::Mla => {
                let rank = required(n, "kv_lora_rank", s.kv_lora_rank, "for MLA")?;
                let rope = required(n, "qk_rope_head_dim", s.qk_rope_head_dim, "for MLA")?;
                // The MLA projection matrices are not derivable from these columns; MLA models
                // must be MoE here (checked below), whose totals are given.
                (s.layers as u64 * u64::from(rank + rope), 0.0, head_dim + f64::from(rope), None)
            }
            Attention::Mha | Attention::Gqa => {
                let kvh = required(n, "kv_heads", s.kv_heads, "for MHA/GQA")?;
                if s.heads % kvh != 0 {
                    return Err(CatalogError::Invalid {
                        entry: n.to_string(),
                        field: "kv_heads",
                        message: format!("must divide heads ({})", s.heads),
                    });
                }
                let q = hidden * heads * head_dim;
                let kv = 2.0 * hidden * f64::from(kvh) * head_dim;
                (
                    2 * s.layers as u64 * u64::from(kvh) * u64::from(s.head_dim),
                    2.0 * q + kv,
                    head_dim,
                    Some(kvh),
                )
            }
        };
        let untied_embedding = if s.tied_embeddings { 0.0 } else { emb };
        let (params_total, params_active, routed, experts, topk) = match s.n_routed_experts {
            None => {
                if s.attention == Attention::Mla {
                    return Err(CatalogError::Invalid {
                        entry: n.to_string(),
                        field: "n_routed_experts",
                        message: "MLA models are only supported as MoE with params_total_b and params_active_b given".into(),
                    });
                }
                let total = layers * (attn_params + 3.0 * hidden * ffn) + emb + untied_embedding;
                check_close(n, "params_total_b", s.params_total_b, total / 1e9)?;
                check_close(n, "params_active_b", s.params_active_b, total / 1e9)?;
                (total, total, 0.0, 0, 0)
            }
            Some(e) => {
                let why = "for mixture-of-experts models";
                let e = required(n, "n_routed_experts", Some(e), why)?;
                let k = required(n, "experts_per_token", s.experts_per_token, why)?;
                let moe_ffn =
                    f64::from(required(n, "moe_ffn_intermediate", s.moe_ffn_intermediate, why)?);
                let dense_layers = s.n_dense_layers.unwrap_or(0).min(s.layers);
                let total =
                    positive(n, "params_total_b", s.params_total_b.unwrap_or(f64::NAN))? * 1e9;
                let active =
                    positive(n, "params_active_b", s.params_active_b.unwrap_or(f64::NAN))? * 1e9;
                let routed =
                    f64::from(s.layers - dense_layers) * f64::from(e) * 3.0 * hidden * moe_ffn;
                if routed >= total || active > total || k > e {
                    return Err(CatalogError::Invalid {
                        entry: n.to_string(),
                        field: "params_total_b",
                        message: format!(
                            "inconsistent MoE sizes: routed experts alone hold {:.1} B of {:.1} B total, {:.1} B active, top-{k} of {e}",
                            routed / 1e9,
                            total / 1e9,
                            active / 1e9
                        ),
                    });
                }
                (total, active, routed, e, k)
            }
        };
        let linear_active = params_active - untied_embedding;
        let linear_flops = 2.0 * linear_active;
        let attn_flops = 2.0 * layers * heads * (qk_dim + head_dim);
        check_close(n, "linear_gflops_per_token", s.linear_gflops_per_token, linear_flops / 1e9)?;
        check_close(
            n,
            "attn_flops_per_token_per_context_token",
            s.attn_flops_per_token_per_context_token.map(|v| v as f64),
            attn_flops,
        )?;
        check_close(
            n,
            "kv_bytes_per_token_bf16",
            s.kv_bytes_per_token_bf16.map(|v| v as f64),
            (2 * kv_elems) as f64,
        )?;
        check_close(n, "weight_gb_bf16", s.weight_gb_bf16, 2.0 * params_total / 1e9)?;
        Ok(Model {
            name: n.to_string(),
            aliases: split_aliases(&s.aliases),
            hf_id: s.hf_id.clone(),
            layers: s.layers,
            hidden: s.hidden,
            heads: s.heads,
            kv_heads,
            vocab: s.vocab,
            tied_embeddings: s.tied_embeddings,
            max_context: s.max_context,
            attention: s.attention,
            sliding_window: s.sliding_window,
            native_dtype: s.native_dtype,
            params_total,
            params_active,
            kv_elems_per_token: kv_elems,
            layer_linear_params_active: (linear_active - emb) / layers,
            lm_head_params: emb,
            always_read_params: params_total - routed - untied_embedding,
            routed_expert_params: routed,
            routed_experts: experts,
            experts_per_token: topk,
            attn_flops_per_token_per_context_token: attn_flops,
            confidence: s.confidence,
            source: s.source.clone(),
        })
    }

    /// KV-cache bytes per token for the whole model (all layers, all TP shards).
    pub fn kv_bytes_per_token(&self, kv_dtype: Dtype) -> u64 {
        self.kv_elems_per_token * kv_dtype.bytes()
    }

    /// Bytes of all weights stored in `dtype`.
    pub fn weight_bytes(&self, dtype: Dtype) -> f64 {
        self.params_total * dtype.bytes() as f64
    }

    /// Linear-layer FLOPs of one token, LM head included (the `linear_gflops_per_token` column).
    pub fn linear_flops_per_token(&self) -> f64 {
        self.layers as f64 * self.layer_linear_params_active * 2.0 + 2.0 * self.lm_head_params
    }

    /// Over how many GPUs of a `tp` group the KV cache is split. KV heads are sharded across
    /// ranks and replicated once `tp` exceeds their number; an MLA latent is replicated on
    /// every rank (as in vLLM).
    pub fn kv_shards(&self, tp: u32) -> u32 {
        match self.kv_heads {
            Some(h) => tp.clamp(1, h.max(1)),
            None => 1,
        }
    }

    fn answers_to(&self, k: &str) -> bool {
        key(&self.name) == k
            || (!self.hf_id.is_empty() && key(&self.hf_id) == k)
            || self.aliases.iter().any(|a| key(a) == k)
    }
}

/// Built-in plus scenario-defined GPUs and models, with lookup by name.
#[derive(Clone, Debug, PartialEq)]
pub struct Catalog {
    gpus: Vec<Gpu>,
    models: Vec<Model>,
}

fn parse_csv<T: serde::de::DeserializeOwned>(
    file: &'static str,
    text: &str,
) -> Result<Vec<T>, CatalogError> {
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    rdr.deserialize()
        .map(|r| r.map_err(|e| CatalogError::Csv { file, message: e.to_string() }))
        .collect()
}

impl Catalog {
    /// The built-in catalog from `data/` (parsed once per process).
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            // The data files are part of the source tree and covered by tests; a failure here is
            // a build defect, not bad user input.
            Catalog::parse_builtin().unwrap_or_else(|e| panic!("built-in catalog is broken: {e}"))
        })
    }

    fn parse_builtin() -> Result<Catalog, CatalogError> {
        let gpus: Vec<GpuSpec> = parse_csv("data/gpus.csv", GPUS_CSV)?;
        let models: Vec<ModelSpec> = parse_csv("data/models.csv", MODELS_CSV)?;
        Catalog { gpus: Vec::new(), models: Vec::new() }.with_custom(&gpus, &models)
    }

    /// This catalog plus custom entries (a scenario's `gpus:` and `models:`). A custom entry may
    /// not reuse an existing name or alias.
    pub fn with_custom(
        &self,
        gpus: &[GpuSpec],
        models: &[ModelSpec],
    ) -> Result<Catalog, CatalogError> {
        let mut out = self.clone();
        for s in gpus {
            let g = Gpu::from_spec(s)?;
            for k in std::iter::once(&g.name).chain(&g.aliases) {
                if out.gpus.iter().any(|o| o.answers_to(&key(k))) {
                    return Err(CatalogError::Duplicate(k.clone()));
                }
            }
            out.gpus.push(g);
        }
        for s in models {
            let m = Model::from_spec(s)?;
            let hf = (!m.hf_id.is_empty()).then_some(&m.hf_id);
            for k in std::iter::once(&m.name).chain(&m.aliases).chain(hf) {
                if out.models.iter().any(|o| o.answers_to(&key(k))) {
                    return Err(CatalogError::Duplicate(k.clone()));
                }
            }
            out.models.push(m);
        }
        Ok(out)
    }

    /// All GPUs in catalog order.
    pub fn gpus(&self) -> &[Gpu] {
        &self.gpus
    }

    /// All models in catalog order.
    pub fn models(&self) -> &[Model] {
        &self.models
    }

    /// The GPU with this name or alias (case-insensitive).
    pub fn gpu(&self, name: &str) -> Result<&Gpu, CatalogError> {
        let k = key(name);
        self.gpus.iter().find(|g| g.answers_to(&k)).ok_or_else(|| CatalogError::UnknownGpu {
            name: name.to_string(),
            valid: self.gpus.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }

    /// The model with this name, alias or Hugging Face id (case-insensitive).
    pub fn model(&self, name: &str) -> Result<&Model, CatalogError> {
        let k = key(name);
        self.models.iter().find(|m| m.answers_to(&k)).ok_or_else(|| CatalogError::UnknownModel {
            name: name.to_string(),
            valid: self.models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }
}

/// How a model is deployed on a replica, for KV-cache sizing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KvCacheConfig {
    /// Tensor-parallel degree (GPUs per replica).
    pub tp: u32,
    /// Weight format.
    pub weight_dtype: Dtype,
    /// KV-cache format.
    pub kv_dtype: Dtype,
    /// Fraction of each GPU's memory the engine may use (vLLM `gpu_memory_utilization`).
    pub gpu_memory_utilization: f64,
    /// Tokens per KV block (vLLM `block_size`).
    pub block_size: u32,
    /// Bytes per GPU kept for activations and non-PyTorch memory.
    pub reserve_bytes_per_gpu: u64,
}

impl KvCacheConfig {
    /// BF16 weights and cache, utilisation 0.9, blocks of 16, [`DEFAULT_RESERVE_BYTES_PER_GPU`].
    pub fn new(tp: u32) -> KvCacheConfig {
        KvCacheConfig {
            tp,
            weight_dtype: Dtype::Bf16,
            kv_dtype: Dtype::Bf16,
            gpu_memory_utilization: 0.9,
            block_size: 16,
            reserve_bytes_per_gpu: DEFAULT_RESERVE_BYTES_PER_GPU,
        }
    }
}

/// KV-cache capacity of one replica in blocks of `block_size` tokens.
///
/// Per GPU: `memory × gpu_memory_utilization − weights / tp − reserve` bytes are left for the
/// cache, and each token takes `kv_bytes_per_token / kv_shards` of them (see
/// [`Model::kv_shards`]). When the KV heads split evenly over the `tp` GPUs this is the usual
/// `(memory × util × tp − weights − tp × reserve) / (kv_bytes_per_token × block_size)`.
/// The result is floored to whole blocks.
pub fn kv_capacity_blocks(
    gpu: &Gpu,
    model: &Model,
    cfg: &KvCacheConfig,
) -> Result<u64, CatalogError> {
    let bad = |field: &'static str, message: String| CatalogError::Invalid {
        entry: model.name.clone(),
        field,
        message,
    };
    if cfg.tp == 0 {
        return Err(bad("tp", "must be at least 1".into()));
    }
    if !(cfg.gpu_memory_utilization > 0.0 && cfg.gpu_memory_utilization <= 1.0) {
        return Err(bad(
            "gpu_memory_utilization",
            format!("must be in (0, 1], got {}", cfg.gpu_memory_utilization),
        ));
    }
    if cfg.block_size == 0 {
        return Err(bad("block_size", "must be at least 1".into()));
    }
    let tp = f64::from(cfg.tp);
    let usable =
        gpu.memory_bytes as f64 * cfg.gpu_memory_utilization - cfg.reserve_bytes_per_gpu as f64;
    let weights = model.weight_bytes(cfg.weight_dtype) / tp;
    let free = usable - weights;
    if free <= 0.0 {
        return Err(CatalogError::DoesNotFit {
            model: model.name.clone(),
            gpu: gpu.name.clone(),
            tp: cfg.tp,
            weights_gb: weights / 1e9,
            usable_gb: usable / 1e9,
            reserve_gb: cfg.reserve_bytes_per_gpu as f64 / 1e9,
        });
    }
    let per_token =
        model.kv_bytes_per_token(cfg.kv_dtype) as f64 / f64::from(model.kv_shards(cfg.tp));
    Ok((free / (per_token * f64::from(cfg.block_size))).floor() as u64)
}

/// The text of `routelab list gpus`.
pub fn list_gpus() -> String {
    let mut out = format!(
        "{:<16} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}  {:<10} aliases\n",
        "gpu",
        "mem_GB",
        "bw_GB/s",
        "bf16_TF",
        "fp16_TF",
        "fp8_TF",
        "link_GB/s",
        "$/GPU-h",
        "confidence"
    );
    let tf = |v: Option<f64>| v.map_or("-".to_string(), |f| format!("{:.1}", f / 1e12));
    for g in Catalog::builtin().gpus() {
        out.push_str(&format!(
            "{:<16} {:>7.0} {:>9.0} {:>9} {:>9} {:>9} {:>9} {:>8}  {:<10} {}\n",
            g.name,
            g.memory_bytes as f64 / 1e9,
            g.mem_bw_bytes_per_s / 1e9,
            tf(g.bf16_flops_per_s),
            tf(g.fp16_flops_per_s),
            tf(g.fp8_flops_per_s),
            g.scaleup_link_bytes_per_s_bidir
                .map_or("pcie".to_string(), |b| format!("{:.0}", b / 1e9)),
            g.usd_per_gpu_hour.map_or("-".to_string(), |p| format!("{p:.2}")),
            g.confidence.name(),
            g.aliases.join(", ")
        ));
    }
    out
}

/// The text of `routelab list models`.
pub fn list_models() -> String {
    let mut out = format!(
        "{:<16} {:>8} {:>9} {:>6} {:>10} {:>10}  {:<6} aliases\n",
        "model", "params_B", "active_B", "layers", "KV_KiB/tok", "GFLOP/tok", "attn"
    );
    for m in Catalog::builtin().models() {
        out.push_str(&format!(
            "{:<16} {:>8.2} {:>9.2} {:>6} {:>10.1} {:>10.2}  {:<6} {}\n",
            m.name,
            m.params_total / 1e9,
            m.params_active / 1e9,
            m.layers,
            m.kv_bytes_per_token(Dtype::Bf16) as f64 / 1024.0,
            m.linear_flops_per_token() / 1e9,
            format!("{:?}", m.attention).to_ascii_lowercase(),
            m.aliases.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat() -> &'static Catalog {
        Catalog::builtin()
    }

    #[test]
    fn builtin_catalog_parses_with_every_entry() {
        let c = Catalog::parse_builtin().unwrap();
        assert_eq!(c.gpus().len(), 15);
        assert_eq!(c.models().len(), 12);
    }

    #[test]
    fn lookups_accept_names_aliases_and_case() {
        for (q, want) in [
            ("h100-sxm", "H100-SXM5-80GB"),
            ("H100", "H100-SXM5-80GB"),
            ("h100_pcie", "H100-PCIe-80GB"),
            ("A100-80GB-SXM4", "A100-80GB-SXM4"),
            ("a100-40gb", "A100-40GB-SXM4"),
            ("h200", "H200-SXM-141GB"),
            ("mi300x", "MI300X"),
            ("b200", "B200-HGX"),
            ("910b", "Ascend-910B"),
            ("l40s", "L40S"),
        ] {
            assert_eq!(cat().gpu(q).unwrap().name, want, "{q}");
        }
        for (q, want) in [
            ("llama-3-8b", "Llama-3-8B"),
            ("Llama-3.1-8B", "Llama-3-8B"),
            ("meta-llama/Meta-Llama-3-8B", "Llama-3-8B"),
            ("LLAMA_2_70B", "Llama-2-70B"),
            ("mistral-7b", "Mistral-7B-v0.1"),
            ("qwen2.5-72b", "Qwen2.5-72B"),
            ("deepseek-v3", "DeepSeek-V3"),
            ("llama-3.2-1b", "Llama-3.2-1B"),
        ] {
            assert_eq!(cat().model(q).unwrap().name, want, "{q}");
        }
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let e = cat().gpu("h101").unwrap_err().to_string();
        assert!(
            e.contains("unknown GPU `h101`") && e.contains("H100-SXM5-80GB") && e.contains("T4"),
            "{e}"
        );
        let e = cat().model("llama-9").unwrap_err().to_string();
        assert!(e.contains("unknown model `llama-9`") && e.contains("Llama-3-8B"), "{e}");
        assert_eq!(Dtype::parse("BF16").unwrap(), Dtype::Bf16);
        assert!(Dtype::parse("int4").unwrap_err().to_string().contains("bf16, fp16, fp8"));
    }

    #[test]
    fn gpu_units_and_dtype_peaks() {
        let h = cat().gpu("h100-sxm").unwrap();
        assert_eq!(h.memory_bytes, 80_000_000_000);
        assert_eq!(h.mem_bw_bytes_per_s, 3.35e12);
        assert_eq!(h.peak_flops_per_s(Dtype::Bf16).unwrap(), 989.4e12);
        assert_eq!(h.peak_flops_per_s(Dtype::Fp8).unwrap(), 1978.9e12);
        assert_eq!(h.link_bytes_per_s_per_direction(), 450e9);
        // Ampere has no FP8 tensor cores: FP8 weights are weight-only and run at the 16-bit peak.
        let a = cat().gpu("a100").unwrap();
        assert_eq!(a.peak_flops_per_s(Dtype::Fp8).unwrap(), 312e12);
        // Turing has no BF16: an error that names what works.
        let e = cat().gpu("t4").unwrap().peak_flops_per_s(Dtype::Bf16).unwrap_err().to_string();
        assert!(e.contains("no bf16") && e.contains("fp16"), "{e}");
        // No NVLink: PCIe fallback.
        assert_eq!(cat().gpu("l4").unwrap().link_bytes_per_s_per_direction(), 32e9);
        assert_eq!(cat().gpu("910b").unwrap().confidence, Confidence::Low);
    }

    #[test]
    fn shape_derived_numbers_reproduce_the_calibration_models_csv() {
        // (name, params_total_b, params_active_b, kv_bytes_per_token_bf16, linear_gflops_per_token,
        //  attn_flops_per_token_per_context_token) copied from ../shared/calibration/models.csv.
        let table: [(&str, f64, f64, u64, f64, f64); 10] = [
            ("Llama-2-7B", 6.74, 6.74, 524288, 13.21, 524288.0),
            ("Llama-2-13B", 13.02, 13.02, 819200, 25.7, 819200.0),
            ("Llama-2-70B", 68.98, 68.98, 327680, 137.43, 2621440.0),
            ("Llama-3-8B", 8.03, 8.03, 131072, 15.01, 524288.0),
            ("Llama-3-70B", 70.55, 70.55, 327680, 139.0, 2621440.0),
            ("Llama-3.1-405B", 405.85, 405.85, 516096, 807.5, 8257536.0),
            ("Mistral-7B-v0.1", 7.24, 7.24, 131072, 14.22, 524288.0),
            ("Qwen2.5-7B", 7.62, 7.62, 57344, 14.14, 401408.0),
            ("Qwen2.5-72B", 72.7, 72.7, 327680, 142.92, 2621440.0),
            ("DeepSeek-V3", 671.03, 37.55, 70272, 73.25, 4997120.0),
        ];
        for (name, total, active, kv, lin, attn) in table {
            let m = cat().model(name).unwrap();
            assert!(
                (m.params_total / 1e9 - total).abs() <= 0.005 * total,
                "{name} total {}",
                m.params_total
            );
            assert!((m.params_active / 1e9 - active).abs() <= 0.005 * active, "{name} active");
            assert_eq!(m.kv_bytes_per_token(Dtype::Bf16), kv, "{name} kv");
            assert_eq!(m.kv_bytes_per_token(Dtype::Fp8), kv / 2, "{name} kv fp8");
            assert!(
                (m.linear_flops_per_token() / 1e9 - lin).abs() <= 0.005 * lin,
                "{name} lin {}",
                m.linear_flops_per_token()
            );
            assert_eq!(m.attn_flops_per_token_per_context_token, attn, "{name} attn");
        }
        // The added 1B-class model, by hand: 16 layers x (2·2048·2048 + 2·2048·512 + 3·2048·8192)
        // = 973,078,528 plus a tied 128256 x 2048 embedding = 1,235,746,816 parameters;
        // KV = 2 · 16 · 8 · 64 · 2 B = 32 KiB per token.
        let m = cat().model("llama-3.2-1b").unwrap();
        assert_eq!(m.params_total, 1_235_746_816.0);
        assert_eq!(m.kv_bytes_per_token(Dtype::Bf16), 32 * 1024);
        assert_eq!(m.linear_flops_per_token(), 2.0 * 1_235_746_816.0);
        // DeepSeek-V3: MoE reads only the experts hit; its 671 B total is mostly routed experts.
        let d = cat().model("deepseek-v3").unwrap();
        assert!((d.routed_expert_params / 1e9 - 653.9).abs() < 0.1, "{}", d.routed_expert_params);
        assert_eq!(d.native_dtype, Dtype::Fp8);
        assert_eq!(d.kv_shards(8), 1);
    }

    #[test]
    fn fp8_halves_weight_bytes() {
        let m = cat().model("llama-3-70b").unwrap();
        assert_eq!(m.weight_bytes(Dtype::Fp8) * 2.0, m.weight_bytes(Dtype::Bf16));
        assert_eq!(m.weight_bytes(Dtype::Fp16), m.weight_bytes(Dtype::Bf16));
    }

    #[test]
    fn kv_capacity_llama3_8b_on_one_h100() {
        // By hand: 80e9 B x 0.9 = 72.0e9; weights 8.0303e9 params x 2 B = 16.06e9; reserve
        // 2 GiB = 2.147e9; left 53.79e9 B. A block is 16 tokens x 128 KiB = 2,097,152 B, so
        // 53.79e9 / 2,097,152 = 25,650 blocks = 410 K tokens (the calibration README's 426 K
        // has no reserve; vLLM reports ~27-28 K blocks on the 79.2 GiB a CUDA "80 GB" part
        // exposes, which our decimal-GB datasheet figure understates by ~6 %).
        let g = cat().gpu("h100-sxm").unwrap();
        let m = cat().model("llama-3-8b").unwrap();
        let blocks = kv_capacity_blocks(g, m, &KvCacheConfig::new(1)).unwrap();
        assert!((25_500..=25_800).contains(&blocks), "{blocks}");
        // Without the reserve the README's §5 figure comes back: ~426 K tokens.
        let no_reserve = KvCacheConfig { reserve_bytes_per_gpu: 0, ..KvCacheConfig::new(1) };
        let tokens = kv_capacity_blocks(g, m, &no_reserve).unwrap() * 16;
        assert!((425_000..=428_000).contains(&tokens), "{tokens}");
        // FP8 KV doubles the tokens; FP8 weights free 8 GB more.
        let fp8_kv = KvCacheConfig { kv_dtype: Dtype::Fp8, ..KvCacheConfig::new(1) };
        assert!(kv_capacity_blocks(g, m, &fp8_kv).unwrap().abs_diff(2 * blocks) <= 1);
        // Llama-3-70B TP4 on 4 x 80 GB: (4 x (72 - 2.147) - 141.1) GB / 320 KiB ≈ 422 K tokens.
        let m70 = cat().model("llama-3-70b").unwrap();
        let tokens = kv_capacity_blocks(g, m70, &KvCacheConfig::new(4)).unwrap() * 16;
        assert!((415_000..=430_000).contains(&tokens), "{tokens}");
    }

    #[test]
    fn kv_capacity_errors_when_weights_do_not_fit() {
        let g = cat().gpu("h100-sxm").unwrap();
        let m = cat().model("llama-3-70b").unwrap();
        let e = kv_capacity_blocks(g, m, &KvCacheConfig::new(1)).unwrap_err().to_string();
        assert!(e.contains("does not fit") && e.contains("raise tp"), "{e}");
        let bad = KvCacheConfig { gpu_memory_utilization: 1.5, ..KvCacheConfig::new(1) };
        assert!(kv_capacity_blocks(g, m, &bad)
            .unwrap_err()
            .to_string()
            .contains("gpu_memory_utilization"));
    }

    #[test]
    fn kv_is_replicated_once_tp_exceeds_kv_heads() {
        let q = cat().model("qwen2.5-7b").unwrap(); // 4 KV heads
        assert_eq!(q.kv_shards(2), 2);
        assert_eq!(q.kv_shards(8), 4);
    }

    #[test]
    fn custom_entries_deserialise_strictly_and_join_the_catalog() {
        let gpu: GpuSpec = serde_yaml_ng::from_str(
            "{ name: my-gpu, memory_gb: 48, mem_bw_gb_per_s: 1000, bf16_dense_tflops: 200 }",
        )
        .unwrap();
        let model: ModelSpec = serde_yaml_ng::from_str(
            "{ name: tiny, layers: 2, hidden: 256, ffn_intermediate: 1024, heads: 4, kv_heads: 2, \
               head_dim: 64, vocab: 1000, max_context: 2048, attention: gqa }",
        )
        .unwrap();
        let c =
            cat().with_custom(std::slice::from_ref(&gpu), std::slice::from_ref(&model)).unwrap();
        let g = c.gpu("MY-GPU").unwrap();
        assert_eq!(g.confidence, Confidence::User);
        assert_eq!(g.memory_bytes, 48_000_000_000);
        // 2 x (2·256·256 + 2·256·128 + 3·256·1024) + 2 x 1000 x 256 (untied) = 2,478,080.
        assert_eq!(c.model("tiny").unwrap().params_total, 2_478_080.0);
        let err = serde_yaml_ng::from_str::<GpuSpec>(
            "{ name: x, memory_gb: 1, mem_bw_gb_per_s: 1, bogus: 1 }",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `bogus`"), "{err}");
        // Names are unique; shapes must agree with given totals; values must be positive.
        let dup = GpuSpec { name: "H100".into(), ..gpu.clone() };
        assert_eq!(
            cat().with_custom(&[dup], &[]).unwrap_err(),
            CatalogError::Duplicate("H100".into())
        );
        let wrong = ModelSpec { params_total_b: Some(7.0), ..model.clone() };
        assert!(Model::from_spec(&wrong).unwrap_err().to_string().contains("params_total_b"));
        let neg = GpuSpec { mem_bw_gb_per_s: -1.0, ..gpu };
        assert!(Gpu::from_spec(&neg).unwrap_err().to_string().contains("mem_bw_gb_per_s"));
        let moe = ModelSpec { n_routed_experts: Some(8), ..model };
        assert!(Model::from_spec(&moe).unwrap_err().to_string().contains("experts_per_token"));
    }

    #[test]
    fn prices_are_sourced_non_negative_and_validated() {
        // Every built-in price names its source; a GPU without a price says why.
        for g in cat().gpus() {
            assert!(!g.price_source.trim().is_empty(), "{} has no price_source", g.name);
            if let Some(p) = g.usd_per_gpu_hour {
                assert!(p.is_finite() && p >= 0.0, "{}: {p}", g.name);
                // The note quotes the price it gives (as `$<price>`), so a typo in one of the
                // two columns shows.
                let quoted = format!("${p}");
                assert!(g.price_source.contains(&quoted), "{}: {quoted} not in its source", g.name);
            }
        }
        // The GPUs a datasheet-grade row describes are priced; the Ascend placeholders are not.
        for name in ["H100-SXM5-80GB", "A100-80GB-SXM4", "L4", "T4", "B200-HGX", "MI300X"] {
            assert!(cat().gpu(name).unwrap().usd_per_gpu_hour.is_some(), "{name}");
        }
        assert_eq!(cat().gpu("910b").unwrap().usd_per_gpu_hour, None);
        // A custom entry: absent is unknown, zero is free, negative or NaN is rejected.
        let spec: GpuSpec = serde_yaml_ng::from_str(
            "{ name: g, memory_gb: 16, mem_bw_gb_per_s: 300, fp16_dense_tflops: 60, \
               usd_per_gpu_hour: 0.5, price_source: my quote }",
        )
        .unwrap();
        assert_eq!(Gpu::from_spec(&spec).unwrap().usd_per_gpu_hour, Some(0.5));
        let free = GpuSpec { usd_per_gpu_hour: Some(0.0), ..spec.clone() };
        assert_eq!(Gpu::from_spec(&free).unwrap().usd_per_gpu_hour, Some(0.0));
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let s = GpuSpec { usd_per_gpu_hour: Some(bad), ..spec.clone() };
            let e = Gpu::from_spec(&s).unwrap_err().to_string();
            assert!(e.contains("usd_per_gpu_hour") && e.contains("non-negative"), "{e}");
        }
        // In CSV form a price that is not a number fails the parse, naming the file.
        let header = "name,memory_gb,mem_bw_gb_per_s,fp16_dense_tflops,usd_per_gpu_hour\n";
        let e = parse_csv::<GpuSpec>("data/gpus.csv", &format!("{header}g,16,300,60,cheap\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("data/gpus.csv:"), "{e}");
        let rows =
            parse_csv::<GpuSpec>("data/gpus.csv", &format!("{header}g,16,300,60,-2\n")).unwrap();
        assert!(Gpu::from_spec(&rows[0]).is_err(), "a negative CSV price must be rejected");
        assert!(list_gpus().contains("$/GPU-h"));
    }

    #[test]
    fn listings_name_every_entry() {
        let g = list_gpus();
        let m = list_models();
        for x in cat().gpus() {
            assert!(g.contains(&x.name));
        }
        for x in cat().models() {
            assert!(m.contains(&x.name));
        }
    }
}
