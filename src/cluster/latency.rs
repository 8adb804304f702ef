//! Latency models: the duration of one engine iteration (one forward pass over a batch) of an
//! `llm` replica, from a summary of the batch.
//!
//! The engine keeps an [`IterationShape`] as running sums while it schedules, and asks
//! [`LatencyModel::iteration_s`] for the step time. Two models:
//!
//! * [`LatencyModel::Roofline`] (default): per GPU of a `tp` group,
//!   `max(compute, memory) + layers·layer_fixed_s + comm + overhead_s`, where compute is the
//!   linear-layer FLOPs at a GEMM efficiency that rises with the tokens in the step (fitted to
//!   the Vidur kernel profiles, see [`RooflineParams`] and `docs/calibration.md`) plus prefill
//!   attention FLOPs, memory is the weights (MoE: only the experts hit) plus the KV read and
//!   written, and comm is two all-reduces per layer over the scale-up link.
//! * [`LatencyModel::Linear`]: `beta0 + beta1·prefill + beta2·decode + beta3·context` with
//!   user-supplied coefficients.
//!
//! Invariants: [`LatencyModel::iteration_s`] is O(1), allocation-free and pure; it is finite,
//! non-negative, zero for an empty batch and non-decreasing in every field of the shape. All
//! per-deployment constants are folded in once by [`Roofline::new`]. Floats stay inside this
//! module; the engine converts through [`SimDuration::from_secs_f64`].

use crate::cluster::catalog::{CatalogError, Dtype, Gpu, Model};
use crate::time::SimDuration;

/// What one iteration processes, as sums the engine maintains incrementally.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IterationShape {
    /// New prompt tokens computed this step (all prefill chunks).
    pub prefill_tokens: u64,
    /// Prefill chunks (sequences) in the step; each gets one LM-head row.
    pub prefill_seqs: u64,
    /// Causal query-key pairs of the prefill chunks:
    /// `Σ new·cached + new·(new+1)/2` over chunks (`cached` = tokens already in the KV cache).
    pub prefill_attention_pairs: u64,
    /// `Σ cached` over prefill chunks: prefix KV read by prefill attention.
    pub prefill_cached_tokens: u64,
    /// Decoding sequences (one new token each).
    pub decode_tokens: u64,
    /// `Σ context` over decoding sequences: KV tokens their attention reads.
    pub decode_context_tokens: u64,
}

impl IterationShape {
    /// Tokens through the linear layers this step.
    #[inline]
    pub fn tokens(&self) -> u64 {
        self.prefill_tokens + self.decode_tokens
    }

    /// The shape of one prefill chunk of `new` tokens after `cached` cached ones.
    pub fn prefill_chunk(new: u64, cached: u64) -> IterationShape {
        IterationShape {
            prefill_tokens: new,
            prefill_seqs: u64::from(new > 0),
            prefill_attention_pairs: new * cached + new * (new + 1) / 2,
            prefill_cached_tokens: if new > 0 { cached } else { 0 },
            ..IterationShape::default()
        }
    }

    /// The shape of a decode step of `seqs` sequences with `context` KV tokens in total.
    pub fn decode(seqs: u64, context: u64) -> IterationShape {
        IterationShape {
            decode_tokens: seqs,
            decode_context_tokens: context,
            ..IterationShape::default()
        }
    }
}

/// Efficiencies and overheads of the roofline model.
///
/// GEMM efficiency at `T` tokens per step is
/// `eta_compute(T) = eta_compute_max · (1 − exp(−x / knee_x))` with `x = (2T / bytes_per_param) /
/// ridge`, the GEMM's arithmetic intensity over the GPU's ridge point (`peak / bandwidth`), so
/// one curve serves GPUs with different ridges. The four kernel parameters (`eta_compute_max`,
/// `knee_x`, `eta_memory`, `layer_fixed_s`) were fitted by least squares on log time to the
/// Vidur per-layer linear-op profiles of Llama-2-7B and Llama-2-70B at TP 1–2 on A100-80GB and
/// H100-80GB (80 of the 240 rows); `docs/calibration.md` gives the errors on all rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RooflineParams {
    /// Saturated GEMM efficiency (fraction of the dense peak) at large token counts.
    pub eta_compute_max: f64,
    /// Knee of the efficiency curve, in units of the ridge intensity.
    pub knee_x: f64,
    /// Weight and KV streaming efficiency (fraction of peak bandwidth).
    pub eta_memory: f64,
    /// Prefill attention efficiency (fraction of the dense peak; FlashAttention-2 reaches
    /// 0.5–0.7 on A100 forward passes).
    pub eta_attention: f64,
    /// Fraction of the link bandwidth an all-reduce achieves (NCCL bus bandwidth on NVLink).
    pub eta_link: f64,
    /// Fixed time per layer for the linear kernels (launch and tail), seconds.
    pub layer_fixed_s: f64,
    /// All-reduce latency per doubling of `tp` (tree algorithms: `log2(tp)` steps), seconds.
    pub allreduce_latency_s: f64,
    /// Per-iteration engine overhead (scheduling, sampling, launches outside the layers), seconds.
    pub overhead_s: f64,
}

impl RooflineParams {
    /// The kernel-level fit (see the type's docs).
    const KERNEL_FIT: RooflineParams = RooflineParams {
        eta_compute_max: 0.73,
        knee_x: 0.68,
        eta_memory: 0.86,
        eta_attention: 0.6,
        eta_link: 0.75,
        layer_fixed_s: 22e-6,
        allreduce_latency_s: 8e-6,
        overhead_s: 2e-3,
    };

