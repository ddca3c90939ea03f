/**
 * Plain TypeScript twins of the GPT-2 forward kernels (kernels/lm_*.wgsl): the readable
 * definition each kernel is tested against. Row-major f32 arrays throughout.
 *
 * Shape legend: rows = tokens (sequences of `seq` laid end to end), d = width,
 * hd = head width, V = vocabulary.
 */

/** GELU-tanh constant sqrt(2/π) (Hendrycks & Gimpel; GPT-2's "gelu_new"). */
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
/** Cubic coefficient of the GELU-tanh approximation (same source). */
const GELU_CUBIC = 0.044715;

/** x[n, :] = wte[tok[n], :] + wpe[pos[n], :]; wte [V, d], wpe [P, d] → [rows, d]. */
export function embeddingRef(
  tok: ArrayLike<number>,
  pos: ArrayLike<number>,
  wte: Float32Array,
  wpe: Float32Array,
  d: number,
): Float32Array {
  const out = new Float32Array(tok.length * d);
  for (let n = 0; n < tok.length; n++) {
    for (let c = 0; c < d; c++) out[n * d + c] = wte[tok[n] * d + c] + wpe[pos[n] * d + c];
  }
  return out;
}

/** Row-wise layer norm with biased variance (torch's layer_norm): x [rows, d] → [rows, d]. */
export function layerNormRef(
  x: Float32Array,
  gamma: Float32Array,
  beta: Float32Array,
  d: number,
  eps: number,
): Float32Array {
  const rows = x.length / d;
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let c = 0; c < d; c++) mean += x[r * d + c];
    mean /= d;
    let v = 0;
    for (let c = 0; c < d; c++) v += (x[r * d + c] - mean) ** 2;
    const inv = 1 / Math.sqrt(v / d + eps);
    for (let c = 0; c < d; c++) out[r * d + c] = (x[r * d + c] - mean) * inv * gamma[c] + beta[c];
  }
  return out;
}

/** a [M, K] @ W (+ bias [N]); W is [K, N] (HF Conv1D) or [N, K] when transB → [M, N]. */
export function matmulRef(
  a: Float32Array,
  w: Float32Array,
  bias: Float32Array | undefined,
  s: { M: number; N: number; K: number; transB?: boolean },
): Float32Array {
  const { M, N, K } = s;
  const out = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += a[m * K + k] * (s.transB ? w[n * K + k] : w[k * N + n]);
      out[m * N + n] = acc + (bias ? bias[n] : 0);
    }
  }
  return out;
}

/**
 * Causal multi-head attention: qkv [rows, 3d] (q | k | v, head h at columns h·hd..) →
 * [rows, d]; row n attends to rows of its own sequence at positions ≤ its own.
 */
export function attentionRef(
  qkv: Float32Array,
  s: { rows: number; seq: number; nHead: number; headDim: number },
): Float32Array {
  const { rows, seq, nHead, headDim: hd } = s;
  const d = nHead * hd;
  const out = new Float32Array(rows * d);
  const scale = 1 / Math.sqrt(hd);
  for (let n = 0; n < rows; n++) {
    const first = n - (n % seq);
    for (let h = 0; h < nHead; h++) {
      const scores: number[] = [];
      for (let j = first; j <= n; j++) {
        let dot = 0;
        for (let c = 0; c < hd; c++) {
          dot += qkv[n * 3 * d + h * hd + c] * qkv[j * 3 * d + d + h * hd + c];
        }
        scores.push(dot * scale);
      }
      const m = Math.max(...scores);
      const p = scores.map((x) => Math.exp(x - m));
      const z = p.reduce((a, b) => a + b, 0);
      for (let c = 0; c < hd; c++) {
        let acc = 0;
        for (let j = first; j <= n; j++) acc += p[j - first] * qkv[j * 3 * d + 2 * d + h * hd + c];
        out[n * d + h * hd + c] = acc / z;
      }
    }
  }
  return out;
}

/** GELU-tanh, elementwise. */
export function geluRef(x: Float32Array): Float32Array {
  return x.map((v) => 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + GELU_CUBIC * v * v * v))));
}

