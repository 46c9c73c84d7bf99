// tq::linear_i8 -- the engine's int8 linear (any number of rows; tuned for decode), with AVX-512 VNNI.
//
//   y[m, n] = sx[m] * sw[n] * (sum_k q[m, k] * w[n, k] - zp[m] * rs[n]) + bias[n]
//
// tq::linear_i8_ex additionally applies SwiGLU (glu: x = [gate, up] -> silu(gate) * up) and/or Qwen's RMSNorm
// (norm_w, eps) to each row of x first, and/or adds a residual [M, N] to y: the decode step's norm -> linear,
// swiglu -> linear and linear -> residual add, each in one call.
//
// w: int8 weights with one scale per output row (sw), packed as [N/16][K/4][16][4] so that one 64-byte load
// holds 4 consecutive k of 16 outputs (vpdpbusd multiplies it with 4 broadcast activation bytes into 16 int32
// sums: no horizontal reductions, one sequential stream per thread). rs[n] = sum_k w[n, k].
// x: fp32 rows, quantized per row to uint8 with a zero point (full 8-bit range; the range includes 0).
// Threads: at::parallel_for over blocks of 16 outputs, i.e. torch's own OpenMP pool (this file is linked
// against the libgomp that torch loaded). Built and loaded by _kernels.py; the Python side checks the CPU.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdint>
#include <vector>

namespace {

#ifndef TQ_PREFETCH
#define TQ_PREFETCH 4096
#endif
// bytes ahead in the weight stream, into L2 (0: none). Measured on the 97 Qwen2.5-0.5B-shape matrices, 2 threads:
// 4096 into L2 was the best or within noise of it in every round against 0, 512, 2048 into L1 and 8192 into L2.
constexpr int64_t kPrefetch = TQ_PREFETCH;

// q[0..K4*4) = round(x / s) + z clamped to [0, 255]; zero padding past K (its weights are 0).
void quant_row(const float* x, int64_t K, int64_t K4, uint8_t* q, float* scale, int32_t* zero) {
  __m512 mn = _mm512_setzero_ps(), mx = mn;
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 v = _mm512_loadu_ps(x + k);
    mn = _mm512_min_ps(mn, v);
    mx = _mm512_max_ps(mx, v);
  }
  float lo = _mm512_reduce_min_ps(mn), hi = _mm512_reduce_max_ps(mx);
  for (; k < K; k++) {
    lo = std::min(lo, x[k]);
    hi = std::max(hi, x[k]);
  }
  float s = (hi - lo) / 255.f;
  if (!(s > 0.f) || !std::isfinite(s)) s = 1.f;
  int32_t z = static_cast<int32_t>(std::nearbyint(-lo / s));
  z = std::min(255, std::max(0, z));
  const float inv = 1.f / s;
  const __m512 vinv = _mm512_set1_ps(inv);
  const __m512i vz = _mm512_set1_epi32(z), v0 = _mm512_setzero_si512(), v255 = _mm512_set1_epi32(255);
  for (k = 0; k + 16 <= K; k += 16) {
    __m512i v = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + k), vinv)), vz);
    v = _mm512_min_epi32(_mm512_max_epi32(v, v0), v255);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + k), _mm512_cvtepi32_epi8(v));
  }
  for (; k < K; k++) {
    int32_t v = static_cast<int32_t>(std::nearbyint(x[k] * inv)) + z;
    q[k] = static_cast<uint8_t>(std::min(255, std::max(0, v)));
  }
  for (; k < K4 * 4; k++) q[k] = 0;
  *scale = s;
  *zero = z;
}

// e^x for |x| <= 88 (Cephes' expf polynomial, ~1 ulp), 16 lanes.
inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.f)), _mm512_set1_ps(-88.f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);
}