    /// The 2023 DGX-A100 stack of the Splitwise measurements: the kernel fit plus an overhead
    /// (4.8 ms) and all-reduce latency (57 µs per doubling) fitted to its Llama-2-70B TP 2 and
    /// TP 4 batch-1 decode steps. Used by the calibration report; an example of a slow,
    /// pre-CUDA-graph stack.
    pub fn splitwise_dgx_a100_2023() -> RooflineParams {
        RooflineParams {
            overhead_s: 4.8e-3,
            allreduce_latency_s: 57e-6,
            ..RooflineParams::KERNEL_FIT
        }
    }
}

impl Default for RooflineParams {
    /// The kernel fit with a modern stack's floor: 2 ms per iteration (CUDA graphs; the
    /// calibration README's 1–5 ms range) and 8 µs per all-reduce doubling (custom all-reduce
    /// on NVLink).
    fn default() -> RooflineParams {
        RooflineParams::KERNEL_FIT
    }
}

/// A roofline model bound to one deployment (GPU, model, tp, dtypes), with every constant
/// folded per GPU so that [`Roofline::iteration_s`] is a handful of multiply-adds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Roofline {
    /// Effective saturated FLOP/s: `peak · eta_compute_max`.
    compute_flops_per_s: f64,
    /// Effective attention FLOP/s.
    attention_flops_per_s: f64,
    /// Tokens per step at which GEMM efficiency reaches `1 − 1/e` of its maximum.
    knee_tokens: f64,
    /// Effective bandwidth: `bw · eta_memory`.
    mem_bytes_per_s: f64,
    /// Per GPU, per token: FLOPs of all layers' linear ops.
    layer_flops_per_token: f64,
    /// Per GPU, per sampled row: LM-head FLOPs.
    lm_head_flops_per_row: f64,
    /// Per GPU, per query-key pair: attention FLOPs.
    attn_flops_per_pair: f64,
    /// Per GPU: bytes of weights read every step.
    always_read_bytes: f64,
    /// Per GPU: bytes of all routed experts (0 for dense models).
    routed_bytes: f64,
    /// `ln(1 − k/E)` for MoE expert coverage (0 for dense).
    ln_expert_miss: f64,
    /// Per GPU: KV bytes per token.
    kv_bytes_per_token: f64,
    /// Per GPU, per token: all-reduce transfer time of the step.
    comm_s_per_token: f64,
    /// Per step: layer fixed times, all-reduce latency and engine overhead.
    fixed_s: f64,
    /// Per GPU: weight bytes of one layer's linear ops, for the kernel-level calibration.
    one_layer_bytes: f64,
    /// Per GPU, per token: FLOPs of one layer's linear ops, for the kernel-level calibration.
    one_layer_flops_per_token: f64,
    /// Fixed time per layer, for the kernel-level calibration.
    layer_fixed_s: f64,
}

fn check_param(name: &'static str, v: f64, max: f64) -> Result<f64, CatalogError> {
    if v.is_finite() && v >= 0.0 && v <= max {
        Ok(v)
    } else {
        Err(CatalogError::Invalid {
            entry: "roofline".into(),
            field: name,
            message: format!("must be in [0, {max}], got {v}"),
        })
    }
}

impl Roofline {
    /// Folds a deployment into per-GPU constants. Fails when the GPU lacks the weight format,
    /// `tp` is 0, or a parameter is out of range (efficiencies in (0, 1], times ≥ 0).
    pub fn new(
        gpu: &Gpu,
        model: &Model,
        tp: u32,
        weight_dtype: Dtype,
        kv_dtype: Dtype,
        p: &RooflineParams,
    ) -> Result<Roofline, CatalogError> {
        for (name, v) in [
            ("eta_compute_max", p.eta_compute_max),
            ("eta_memory", p.eta_memory),
            ("eta_attention", p.eta_attention),
            ("eta_link", p.eta_link),
        ] {
            if check_param(name, v, 1.0)? == 0.0 {
                return Err(CatalogError::Invalid {
                    entry: "roofline".into(),
                    field: name,
                    message: "must be positive".into(),
                });
            }
        }
        check_param("knee_x", p.knee_x, f64::MAX)?;
        check_param("layer_fixed_s", p.layer_fixed_s, f64::MAX)?;
        check_param("allreduce_latency_s", p.allreduce_latency_s, f64::MAX)?;
        check_param("overhead_s", p.overhead_s, f64::MAX)?;
        if tp == 0 {
            return Err(CatalogError::Invalid {
                entry: model.name.clone(),
                field: "tp",
                message: "must be at least 1".into(),
            });
        }
        let peak = gpu.peak_flops_per_s(weight_dtype)?;
        let tpf = f64::from(tp);
        let bpp = weight_dtype.bytes() as f64;
        let layers = f64::from(model.layers);
        let ridge_flops_per_byte = peak / gpu.mem_bw_bytes_per_s;
        // Intensity of a GEMM over T tokens is 2T/bpp FLOP per weight byte.
        let knee_tokens = p.knee_x * ridge_flops_per_byte * bpp / 2.0;
        let ln_expert_miss = if model.routed_experts > 0 {
            (1.0 - f64::from(model.experts_per_token) / f64::from(model.routed_experts))
                .max(1e-12)
                .ln()
        } else {
            0.0
        };
        // Two all-reduces per layer of `hidden × tokens` 16-bit activations; ring transfer
        // 2(p−1)/p of the message per GPU, tree latency log2(p) steps.
        let (comm_s_per_token, comm_latency_s) = if tp > 1 {
            let n = 2.0 * layers;
            let bytes = f64::from(model.hidden) * 2.0 * 2.0 * (tpf - 1.0) / tpf;
            (
                n * bytes / (gpu.link_bytes_per_s_per_direction() * p.eta_link),
                n * p.allreduce_latency_s * tpf.log2(),
            )
        } else {
            (0.0, 0.0)
        };
        Ok(Roofline {
            compute_flops_per_s: peak * p.eta_compute_max,
            attention_flops_per_s: peak * p.eta_attention,
            knee_tokens: knee_tokens.max(1e-9),
            mem_bytes_per_s: gpu.mem_bw_bytes_per_s * p.eta_memory,
            layer_flops_per_token: 2.0 * layers * model.layer_linear_params_active / tpf,
            lm_head_flops_per_row: 2.0 * model.lm_head_params / tpf,
            attn_flops_per_pair: model.attn_flops_per_token_per_context_token / tpf,
            always_read_bytes: model.always_read_params * bpp / tpf,
            routed_bytes: model.routed_expert_params * bpp / tpf,
            ln_expert_miss,
            kv_bytes_per_token: model.kv_bytes_per_token(kv_dtype) as f64
                / f64::from(model.kv_shards(tp)),
            comm_s_per_token,
            fixed_s: layers * p.layer_fixed_s + comm_latency_s + p.overhead_s,
            one_layer_bytes: model.layer_linear_params_active * bpp / tpf,
            one_layer_flops_per_token: 2.0 * model.layer_linear_params_active / tpf,
            layer_fixed_s: p.layer_fixed_s,
        })
    }