/** x [rows, cols] + bias [cols] broadcast over rows. */
export function biasRef(x: Float32Array, bias: Float32Array): Float32Array {
  return x.map((v, i) => v + bias[i % bias.length]);
}

/** x + y, elementwise. */
export function residualRef(x: Float32Array, y: Float32Array): Float32Array {
  return x.map((v, i) => v + y[i]);
}

/**
 * Per row of logits [rows, V]: logsumexp and the negative log-likelihood of `target[row]`
 * (so log-softmax = logits - logsumexp).
 */
export function crossEntropyRef(
  logits: Float32Array,
  target: ArrayLike<number>,
  vocab: number,
): { logsumexp: Float64Array; nll: Float64Array } {
  const rows = target.length;
  const logsumexp = new Float64Array(rows);
  const nll = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let c = 0; c < vocab; c++) m = Math.max(m, logits[r * vocab + c]);
    let s = 0;
    for (let c = 0; c < vocab; c++) s += Math.exp(logits[r * vocab + c] - m);
    logsumexp[r] = m + Math.log(s);
    nll[r] = logsumexp[r] - logits[r * vocab + target[r]];
  }
  return { logsumexp, nll };
}

/**
 * The whole GPT-2 forward pass from the twins above, for tests at odd sizes: hook activations
 * (by name, [T, d]) and the mean next-token loss of one window of tokens.
 */
export function referenceForward(
  w: {
    wte: Float32Array;
    wpe: Float32Array;
    blocks: {
      ln1Gamma: Float32Array;
      ln1Beta: Float32Array;
      attnW: Float32Array;
      attnB: Float32Array;
      attnProjW: Float32Array;
      attnProjB: Float32Array;
      ln2Gamma: Float32Array;
      ln2Beta: Float32Array;
      fcW: Float32Array;
      fcB: Float32Array;
      projW: Float32Array;
      projB: Float32Array;
    }[];
    lnfGamma: Float32Array;
    lnfBeta: Float32Array;
  },
  c: { nHead: number; nEmbd: number; nInner: number; vocabSize: number; layerNormEpsilon: number },
  tokens: number[],
): { hooks: Map<string, Float32Array>; loss: number } {
  const T = tokens.length;
  const d = c.nEmbd;
  const eps = c.layerNormEpsilon;
  const hooks = new Map<string, Float32Array>();
  let x = embeddingRef(tokens, tokens.map((_, i) => i), w.wte, w.wpe, d);
  w.blocks.forEach((b, l) => {
    hooks.set(`resid_pre.${l}`, x);
    const h = layerNormRef(x, b.ln1Gamma, b.ln1Beta, d, eps);
    const qkv = matmulRef(h, b.attnW, b.attnB, { M: T, N: 3 * d, K: d });
    const att = attentionRef(qkv, { rows: T, seq: T, nHead: c.nHead, headDim: d / c.nHead });
    const a = matmulRef(att, b.attnProjW, b.attnProjB, { M: T, N: d, K: d });
    hooks.set(`attn_out.${l}`, a);
    x = residualRef(x, a);
    const h2 = layerNormRef(x, b.ln2Gamma, b.ln2Beta, d, eps);
    const f = geluRef(matmulRef(h2, b.fcW, b.fcB, { M: T, N: c.nInner, K: d }));
    const m = matmulRef(f, b.projW, b.projB, { M: T, N: d, K: c.nInner });
    hooks.set(`mlp_out.${l}`, m);
    x = residualRef(x, m);
    hooks.set(`resid_post.${l}`, x);
  });
  const hf = layerNormRef(x, w.lnfGamma, w.lnfBeta, d, eps);
  const logits = matmulRef(hf, w.wte, undefined, { M: T, N: c.vocabSize, K: d, transB: true });
  const { nll } = crossEntropyRef(logits, tokens.slice(1).concat([0]), c.vocabSize);
  const loss = nll.subarray(0, T - 1).reduce((s, v) => s + v, 0) / (T - 1);
  return { hooks, loss };
}