// out[k] = silu(x[k]) * x[K + k]: the SwiGLU between gate/up and down, fused in front of the down matmul.
void glu_row(const float* x, int64_t K, float* out) {
  const __m512 one = _mm512_set1_ps(1.f);
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    const __m512 g = _mm512_loadu_ps(x + k);
    const __m512 sg = _mm512_div_ps(g, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), g))));
    _mm512_storeu_ps(out + k, _mm512_mul_ps(sg, _mm512_loadu_ps(x + K + k)));
  }
  for (; k < K; k++) out[k] = x[k] / (1.f + std::exp(-x[k])) * x[K + k];
}

// out[k] = w[k] * (x[k] / sqrt(mean(x^2) + eps)): Qwen's RMSNorm in fp32, fused in front of the matmul.
void rms_row(const float* x, const float* w, float eps, int64_t K, float* out) {
  __m512 acc = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    const __m512 v = _mm512_loadu_ps(x + k);
    acc = _mm512_fmadd_ps(v, v, acc);
  }
  float ss = _mm512_reduce_add_ps(acc);
  for (; k < K; k++) ss += x[k] * x[k];
  const float r = 1.f / std::sqrt(ss / static_cast<float>(K) + eps);
  const __m512 vr = _mm512_set1_ps(r);
  for (k = 0; k + 16 <= K; k += 16)
    _mm512_storeu_ps(out + k, _mm512_mul_ps(_mm512_loadu_ps(w + k), _mm512_mul_ps(_mm512_loadu_ps(x + k), vr)));
  for (; k < K; k++) out[k] = w[k] * (x[k] * r);
}

// MT rows x 16 outputs of one weight block; U independent accumulators per row along k.
template <int MT, int U>
inline void block(const int32_t* const* xq, const int8_t* w, int64_t K4, __m512i* out) {
  __m512i acc[MT][U];
  for (int m = 0; m < MT; m++)
    for (int u = 0; u < U; u++) acc[m][u] = _mm512_setzero_si512();
  int64_t k4 = 0;
  for (; k4 + U <= K4; k4 += U) {
    for (int u = 0; u < U; u++) {
      const int8_t* p = w + (k4 + u) * 64;
      if (kPrefetch > 0) _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetch, _MM_HINT_T1);
      const __m512i wv = _mm512_load_si512(p);
      for (int m = 0; m < MT; m++) acc[m][u] = _mm512_dpbusd_epi32(acc[m][u], _mm512_set1_epi32(xq[m][k4 + u]), wv);
    }
  }
  for (; k4 < K4; k4++) {
    const __m512i wv = _mm512_load_si512(w + k4 * 64);
    for (int m = 0; m < MT; m++) acc[m][0] = _mm512_dpbusd_epi32(acc[m][0], _mm512_set1_epi32(xq[m][k4]), wv);
  }
  for (int m = 0; m < MT; m++) {
    __m512i s = acc[m][0];
    for (int u = 1; u < U; u++) s = _mm512_add_epi32(s, acc[m][u]);
    out[m] = s;
  }
}

template <int MT, int U>
void tile(const int32_t* const* xq, const int8_t* w, int64_t K4, const float* sx, const int32_t* zp,
          const float* sw, const int32_t* rs, const float* bias, const float* const* res, float* const* y) {
  __m512i acc[MT];
  block<MT, U>(xq, w, K4, acc);
  const __m512i vrs = _mm512_loadu_si512(rs);
  const __m512 vsw = _mm512_loadu_ps(sw);
  const __m512 vb = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
  for (int m = 0; m < MT; m++) {
    __m512i v = _mm512_sub_epi32(acc[m], _mm512_mullo_epi32(vrs, _mm512_set1_epi32(zp[m])));
    __m512 r = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(vsw, _mm512_set1_ps(sx[m])), vb);
    if (res) r = _mm512_add_ps(_mm512_loadu_ps(res[m]), r);
    _mm512_storeu_ps(y[m], r);
  }
}