    /// GEMM efficiency relative to its maximum at `tokens` per step, in (0, 1).
    #[inline]
    fn gemm_fraction(&self, tokens: f64) -> f64 {
        1.0 - (-tokens / self.knee_tokens).exp()
    }

    /// Seconds for one iteration; 0 for an empty batch. O(1), allocation-free.
    #[inline]
    pub fn iteration_s(&self, s: &IterationShape) -> f64 {
        let tokens = s.tokens() as f64;
        if tokens <= 0.0 {
            return 0.0;
        }
        let rows = (s.decode_tokens + s.prefill_seqs) as f64;
        let linear_flops = tokens * self.layer_flops_per_token + rows * self.lm_head_flops_per_row;
        let pairs = (s.prefill_attention_pairs + s.decode_context_tokens) as f64;
        let compute_s = linear_flops / (self.compute_flops_per_s * self.gemm_fraction(tokens))
            + pairs * self.attn_flops_per_pair / self.attention_flops_per_s;
        // Expected fraction of routed experts hit by `tokens` independent top-k draws.
        let experts_hit = 1.0 - (tokens * self.ln_expert_miss).exp();
        let kv_tokens = (s.decode_context_tokens + s.prefill_cached_tokens) as f64 + tokens;
        let bytes = self.always_read_bytes
            + self.routed_bytes * experts_hit
            + kv_tokens * self.kv_bytes_per_token;
        let memory_s = bytes / self.mem_bytes_per_s;
        compute_s.max(memory_s) + self.fixed_s + tokens * self.comm_s_per_token
    }

    /// Seconds for the linear ops of one transformer layer on one GPU at `tokens` per step —
    /// the quantity the Vidur profiles measure. Used by the kernel-level calibration.
    pub fn linear_layer_s(&self, tokens: u64) -> f64 {
        let t = tokens.max(1) as f64;
        let compute_s =
            t * self.one_layer_flops_per_token / (self.compute_flops_per_s * self.gemm_fraction(t));
        compute_s.max(self.one_layer_bytes / self.mem_bytes_per_s) + self.layer_fixed_s
    }
}

/// A latency model of one pool.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LatencyModel {
    /// Roofline from the GPU and model catalogs with calibrated efficiencies.
    Roofline(Roofline),
    /// `beta0 + beta1·prefill_tokens + beta2·decode_tokens + beta3·context_tokens`, where
    /// context tokens are the KV tokens read (`decode_context_tokens + prefill_cached_tokens`).
    Linear {
        /// Fixed seconds per iteration.
        beta0_s: f64,
        /// Seconds per prefill token.
        beta1_s_per_prefill_token: f64,
        /// Seconds per decoding sequence.
        beta2_s_per_decode_token: f64,
        /// Seconds per KV token read.
        beta3_s_per_context_token: f64,
    },
}

impl LatencyModel {
    /// A linear model; every coefficient must be finite and non-negative.
    pub fn linear(
        beta0_s: f64,
        beta1: f64,
        beta2: f64,
        beta3: f64,
    ) -> Result<LatencyModel, CatalogError> {
        for (name, v) in [
            ("beta0_s", beta0_s),
            ("beta1_s_per_prefill_token", beta1),
            ("beta2_s_per_decode_token", beta2),
            ("beta3_s_per_context_token", beta3),
        ] {
            check_param(name, v, f64::MAX)?;
        }
        Ok(LatencyModel::Linear {
            beta0_s,
            beta1_s_per_prefill_token: beta1,
            beta2_s_per_decode_token: beta2,
            beta3_s_per_context_token: beta3,
        })
    }