// y = [residual +] linear([rmsnorm(] [swiglu(] x [)] [, norm_w, eps)]); with glu, x is [M, 2K] = [gate, up]
at::Tensor linear_i8_ex(const at::Tensor& x_in, const at::Tensor& wp, const at::Tensor& sw, const at::Tensor& rs,
                        const std::optional<at::Tensor>& bias, int64_t n_out, const std::optional<at::Tensor>& norm_w,
                        double eps, const std::optional<at::Tensor>& residual, bool glu) {
  TORCH_CHECK(x_in.dim() == 2, "tq::linear_i8: x must be 2-D [M, K], got ", x_in.sizes());
  TORCH_CHECK(wp.dim() == 3 && wp.size(2) == 64 && wp.scalar_type() == at::kChar && wp.is_contiguous(),
              "tq::linear_i8: packed weight must be contiguous int8 [N/16, K/4, 64]");
  const at::Tensor x = x_in.to(at::kFloat).contiguous();
  const int64_t M = x.size(0), Kin = x.size(1), K = glu ? Kin / 2 : Kin, NB = wp.size(0), K4 = wp.size(1);
  const int64_t NP = NB * 16;
  TORCH_CHECK(!glu || Kin % 2 == 0, "tq::linear_i8: glu needs [gate, up] rows of even width, got ", Kin);
  TORCH_CHECK(K4 == (K + 3) / 4, "tq::linear_i8: x has K=", K, " but the weight was packed for K4=", K4);
  TORCH_CHECK(sw.numel() == NP && rs.numel() == NP && n_out <= NP, "tq::linear_i8: scales/row sums size");
  const float* bp = nullptr;
  at::Tensor b;
  if (bias.has_value()) {
    b = bias->to(at::kFloat).contiguous();
    TORCH_CHECK(b.numel() == NP, "tq::linear_i8: bias must be padded to ", NP);
    bp = b.data_ptr<float>();
  }
  at::Tensor nw, r;
  const float* nwp = nullptr;
  if (norm_w.has_value()) {
    nw = norm_w->to(at::kFloat).contiguous();
    TORCH_CHECK(nw.numel() == K, "tq::linear_i8: norm weight has ", nw.numel(), " elements, x has K=", K);
    nwp = nw.data_ptr<float>();
  }
  const float* rp = nullptr;
  if (residual.has_value()) {
    r = residual->to(at::kFloat).contiguous();
    TORCH_CHECK(r.dim() == 2 && r.size(0) == M && r.size(1) == n_out, "tq::linear_i8: residual must be [M, n_out]");
    if (n_out == NP) rp = r.data_ptr<float>();  // else added after the padded columns are cut
  }
  at::Tensor y = at::empty({M, NP}, x.options());
  std::vector<uint8_t> qbuf(static_cast<size_t>(M * K4 * 4) + 64);
  uint8_t* q0 = qbuf.data();
  std::vector<float> sx(M);
  std::vector<int32_t> zp(M);
  const float* xp = x.data_ptr<float>();
  at::parallel_for(0, M, 16, [&](int64_t m0, int64_t m1) {  // inline below 16 rows (decode)
    std::vector<float> normed(nwp ? K : 0), gated(glu ? K : 0);
    for (int64_t m = m0; m < m1; m++) {
      const float* row = xp + m * Kin;
      if (glu) {
        glu_row(row, K, gated.data());
        row = gated.data();
      }
      if (nwp) {
        rms_row(row, nwp, static_cast<float>(eps), K, normed.data());
        row = normed.data();
      }
      quant_row(row, K, K4, q0 + m * K4 * 4, &sx[m], &zp[m]);
    }
  });
  const int8_t* w = wp.data_ptr<int8_t>();
  const float* swp = sw.data_ptr<float>();
  const int32_t* rsp = rs.data_ptr<int32_t>();
  float* yp = y.data_ptr<float>();
  auto run_block = [&](int64_t bb) {
    const int8_t* wb = w + bb * K4 * 64;
    for (int64_t m0 = 0; m0 < M; m0 += 4) {
      const int mt = static_cast<int>(std::min<int64_t>(4, M - m0));
      const int32_t* xq[4];
      float* yr[4];
      const float* rr[4];
      for (int i = 0; i < mt; i++) {
        xq[i] = reinterpret_cast<const int32_t*>(q0 + (m0 + i) * K4 * 4);
        yr[i] = yp + (m0 + i) * NP + bb * 16;
        rr[i] = rp ? rp + (m0 + i) * NP + bb * 16 : nullptr;
      }
      const float* const* rrs = rp ? rr : nullptr;
      const float* bbp = bp ? bp + bb * 16 : nullptr;
      const float* s = sx.data() + m0;
      const int32_t* z = zp.data() + m0;
      switch (mt) {
        case 1: tile<1, 4>(xq, wb, K4, s, z, swp + bb * 16, rsp + bb * 16, bbp, rrs, yr); break;
        case 2: tile<2, 2>(xq, wb, K4, s, z, swp + bb * 16, rsp + bb * 16, bbp, rrs, yr); break;
        case 3: tile<3, 1>(xq, wb, K4, s, z, swp + bb * 16, rsp + bb * 16, bbp, rrs, yr); break;
        default: tile<4, 1>(xq, wb, K4, s, z, swp + bb * 16, rsp + bb * 16, bbp, rrs, yr); break;
      }
    }
  };
  at::parallel_for(0, NB, 8, [&](int64_t b0, int64_t b1) {
    for (int64_t bb = b0; bb < b1; bb++) run_block(bb);
  });
  if (n_out < NP) {
    y = y.narrow(1, 0, n_out).contiguous();
    if (residual.has_value()) y.add_(r);
  }
  return y;
}