    /// Seconds for one iteration of `shape`; 0 for an empty batch. O(1), allocation-free.
    #[inline]
    pub fn iteration_s(&self, shape: &IterationShape) -> f64 {
        match self {
            LatencyModel::Roofline(r) => r.iteration_s(shape),
            LatencyModel::Linear {
                beta0_s,
                beta1_s_per_prefill_token,
                beta2_s_per_decode_token,
                beta3_s_per_context_token,
            } => {
                if shape.tokens() == 0 {
                    return 0.0;
                }
                beta0_s
                    + beta1_s_per_prefill_token * shape.prefill_tokens as f64
                    + beta2_s_per_decode_token * shape.decode_tokens as f64
                    + beta3_s_per_context_token
                        * (shape.decode_context_tokens + shape.prefill_cached_tokens) as f64
            }
        }
    }

    /// One iteration as simulated time (rounded to the nanosecond).
    #[inline]
    pub fn iteration_time(&self, shape: &IterationShape) -> SimDuration {
        SimDuration::from_secs_f64(self.iteration_s(shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::catalog::Catalog;

    fn roofline(gpu: &str, model: &str, tp: u32, w: Dtype) -> Roofline {
        let c = Catalog::builtin();
        Roofline::new(
            c.gpu(gpu).unwrap(),
            c.model(model).unwrap(),
            tp,
            w,
            Dtype::Bf16,
            &RooflineParams::default(),
        )
        .unwrap()
    }

    #[test]
    fn empty_batch_takes_no_time() {
        let r = roofline("h100", "llama-3-8b", 1, Dtype::Bf16);
        assert_eq!(r.iteration_s(&IterationShape::default()), 0.0);
        let l = LatencyModel::linear(0.01, 1e-4, 1e-3, 1e-6).unwrap();
        assert_eq!(l.iteration_s(&IterationShape::default()), 0.0);
    }

    #[test]
    fn roofline_is_monotone_in_every_field() {
        let r = LatencyModel::Roofline(roofline("h100", "llama-3-8b", 2, Dtype::Bf16));
        let mut prev = 0.0;
        for n in [1u64, 2, 8, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384] {
            let t = r.iteration_s(&IterationShape::prefill_chunk(n, 0));
            assert!(t > prev, "prefill {n}: {t} <= {prev}");
            prev = t;
        }
        prev = 0.0;
        for b in [1u64, 4, 16, 64, 256, 1024] {
            let t = r.iteration_s(&IterationShape::decode(b, b * 1000));
            assert!(t > prev, "decode {b}: {t} <= {prev}");
            prev = t;
        }
        let base = IterationShape {
            prefill_tokens: 100,
            prefill_seqs: 1,
            prefill_attention_pairs: 10_000,
            prefill_cached_tokens: 50,
            decode_tokens: 10,
            decode_context_tokens: 5000,
        };
        let t0 = r.iteration_s(&base);
        for bump in [
            IterationShape { prefill_attention_pairs: 10_000_000, ..base },
            IterationShape { prefill_cached_tokens: 1_000_000, ..base },
            IterationShape { decode_context_tokens: 1_000_000, ..base },
            IterationShape { prefill_seqs: 2, ..base },
        ] {
            assert!(r.iteration_s(&bump) >= t0, "{bump:?}");
        }
    }

    #[test]
    fn small_decode_is_memory_bound() {
        // Llama-3-8B on one H100, batch 1: time ≈ weights / (bw · eta_memory) + fixed.
        let c = Catalog::builtin();
        let (g, m) = (c.gpu("h100").unwrap(), c.model("llama-3-8b").unwrap());
        let p = RooflineParams::default();
        let r = roofline("h100", "llama-3-8b", 1, Dtype::Bf16);
        let t = r.iteration_s(&IterationShape::decode(1, 1000));
        // Untied: the input embedding is not streamed, the LM head is.
        let weights = (m.params_total - m.lm_head_params) * 2.0;
        let expect =
            weights / (g.mem_bw_bytes_per_s * p.eta_memory) + 32.0 * p.layer_fixed_s + p.overhead_s;
        assert!((t / expect - 1.0).abs() < 0.02, "{t} vs {expect}");
        // ~8.3 ms: 5.6 ms streaming 15 GB at 0.86 × 3.35 TB/s, 0.7 ms layer kernels, 2 ms overhead.
        assert!((0.0075..0.009).contains(&t), "{t}");
        // Decode batch 32 with short contexts costs barely more than batch 1 (memory-bound
        // regime); long contexts add their KV reads (32 x 1000 tokens x 128 KiB = 4.2 GB).
        let t32 = r.iteration_s(&IterationShape::decode(32, 32 * 100));
        assert!(t32 < 1.1 * t, "{t32} vs {t}");
    }

    #[test]
    fn large_prefill_is_compute_bound() {
        let c = Catalog::builtin();
        let (g, m) = (c.gpu("h100").unwrap(), c.model("llama-3-8b").unwrap());
        let p = RooflineParams::default();
        let r = roofline("h100", "llama-3-8b", 1, Dtype::Bf16);
        let n = 8192u64;
        let s = IterationShape::prefill_chunk(n, 0);
        let t = r.iteration_s(&s);
        let peak = g.peak_flops_per_s(Dtype::Bf16).unwrap();
        let linear = (n as f64 * 2.0 * 32.0 * m.layer_linear_params_active
            + 2.0 * m.lm_head_params)
            / (peak * p.eta_compute_max);
        let attn = s.prefill_attention_pairs as f64 * m.attn_flops_per_token_per_context_token
            / (peak * p.eta_attention);
        let expect = linear + attn + 32.0 * p.layer_fixed_s + p.overhead_s;
        assert!((t / expect - 1.0).abs() < 0.01, "{t} vs {expect}");
        // Doubling a compute-bound prefill roughly doubles its time (more with attention).
        let t2 = r.iteration_s(&IterationShape::prefill_chunk(2 * n, 0));
        assert!(t2 > 1.9 * t && t2 < 2.4 * t, "{t2} vs {t}");
    }

    #[test]
    fn tensor_parallel_helps_but_less_than_linearly() {
        for shape in [IterationShape::decode(8, 8 * 2000), IterationShape::prefill_chunk(4096, 0)] {
            let t1 = roofline("h100", "llama-3-8b", 1, Dtype::Bf16).iteration_s(&shape);
            let t2 = roofline("h100", "llama-3-8b", 2, Dtype::Bf16).iteration_s(&shape);
            assert!(t2 < t1 && t2 > t1 / 2.0, "{shape:?}: tp1 {t1} tp2 {t2}");
        }
        // Without a scale-up link the all-reduce is slower.
        let s = IterationShape::prefill_chunk(4096, 0);
        let l40s = roofline("l40s", "llama-3-8b", 2, Dtype::Bf16);
        let l40s_1 = roofline("l40s", "llama-3-8b", 1, Dtype::Bf16);
        assert!(l40s.iteration_s(&s) > 0.5 * l40s_1.iteration_s(&s) * 1.05);
    }

    #[test]
    fn fp8_weights_speed_up_memory_bound_decode() {
        let s = IterationShape::decode(1, 1000);
        let bf16 = roofline("h100", "llama-3-70b", 4, Dtype::Bf16);
        let fp8 = roofline("h100", "llama-3-70b", 4, Dtype::Fp8);
        let fixed = bf16.fixed_s;
        assert_eq!(fixed, fp8.fixed_s);
        let ratio = (fp8.iteration_s(&s) - fixed) / (bf16.iteration_s(&s) - fixed);
        assert!((ratio - 0.5).abs() < 0.02, "{ratio}");
        // And compute-bound prefill, through the doubled FP8 peak.
        let p = IterationShape::prefill_chunk(8192, 0);
        assert!(fp8.iteration_s(&p) < 0.6 * bf16.iteration_s(&p));
        // Ampere has no FP8 cores: weight-only FP8 halves bytes but not compute.
        let a_bf16 = roofline("a100", "llama-3-8b", 1, Dtype::Bf16).iteration_s(&p);
        let a_fp8 = roofline("a100", "llama-3-8b", 1, Dtype::Fp8).iteration_s(&p);
        assert!((a_fp8 / a_bf16 - 1.0).abs() < 0.01, "{a_fp8} {a_bf16}");
    }

    #[test]
    fn moe_reads_only_the_experts_it_hits() {
        // DeepSeek-V3 FP8 on 8 x H200: batch 1 streams ~37 B active params worth of weights,
        // a large batch streams nearly all 671 B.
        let r = roofline("h200", "deepseek-v3", 8, Dtype::Fp8);
        let fixed = r.fixed_s;
        let t1 = r.iteration_s(&IterationShape::decode(1, 1000)) - fixed;
        let t256 = r.iteration_s(&IterationShape::decode(256, 256 * 10)) - fixed;
        assert!(t256 > 5.0 * t1, "{t1} {t256}");
        let all = 671e9 / 8.0 / (4.8e12 * 0.86);
        assert!(t256 < 1.2 * all && t1 < 0.15 * all, "{t1} {t256} {all}");
    }

    #[test]
    fn linear_model_reproduces_its_formula() {
        let m = LatencyModel::linear(0.005, 2e-4, 1e-3, 3e-7).unwrap();
        let s = IterationShape {
            prefill_tokens: 100,
            prefill_seqs: 2,
            prefill_attention_pairs: 7,
            prefill_cached_tokens: 40,
            decode_tokens: 8,
            decode_context_tokens: 9000,
        };
        let want = 0.005 + 2e-4 * 100.0 + 1e-3 * 8.0 + 3e-7 * 9040.0;
        assert!((m.iteration_s(&s) - want).abs() < 1e-15);
        assert_eq!(m.iteration_time(&s), SimDuration::from_secs_f64(want));
        assert!(LatencyModel::linear(-1.0, 0.0, 0.0, 0.0)
            .unwrap_err()
            .to_string()
            .contains("beta0_s"));
    }

    #[test]
    fn unsupported_dtype_and_bad_params_are_errors() {
        let c = Catalog::builtin();
        let (t4, m) = (c.gpu("t4").unwrap(), c.model("llama-3.2-1b").unwrap());
        let p = RooflineParams::default();
        assert!(Roofline::new(t4, m, 1, Dtype::Bf16, Dtype::Bf16, &p).is_err());
        assert!(Roofline::new(t4, m, 1, Dtype::Fp16, Dtype::Fp16, &p).is_ok());
        let bad = RooflineParams { eta_memory: 1.5, ..p };
        assert!(Roofline::new(t4, m, 1, Dtype::Fp16, Dtype::Fp16, &bad)
            .unwrap_err()
            .to_string()
            .contains("eta_memory"));
        assert!(Roofline::new(t4, m, 0, Dtype::Fp16, Dtype::Fp16, &p).is_err());
    }

    #[test]
    fn huge_batches_stay_finite_in_constant_time() {
        // O(1): a 10^12-token step costs the same arithmetic as a 1-token step.
        let r = LatencyModel::Roofline(roofline("b200", "llama-3-70b", 8, Dtype::Fp8));
        let s = IterationShape {
            prefill_tokens: 1 << 40,
            prefill_seqs: 1 << 20,
            prefill_attention_pairs: u64::MAX / 4,
            prefill_cached_tokens: 1 << 40,
            decode_tokens: 1 << 30,
            decode_context_tokens: 1 << 50,
        };
        let t = r.iteration_s(&s);
        assert!(t.is_finite() && t > 0.0);
    }

    #[test]
    fn small_models_are_faster_for_downgrade_studies() {
        let s = IterationShape::decode(16, 16 * 2000);
        let small = roofline("l4", "llama-3.2-1b", 1, Dtype::Bf16).iteration_s(&s);
        let big = roofline("l4", "llama-3-8b", 1, Dtype::Bf16).iteration_s(&s);
        assert!(small < big / 3.0, "{small} {big}");
    }
}

/// The calibration report: simulated vs measured times for the points of
/// `../shared/calibration/README.md` §5 and for every row of the copied data sets.
/// `docs/calibration.md` is this module's output; a test keeps the two identical.
#[cfg(test)]
mod calibration {
    use super::*;
    use crate::cluster::catalog::Catalog;

    const VIDUR_CSV: &str = include_str!("../../data/calibration/vidur_linear_op_efficiency.csv");
    const SPLITWISE_CSV: &str =
        include_str!("../../data/calibration/splitwise_llama2_70b_vs_roofline.csv");
    const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/calibration.md");

    /// A Vidur row: GPU prefix, model, tp, tokens and its point.
    type VidurRow = (String, String, u32, u64, Point);

    /// One measured time and what the model says.
    struct Point {
        label: String,
        measured_ms: f64,
        simulated_ms: f64,
        fitted_on: bool,
    }

    impl Point {
        fn error(&self) -> f64 {
            self.simulated_ms / self.measured_ms - 1.0
        }
    }

    fn vidur_gpu(s: &str) -> &'static str {
        if s.starts_with("A100") {
            "A100-80GB-SXM4"
        } else {
            "H100-SXM5-80GB"
        }
    }

    /// Vidur rows: linear ops of one layer on one GPU (FP16). Fitted on Llama-2 at TP 1-2.
    fn vidur_points() -> Vec<VidurRow> {
        let c = Catalog::builtin();
        let mut rdr = csv::Reader::from_reader(VIDUR_CSV.as_bytes());
        let mut out = Vec::new();
        for rec in rdr.records() {
            let r = rec.unwrap();
            let (gpu, model) = (vidur_gpu(&r[0]), r[1].replace("Meta-", ""));
            let tp: u32 = r[2].parse().unwrap();
            let tokens: u64 = r[3].parse().unwrap();
            let measured_ms: f64 = r[4].parse().unwrap();
            let roof = Roofline::new(
                c.gpu(gpu).unwrap(),
                c.model(&model).unwrap(),
                tp,
                Dtype::Fp16,
                Dtype::Fp16,
                &RooflineParams::default(),
            )
            .unwrap();
            let fitted_on = model.starts_with("Llama-2") && tp <= 2;
            let label = format!("Vidur {model} {} TP{tp} linear/layer @ {tokens} tok", &gpu[..4]);
            let p = Point {
                label,
                measured_ms,
                simulated_ms: roof.linear_layer_s(tokens) * 1e3,
                fitted_on,
            };
            out.push((gpu[..4].to_string(), model, tp, tokens, p));
        }
        out
    }

    /// Splitwise rows (Llama-2-70B FP16 on DGX-A100): a prefill of `batch × prompt` tokens and
    /// the mean decode step over 128 generated tokens (mean context `prompt + 64`).
    fn splitwise_points() -> Vec<(u32, u64, u64, Point, Point)> {
        let c = Catalog::builtin();
        let (gpu, model) = (c.gpu("a100-80gb").unwrap(), c.model("llama-2-70b").unwrap());
        let params = RooflineParams::splitwise_dgx_a100_2023();
        let mut rdr = csv::Reader::from_reader(SPLITWISE_CSV.as_bytes());
        let mut out = Vec::new();
        for rec in rdr.records() {
            let r = rec.unwrap();
            let tp: u32 = r[1].parse().unwrap();
            let prompt: u64 = r[2].parse().unwrap();
            let batch: u64 = r[3].parse().unwrap();
            let roof = Roofline::new(gpu, model, tp, Dtype::Fp16, Dtype::Fp16, &params).unwrap();
            let chunk = IterationShape::prefill_chunk(prompt, 0);
            let prefill = IterationShape {
                prefill_tokens: batch * chunk.prefill_tokens,
                prefill_seqs: batch,
                prefill_attention_pairs: batch * chunk.prefill_attention_pairs,
                ..IterationShape::default()
            };
            let decode = IterationShape::decode(batch, batch * (prompt + 64));
            let p = Point {
                label: format!("Splitwise Llama-2-70B A100 TP{tp} prefill {batch}x{prompt}"),
                measured_ms: r[4].parse().unwrap(),
                simulated_ms: roof.iteration_s(&prefill) * 1e3,
                fitted_on: false,
            };
            let d = Point {
                label: format!(
                    "Splitwise Llama-2-70B A100 TP{tp} decode step, batch {batch}, prompt {prompt}"
                ),
                measured_ms: r[7].parse().unwrap(),
                simulated_ms: roof.iteration_s(&decode) * 1e3,
                fitted_on: batch == 1 && tp <= 4,
            };
            out.push((tp, prompt, batch, p, d));
        }
        out
    }

    /// The §5 validation targets 1-3, in the README's order.
    fn section5_points() -> Vec<Point> {
        let mut out = Vec::new();
        let vidur = vidur_points();
        for (gpu, model, tp, tokens) in [
            ("A100", "Llama-3-8B", 1, 1),
            ("A100", "Llama-3-8B", 1, 256),
            ("A100", "Llama-3-8B", 1, 4096),
            ("H100", "Llama-2-70b", 8, 1),
            ("H100", "Llama-2-70b", 8, 4096),
        ] {
            let (.., p) = vidur
                .iter()
                .find(|v| v.0 == gpu && v.1 == model && v.2 == tp && v.3 == tokens)
                .unwrap();
            out.push(Point { label: p.label.clone(), ..*p });
        }
        for (tp, prompt, batch, p, d) in splitwise_points() {
            if tp == 2 && prompt == 2048 && batch == 1 {
                out.push(p);
                out.push(d);
            }
        }
        out
    }

    fn median_abs(points: &[&Point]) -> f64 {
        let mut e: Vec<f64> = points.iter().map(|p| p.error().abs()).collect();
        e.sort_by(f64::total_cmp);
        let n = e.len();
        if n % 2 == 1 {
            e[n / 2]
        } else {
            (e[n / 2 - 1] + e[n / 2]) / 2.0
        }
    }

    fn max_abs(points: &[&Point]) -> f64 {
        points.iter().map(|p| p.error().abs()).fold(0.0, f64::max)
    }

    fn pct(x: f64) -> String {
        format!("{:+.1}%", 100.0 * x)
    }

    /// The whole of `docs/calibration.md`.
    fn report() -> String {
        let p = RooflineParams::default();
        let s = RooflineParams::splitwise_dgx_a100_2023();
        let mut out = String::from(
            "# Latency-model calibration\n\n\
             <!-- Generated by src/cluster/latency.rs (mod calibration). Do not edit by hand:\n\
             regenerate with `ROUTELAB_BLESS=1 CARGO_TARGET_DIR=/tmp/target-lat cargo test --lib calibration`;\n\
             `cargo test` fails while this file differs from what the code computes. -->\n\n\
             The roofline latency model (`src/cluster/latency.rs`) against the measurements in\n\
             `data/calibration/` (copied from `../shared/calibration/`; sources and licences in\n\
             `data/README.md`). Error = simulated / measured − 1.\n\n\
             ## The model and its fit\n\n\
             Per GPU of a `tp` group, one iteration takes\n\
             `max(F_linear / (peak · η_c(T)) + F_attn / (peak · η_attn), bytes / (bw · η_m))\n\
             + layers · t_layer + 2 · layers · (t_ar · log2 tp + 2(tp−1)/tp · hidden · T · 2 B / (link · η_link)) + t_overhead`,\n\
             with `η_c(T) = η_c,max · (1 − exp(−x / x_knee))`, `x = (2T / bytes_per_param) / (peak / bw)`:\n\
             GEMM efficiency rises with the tokens per step `T` and saturates, on a scale set by the\n\
             GPU's ridge point so that one curve serves A100 and H100.\n\n\
             The kernel parameters were fitted by least squares on log time (grid search) to the\n\
             Vidur per-layer linear-op times of **Llama-2-7B and Llama-2-70B at TP 1 and 2 on A100-80GB\n\
             and H100-80GB** (80 of the 240 rows). Everything else in the tables below — Llama-3\n\
             models, TP 4 and 8 — is held out.\n\n",
        );
        out.push_str(&format!(
            "| parameter | value | fitted on |\n|---|---:|---|\n\
             | η_c,max (saturated GEMM efficiency) | {} | Vidur Llama-2 TP 1–2 |\n\
             | x_knee (ridge units) | {} | Vidur Llama-2 TP 1–2 |\n\
             | η_m (weight/KV streaming) | {} | Vidur Llama-2 TP 1–2 |\n\
             | t_layer (fixed time per layer) | {:.0} µs | Vidur Llama-2 TP 1–2 |\n\
             | η_attn (prefill attention) | {} | not fitted (FlashAttention-2 forward: 0.5–0.7 of peak) |\n\
             | η_link (all-reduce bus efficiency) | {} | not fitted (NCCL on NVLink) |\n\
             | t_overhead, t_ar (default, modern stack) | {:.1} ms, {:.0} µs | not fitted (README §5: 1–5 ms with CUDA graphs) |\n\
             | t_overhead, t_ar (`splitwise_dgx_a100_2023`) | {:.1} ms, {:.0} µs | Splitwise TP 2 and TP 4 batch-1 decode steps |\n\n",
            p.eta_compute_max,
            p.knee_x,
            p.eta_memory,
            p.layer_fixed_s * 1e6,
            p.eta_attention,
            p.eta_link,
            p.overhead_s * 1e3,
            p.allreduce_latency_s * 1e6,
            s.overhead_s * 1e3,
            s.allreduce_latency_s * 1e6,
        ));
        out.push_str(
            "Vidur points compare one layer's linear ops (QKV, O, MLP) on one GPU, FP16; Splitwise\n\
             points compare whole iterations of Llama-2-70B FP16 on DGX-A100 with the\n\
             `splitwise_dgx_a100_2023` overhead and all-reduce latency (that 2023 stack has a\n\
             per-iteration floor a modern engine does not; the default parameters keep only 2 ms).\n\
             A decode point is the mean step over 128 generated tokens, so its context is taken as\n\
             `prompt + 64`. The H100 Splitwise rows are withheld upstream; H100 is covered by the\n\
             datasheet and the kernel table only.\n\n\
             ## Calibration points (README §5, targets 1–3)\n\n\
             | # | point | measured ms | simulated ms | error | in fit set |\n|---:|---|---:|---:|---:|---|\n",
        );
        let pts = section5_points();
        for (i, p) in pts.iter().enumerate() {
            out.push_str(&format!(
                "| {} | {} | {:.3} | {:.3} | {} | {} |\n",
                i + 1,
                p.label,
                p.measured_ms,
                p.simulated_ms,
                pct(p.error()),
                if p.fitted_on { "yes" } else { "no" }
            ));
        }
        let refs: Vec<&Point> = pts.iter().collect();
        out.push_str(&format!(
            "\n**Median absolute error: {:.1}%** (acceptance: at most 15%); largest {:.1}%.\n\n\
             Target 4 of §5 (KV capacity) is a unit test in `src/cluster/catalog.rs`\n\
             (`kv_capacity_llama3_8b_on_one_h100`).\n\n",
            100.0 * median_abs(&refs),
            100.0 * max_abs(&refs)
        ));
        out.push_str(
            "## Every row of the data sets\n\n\
             | data set | rows | in fit set | median abs error | max abs error |\n|---|---:|---|---:|---:|\n",
        );
        let vidur = vidur_points();
        let sw = splitwise_points();
        let mut groups: Vec<(String, Vec<&Point>, &str)> = Vec::new();
        let vg = |f: &dyn Fn(&VidurRow) -> bool| -> Vec<&Point> {
            vidur.iter().filter(|v| f(v)).map(|v| &v.4).collect()
        };
        groups.push(("Vidur, Llama-2 TP 1–2 (fit set)".into(), vg(&|v| v.4.fitted_on), "yes"));
        groups.push((
            "Vidur, Llama-2 TP 4–8".into(),
            vg(&|v| v.1.starts_with("Llama-2") && v.2 > 2),
            "no",
        ));
        groups.push((
            "Vidur, Llama-3-8B / 70B (A100), all TP".into(),
            vg(&|v| v.1.starts_with("Llama-3")),
            "no",
        ));
        groups.push(("Vidur, all rows".into(), vg(&|_| true), "partly"));
        for tp in [2u32, 4, 8] {
            let d: Vec<&Point> = sw.iter().filter(|r| r.0 == tp).map(|r| &r.4).collect();
            let fit = if tp <= 4 { "batch-1 rows" } else { "no" };
            groups.push((format!("Splitwise TP {tp} decode steps"), d, fit));
            let pf: Vec<&Point> = sw
                .iter()
                .filter(|r| r.0 == tp && r.3.simulated_ms < 5.0 * r.3.measured_ms)
                .map(|r| &r.3)
                .collect();
            groups.push((format!("Splitwise TP {tp} prefills"), pf, "no"));
        }
        for (name, pts, fit) in &groups {
            out.push_str(&format!(
                "| {name} | {} | {fit} | {:.1}% | {:.1}% |\n",
                pts.len(),
                100.0 * median_abs(pts),
                100.0 * max_abs(pts)
            ));
        }
        out.push_str(
            "\nOne Splitwise prefill row (TP 2, 64 × 512 tokens: 794 ms measured, 9× faster than the\n\
             same data set's 32 × 512 row) is an upstream outlier and is left out of the prefill\n\
             rows above. Known gaps, visible in the table: Splitwise's TP 4–8 prefills scale worse\n\
             than a roofline with one link efficiency predicts (that stack's large-message\n\
             all-reduce), its decode steps grow with batch faster than KV reads explain, and the\n\
             efficiency knee (128–512 tokens per step) is where the kernel fit is weakest.\n",
        );
        out
    }

    #[test]
    fn calibration_median_abs_error_is_within_15_percent() {
        let pts = section5_points();
        assert_eq!(pts.len(), 7);
        for p in &pts {
            println!(
                "{:<70} {:>10.3} {:>10.3} {:>7}",
                p.label,
                p.measured_ms,
                p.simulated_ms,
                pct(p.error())
            );
        }
        let refs: Vec<&Point> = pts.iter().collect();
        let median = median_abs(&refs);
        println!("median absolute error {:.1}%", 100.0 * median);
        assert!(median <= 0.15, "median absolute error {median}");
    }

    #[test]
    fn calibration_held_out_kernel_rows_stay_close() {
        let vidur = vidur_points();
        let held: Vec<&Point> = vidur.iter().filter(|v| !v.4.fitted_on).map(|v| &v.4).collect();
        assert_eq!(held.len(), 160);
        assert!(median_abs(&held) <= 0.10, "{}", median_abs(&held));
    }

    #[test]
    fn calibration_doc_is_current() {
        let want = report();
        if std::env::var_os("ROUTELAB_BLESS").is_some() {
            std::fs::write(DOC_PATH, &want).unwrap();
        }
        let have = std::fs::read_to_string(DOC_PATH).unwrap_or_default();
        assert!(
            have == want,
            "docs/calibration.md is stale; regenerate with \
             `ROUTELAB_BLESS=1 cargo test --lib calibration`"
        );
    }
}