at::Tensor linear_i8(const at::Tensor& x, const at::Tensor& wp, const at::Tensor& sw, const at::Tensor& rs,
                     const std::optional<at::Tensor>& bias, int64_t n_out) {
  return linear_i8_ex(x, wp, sw, rs, bias, n_out, std::nullopt, 0.0, std::nullopt, false);
}

// Decode attention, one new query per row: row b attends to positions 0..len[b]-1 (len = lengths[b], or L):
// out[b, h] = softmax(scale * q[b, h] . k[b, h / group, t]) @ v[b, h / group, t]. fp32, head dim % 16 == 0;
// k and v may be strided views (the engine's KV slots); the inner head-dim axis must be contiguous.
at::Tensor decode_attn(const at::Tensor& q_in, const at::Tensor& k, const at::Tensor& v, double scale,
                       const std::optional<at::Tensor>& lengths) {
  TORCH_CHECK(q_in.dim() == 3 && k.dim() == 4 && v.dim() == 4, "tq::decode_attn: q [B, H, D], k/v [B, G, L, D]");
  TORCH_CHECK(q_in.scalar_type() == at::kFloat && k.scalar_type() == at::kFloat && v.scalar_type() == at::kFloat,
              "tq::decode_attn: fp32 only");
  const at::Tensor q = q_in.contiguous();
  const int64_t B = q.size(0), H = q.size(1), D = q.size(2), G = k.size(1), L = k.size(2);
  TORCH_CHECK(D % 16 == 0 && H % G == 0 && k.size(0) >= B && v.size(0) >= B && v.size(1) == G && v.size(2) == L &&
                  k.size(3) == D && v.size(3) == D && k.stride(3) == 1 && v.stride(3) == 1 && L > 0,
              "tq::decode_attn: shapes q ", q.sizes(), " k ", k.sizes(), " v ", v.sizes());
  TORCH_CHECK(D <= 256, "tq::decode_attn: head dim above 256");
  std::vector<int64_t> lens(B, L);
  if (lengths.has_value()) {
    const at::Tensor ln = lengths->to(at::kLong).contiguous();
    TORCH_CHECK(ln.numel() == B, "tq::decode_attn: lengths must have one entry per row");
    for (int64_t b = 0; b < B; b++) {
      lens[b] = ln.data_ptr<int64_t>()[b];
      TORCH_CHECK(lens[b] >= 1 && lens[b] <= L, "tq::decode_attn: length ", lens[b], " outside 1..", L);
    }
  }
  at::Tensor out = at::empty({B, H, D}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t group = H / G, nd = D / 16;
  const int64_t ks0 = k.stride(0), ks1 = k.stride(1), ks2 = k.stride(2);
  const int64_t vs0 = v.stride(0), vs1 = v.stride(1), vs2 = v.stride(2);
  const float sc = static_cast<float>(scale);
  // one (row, head) pair costs ~4*L*D flops: run serially below ~64k flops of work in all
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, 4 * L * D));
  at::parallel_for(0, B * H, grain, [&](int64_t p0, int64_t p1) {
    std::vector<float> sbuf(static_cast<size_t>(L) + 16);
    float* sp = sbuf.data();
    for (int64_t p = p0; p < p1; p++) {
      const int64_t b = p / H, h = p % H, g = h / group, n = lens[b];
      const float* qh = qp + p * D;
      const float* kb = kp + b * ks0 + g * ks1;
      const float* vb = vp + b * vs0 + g * vs1;
      __m512 qv[16];  // D <= 256 (checked above)
      for (int64_t d = 0; d < nd; d++) qv[d] = _mm512_mul_ps(_mm512_loadu_ps(qh + d * 16), _mm512_set1_ps(sc));
      float mx = -INFINITY;
      for (int64_t t = 0; t < n; t++) {
        const float* kt = kb + t * ks2;
        __m512 acc = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kt));
        for (int64_t d = 1; d < nd; d++) acc = _mm512_fmadd_ps(qv[d], _mm512_loadu_ps(kt + d * 16), acc);
        const float s = _mm512_reduce_add_ps(acc);
        sp[t] = s;
        mx = std::max(mx, s);
      }
      const __m512 vmx = _mm512_set1_ps(mx);
      __m512 vsum = _mm512_setzero_ps();
      int64_t t = 0;
      for (; t + 16 <= n; t += 16) {
        const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(sp + t), vmx));
        _mm512_storeu_ps(sp + t, e);
        vsum = _mm512_add_ps(vsum, e);
      }
      float sum = _mm512_reduce_add_ps(vsum);
      for (; t < n; t++) {
        sp[t] = std::exp(sp[t] - mx);
        sum += sp[t];
      }
      __m512 ov[16];
      for (int64_t d = 0; d < nd; d++) ov[d] = _mm512_setzero_ps();
      for (t = 0; t < n; t++) {
        const __m512 pt = _mm512_set1_ps(sp[t]);
        const float* vt = vb + t * vs2;
        for (int64_t d = 0; d < nd; d++) ov[d] = _mm512_fmadd_ps(pt, _mm512_loadu_ps(vt + d * 16), ov[d]);
      }
      const __m512 inv = _mm512_set1_ps(1.f / sum);
      for (int64_t d = 0; d < nd; d++) _mm512_storeu_ps(op + p * D + d * 16, _mm512_mul_ps(ov[d], inv));
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(tq, m) {
  m.def("linear_i8(Tensor x, Tensor wp, Tensor sw, Tensor rs, Tensor? bias, int n_out) -> Tensor");
  m.def(
      "linear_i8_ex(Tensor x, Tensor wp, Tensor sw, Tensor rs, Tensor? bias, int n_out, Tensor? norm_w, float eps, "
      "Tensor? residual, bool glu=False) -> Tensor");
  m.def("decode_attn(Tensor q, Tensor k, Tensor v, float scale, Tensor? lengths=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(tq, CPU, m) {
  m.impl("linear_i8", TORCH_FN(linear_i8));
  m.impl("linear_i8_ex", TORCH_FN(linear_i8_ex));
  m.impl("decode_attn", TORCH_FN(decode_attn));
}
