// The trainer's own CUDA kernels (interface: ../fused_kernels.h).
//
// LayerNorm for training under bf16 autocast. PyTorch's kernels run it in
// the input's dtype (autocast: fp32), so the next matrix product casts the
// output to bf16 and its backward casts the gradient back, and its
// gamma/beta gradient kernel reads the whole [rows, n] input again at a
// fraction of the memory bandwidth (~1.8 ms of a 31 ms `base` step on an
// H100). Here one warp owns a row: the forward writes bf16 directly, and
// the backward computes dx and accumulates the gamma/beta gradients in
// registers in the same pass over dy and x; each block then writes one
// partial row and a second kernel sums the partials in a fixed order.
//
// The same kernels with kAdd also take the residual add that precedes a
// pre-LN block's LayerNorm: h = x + a + bias (a: the last branch's product
// without its bias) is written with the LayerNorm's output in one pass, and
// the backward adds the gradient h receives from the residual's later use
// to the LayerNorm's and sums the bias gradient from it, all in the same
// pass (no separate residual add, gradient accumulation or bias reduction).
//
// RMSNorm (Llama blocks) the same way, for any width that is a multiple of
// 8 up to 1024: a lane's last group of columns may lie past the row's end
// and is skipped.
//
// CastTensors: autocast casts each fp32 weight to bf16 for its product (one
// launch per weight) and casts its gradient back (one more); the trainer
// can instead convert all the blocks' weights in one launch each way.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../fused_kernels.h"

namespace rlaif::trainer::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kVec = 8;            // elements per lane per 16-byte bf16 access
constexpr int kForwardWarps = 8;   // rows per forward block
constexpr int kBackwardWarps = 4;  // warps per backward block
constexpr int kSumColumns = 32;    // partial-sum kernel: a block's columns
constexpr int kSumRowThreads = 8;  // and its threads along the partials

__device__ __forceinline__ void Load8(const __nv_bfloat16* p, float* out) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

__device__ __forceinline__ void Load8(const float* p, float* out) {
  const float4 a = reinterpret_cast<const float4*>(p)[0];
  const float4 b = reinterpret_cast<const float4*>(p)[1];
  out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w;
  out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
}

__device__ __forceinline__ void Store8(__nv_bfloat16* p, const float* v) {
  uint4 raw;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = raw;
}

__device__ __forceinline__ void Store8(float* p, const float* v) {
  reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

// v as a T holds it: bf16 rounds each value, float keeps it.
template <typename T>
__device__ __forceinline__ void RoundTo(float* v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
#pragma unroll
    for (int k = 0; k < kVec; ++k) v[k] = __bfloat162float(__float2bfloat16_rn(v[k]));
  }
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Lane `lane`'s j-th group of 8 columns.
__device__ __forceinline__ int Column(int j, int lane) { return (j * kWarp + lane) * kVec; }

// With kAdd the row is first h = x + (a + add_bias) (a bf16, add_bias [n]
// float), rounded to T and written to h; the statistics are those of h as
// stored, which is what the backward reads.
template <typename T, int V, bool kAdd>
__global__ void LayerNormForwardKernel(const T* __restrict__ x, const __nv_bfloat16* __restrict__ a,
                                       const float* __restrict__ add_bias,
                                       const float* __restrict__ gamma,
                                       const float* __restrict__ beta, int64_t rows, float eps,
                                       T* __restrict__ h, __nv_bfloat16* __restrict__ y,
                                       float* __restrict__ mean_out, float* __restrict__ rstd_out) {
  constexpr int n = V * kVec * kWarp;
  const int lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kForwardWarps + threadIdx.x / kWarp;
  if (row >= rows) return;  // the whole warp: a row is one warp's
  const T* xr = x + row * n;
  float v[V][kVec];
  float sum = 0;
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int c = Column(j, lane);
    Load8(xr + c, v[j]);
    if constexpr (kAdd) {
      float av[kVec], bv[kVec];
      Load8(a + row * n + c, av);
      Load8(add_bias + c, bv);
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[j][k] += av[k] + bv[k];
      RoundTo<T>(v[j]);
      Store8(h + row * n + c, v[j]);
    }
#pragma unroll
    for (int k = 0; k < kVec; ++k) sum += v[j][k];
  }
  const float mean = WarpSum(sum) / n;
  float squares = 0;  // two passes over registers: no cancellation
#pragma unroll
  for (int j = 0; j < V; ++j) {
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const float d = v[j][k] - mean;
      squares += d * d;
    }
  }
  const float rstd = rsqrtf(WarpSum(squares) / n + eps);
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int c = Column(j, lane);
    float g[kVec], b[kVec], out[kVec];
    Load8(gamma + c, g);
    Load8(beta + c, b);
#pragma unroll
    for (int k = 0; k < kVec; ++k) out[k] = (v[j][k] - mean) * rstd * g[k] + b[k];
    Store8(y + row * n + c, out);
  }
  if (lane == 0) {
    mean_out[row] = mean;
    rstd_out[row] = rstd;
  }
}

// Sums the block's warps' register accumulators `acc` (one row of n per
// warp) through `shared` ([kBackwardWarps * n]) into out[0, n).
template <int V>
__device__ __forceinline__ void BlockPartial(const float (&acc)[V][kVec], float* shared,
                                             float* out) {
  constexpr int n = V * kVec * kWarp;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
#pragma unroll
  for (int j = 0; j < V; ++j) Store8(shared + warp * n + Column(j, lane), acc[j]);
  __syncthreads();
  for (int c = threadIdx.x; c < n; c += blockDim.x) {
    float total = 0;
#pragma unroll
    for (int w = 0; w < kBackwardWarps; ++w) total += shared[w * n + c];
    out[c] = total;
  }
  __syncthreads();  // before the next call overwrites `shared`
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma;
// dgamma = sum over rows of dy * xhat, dbeta = sum of dy. Block b writes its
// rows' sums to partial_gamma[b] and partial_beta[b] ([gridDim.x, n]).
// With kAdd, x is the forward's h and the gradient h receives elsewhere,
// dh_in (null: none), is added: dx = dh_in + that, stored in T and, when
// da is not null, also in bf16 to da (a's gradient); its column sums go to
// partial_bias[b] (add_bias's gradient).
template <typename T, int V, bool kAdd>
__global__ void LayerNormBackwardKernel(
    const __nv_bfloat16* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ dh_in,
    const float* __restrict__ gamma, const float* __restrict__ mean, const float* __restrict__ rstd,
    int64_t rows, T* __restrict__ dx, __nv_bfloat16* __restrict__ da,
    float* __restrict__ partial_gamma, float* __restrict__ partial_beta,
    float* __restrict__ partial_bias) {
  constexpr int n = V * kVec * kWarp;
  __shared__ __align__(16) float shared[kBackwardWarps * n];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  float acc_gamma[V][kVec], acc_beta[V][kVec], acc_bias[kAdd ? V : 1][kVec];
#pragma unroll
  for (int j = 0; j < V; ++j) {
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      acc_gamma[j][k] = acc_beta[j][k] = 0;
      if constexpr (kAdd) acc_bias[j][k] = 0;
    }
  }
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kBackwardWarps;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kBackwardWarps + warp; row < rows;
       row += stride) {
    const float mu = mean[row], rs = rstd[row];
    float xhat[V][kVec], g[V][kVec];
    float sum_g = 0, sum_gx = 0;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int c = Column(j, lane);
      float d[kVec], w[kVec];
      Load8(x + row * n + c, xhat[j]);
      Load8(dy + row * n + c, d);
      Load8(gamma + c, w);  // 3 KB for n = 768: stays in L1
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        xhat[j][k] = (xhat[j][k] - mu) * rs;
        g[j][k] = d[k] * w[k];
        sum_g += g[j][k];
        sum_gx += g[j][k] * xhat[j][k];
        acc_gamma[j][k] += d[k] * xhat[j][k];
        acc_beta[j][k] += d[k];
      }
    }
    const float mean_g = WarpSum(sum_g) / n, mean_gx = WarpSum(sum_gx) / n;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int64_t offset = row * n + Column(j, lane);
      float out[kVec];
#pragma unroll
      for (int k = 0; k < kVec; ++k) out[k] = rs * (g[j][k] - mean_g - xhat[j][k] * mean_gx);
      if constexpr (kAdd) {
        if (dh_in != nullptr) {
          float other[kVec];
          Load8(dh_in + offset, other);
#pragma unroll
          for (int k = 0; k < kVec; ++k) out[k] += other[k];
        }
#pragma unroll
        for (int k = 0; k < kVec; ++k) acc_bias[j][k] += out[k];
        if (da != nullptr) Store8(da + offset, out);
      }
      Store8(dx + offset, out);
    }
  }
  BlockPartial<V>(acc_gamma, shared, partial_gamma + static_cast<int64_t>(blockIdx.x) * n);
  BlockPartial<V>(acc_beta, shared, partial_beta + static_cast<int64_t>(blockIdx.x) * n);
  if constexpr (kAdd) {
    BlockPartial<V>(acc_bias, shared, partial_bias + static_cast<int64_t>(blockIdx.x) * n);
  }
}

// Up to three column sums in one launch: blockIdx.y picks the array.
struct PartialSums {
  const float* partial[3];  // [parts, n] each
  float* out[3];            // [n] each
};

// out[c] = sum over p < parts of partial[p, c], for gridDim.y (1 to 3)
// arrays at once. Each column's order is fixed: deterministic.
__global__ void SumPartialsKernel(PartialSums sums, int parts, int n) {
  __shared__ float shared[kSumRowThreads][kSumColumns + 1];
  // Selects, not sums.partial[blockIdx.y]: a dynamic index would copy the
  // parameter struct to local memory.
  const unsigned which = blockIdx.y;
  const float* partial =
      which == 0 ? sums.partial[0] : (which == 1 ? sums.partial[1] : sums.partial[2]);
  const int c = blockIdx.x * kSumColumns + threadIdx.x;
  float total = 0;
  if (c < n) {
    for (int p = threadIdx.y; p < parts; p += kSumRowThreads)
      total += partial[static_cast<int64_t>(p) * n + c];
  }
  shared[threadIdx.y][threadIdx.x] = total;
  __syncthreads();
  if (threadIdx.y == 0 && c < n) {
    float sum = 0;
#pragma unroll
    for (int r = 0; r < kSumRowThreads; ++r) sum += shared[r][threadIdx.x];
    (which == 0 ? sums.out[0] : (which == 1 ? sums.out[1] : sums.out[2]))[c] = sum;
  }
}

// ---- RMSNorm (Llama blocks) ---------------------------------------------------

// RMSNorm over rows of n elements, n a multiple of 8 in (256 (V - 1), 256 V]:
// lane `lane` owns the 8-column groups Column(j, lane) < n. y = x * rstd * w
// (bf16), rstd = 1 / sqrt(mean(x^2) + eps) per row (float).
template <typename T, int V>
__global__ void RmsNormForwardKernel(const T* __restrict__ x, const float* __restrict__ w,
                                     int64_t rows, int n, float eps, __nv_bfloat16* __restrict__ y,
                                     float* __restrict__ rstd_out) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kForwardWarps + threadIdx.x / kWarp;
  if (row >= rows) return;  // the whole warp: a row is one warp's
  const T* xr = x + row * n;
  float v[V][kVec];
  float squares = 0;
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int c = Column(j, lane);
    if (c < n) {
      Load8(xr + c, v[j]);
#pragma unroll
      for (int k = 0; k < kVec; ++k) squares += v[j][k] * v[j][k];
    }
  }
  const float rstd = rsqrtf(WarpSum(squares) / n + eps);
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int c = Column(j, lane);
    if (c < n) {
      float g[kVec], out[kVec];
      Load8(w + c, g);
#pragma unroll
      for (int k = 0; k < kVec; ++k) out[k] = v[j][k] * rstd * g[k];
      Store8(y + row * n + c, out);
    }
  }
  if (lane == 0) rstd_out[row] = rstd;
}

// dx = rstd * (g - xhat * mean(g * xhat)), g = dy * w, xhat = x * rstd;
// dw = sum over rows of dy * xhat: block b writes its rows' sums to
// partial_w[b] ([gridDim.x, n]; columns past n of a lane's last group are
// never touched).
template <typename T, int V>
__global__ void RmsNormBackwardKernel(const __nv_bfloat16* __restrict__ dy, const T* __restrict__ x,
                                      const float* __restrict__ w, const float* __restrict__ rstd,
                                      int64_t rows, int n, T* __restrict__ dx,
                                      float* __restrict__ partial_w) {
  __shared__ __align__(16) float shared[kBackwardWarps * V * kVec * kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  float acc[V][kVec];
#pragma unroll
  for (int j = 0; j < V; ++j) {
#pragma unroll
    for (int k = 0; k < kVec; ++k) acc[j][k] = 0;
  }
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kBackwardWarps;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kBackwardWarps + warp; row < rows;
       row += stride) {
    const float rs = rstd[row];
    float xhat[V][kVec], g[V][kVec];
    float sum_gx = 0;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int c = Column(j, lane);
      if (c < n) {
        float d[kVec], s[kVec];
        Load8(x + row * n + c, xhat[j]);
        Load8(dy + row * n + c, d);
        Load8(w + c, s);
#pragma unroll
        for (int k = 0; k < kVec; ++k) {
          xhat[j][k] *= rs;
          g[j][k] = d[k] * s[k];
          sum_gx += g[j][k] * xhat[j][k];
          acc[j][k] += d[k] * xhat[j][k];
        }
      }
    }
    const float mean_gx = WarpSum(sum_gx) / n;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int c = Column(j, lane);
      if (c < n) {
        float out[kVec];
#pragma unroll
        for (int k = 0; k < kVec; ++k) out[k] = rs * (g[j][k] - xhat[j][k] * mean_gx);
        Store8(dx + row * n + c, out);
      }
    }
  }
  // The block's warps' sums, column by column, in a fixed order.
  constexpr int width = V * kVec * kWarp;
#pragma unroll
  for (int j = 0; j < V; ++j) Store8(shared + warp * width + Column(j, lane), acc[j]);
  __syncthreads();
  float* out = partial_w + static_cast<int64_t>(blockIdx.x) * n;
  for (int c = threadIdx.x; c < n; c += blockDim.x) {
    float total = 0;
#pragma unroll
    for (int wi = 0; wi < kBackwardWarps; ++wi) total += shared[wi * width + c];
    out[c] = total;
  }
}

// ---- bias + GELU ----------------------------------------------------------

constexpr int kGeluThreads = 256;

// As PyTorch's GELU kernels compute it, in float.
__device__ __forceinline__ float Gelu(float x, bool tanh_approx) {
  if (tanh_approx) {
    const float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(inner));
  }
  return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}

__device__ __forceinline__ float GeluGrad(float x, bool tanh_approx) {
  if (tanh_approx) {
    const float k = 0.7978845608028654f, c = 0.044715f;
    const float t = tanhf(k * (x + c * x * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * c * x * x);
  }
  const float cdf = 0.5f * (1.0f + erff(x * 0.7071067811865476f));
  const float pdf = 0.3989422804014327f * expf(-0.5f * x * x);
  return cdf + x * pdf;
}

__global__ void BiasGeluForwardKernel(const __nv_bfloat16* __restrict__ h,
                                      const float* __restrict__ bias, int64_t vectors, int n_vec,
                                      bool tanh_approx, __nv_bfloat16* __restrict__ y) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < vectors;
       i += stride) {
    float v[kVec], b[kVec];
    Load8(h + i * kVec, v);
    Load8(bias + static_cast<int>(i % n_vec) * kVec, b);
#pragma unroll
    for (int k = 0; k < kVec; ++k) v[k] = Gelu(v[k] + b[k], tanh_approx);
    Store8(y + i * kVec, v);
  }
}

// Thread (blockIdx.x, threadIdx.x) owns 8 columns; block row blockIdx.y
// takes rows blockIdx.y, + gridDim.y, ... and writes the columns' sums of
// dh (as stored, bf16) to partial[blockIdx.y].
__global__ void BiasGeluBackwardKernel(const __nv_bfloat16* __restrict__ dy,
                                       const __nv_bfloat16* __restrict__ h,
                                       const float* __restrict__ bias, int64_t rows, int n_vec,
                                       bool tanh_approx, __nv_bfloat16* __restrict__ dh,
                                       float* __restrict__ partial) {
  const int cv = blockIdx.x * blockDim.x + threadIdx.x;
  if (cv >= n_vec) return;  // no block-wide synchronisation below
  const int n = n_vec * kVec, c = cv * kVec;
  float b[kVec], acc[kVec];
  Load8(bias + c, b);
#pragma unroll
  for (int k = 0; k < kVec; ++k) acc[k] = 0;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t offset = r * n + c;
    float d[kVec], x[kVec];
    Load8(dy + offset, d);
    Load8(h + offset, x);
#pragma unroll
    for (int k = 0; k < kVec; ++k) d[k] *= GeluGrad(x[k] + b[k], tanh_approx);
    Store8(dh + offset, d);
#pragma unroll
    for (int k = 0; k < kVec; ++k) acc[k] += __bfloat162float(__float2bfloat16_rn(d[k]));
  }
  Store8(partial + static_cast<int64_t>(blockIdx.y) * n + c, acc);
}

int SmCount() {
  static const int sms = [] {
    int device = 0, count = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
      return 108;
    }
    return count;
  }();
  return sms;
}

// The backward grid: column blocks x row blocks, ~8 blocks per SM.
dim3 BiasGeluBackwardGrid(int64_t rows, int n) {
  const int n_vec = n / kVec;
  const int columns = (n_vec + kGeluThreads - 1) / kGeluThreads;
  int64_t parts = std::max<int64_t>(1, static_cast<int64_t>(SmCount()) * 8 / columns);
  parts = std::min<int64_t>(parts, std::max<int64_t>(rows, 1));
  return dim3(static_cast<unsigned>(columns), static_cast<unsigned>(parts));
}

// Backward blocks: enough to fill the device a few times over, few enough
// that the partial sums stay small next to the [rows, n] tensors.
int BackwardBlocks(int64_t rows) {
  const int sms = SmCount();
  const int64_t wanted = (rows + kBackwardWarps - 1) / kBackwardWarps;
  const int64_t cap = static_cast<int64_t>(sms) * 8;
  return static_cast<int>(wanted < cap ? (wanted > 0 ? wanted : 1) : cap);
}

// One LayerNorm's arguments; `a` set: with the residual add (kAdd).
struct ForwardArgs {
  const void* x;
  const void* a;  // bf16, or null
  const float* add_bias;
  const float* gamma;
  const float* beta;
  int64_t rows;
  float eps;
  void* h;  // kAdd: x + a + add_bias, in x's dtype
  void* y;  // bf16
  float* mean;
  float* rstd;
};

struct BackwardArgs {
  const void* dy;     // bf16
  const void* x;      // kAdd: the forward's h
  const void* dh_in;  // kAdd: h's other gradient, in x's dtype, or null
  const float* gamma;
  const float* mean;
  const float* rstd;
  int64_t rows;
  void* dx;  // x's dtype
  void* da;  // kAdd, float x: a's gradient in bf16 (bf16 x: dx is), else null
  float* dgamma;
  float* dbeta;
  float* dbias;  // kAdd
  float* workspace;
};

template <typename T, int V, bool kAdd>
int Forward(const ForwardArgs& f, cudaStream_t stream) {
  const int64_t blocks = (f.rows + kForwardWarps - 1) / kForwardWarps;
  LayerNormForwardKernel<T, V, kAdd>
      <<<static_cast<unsigned>(blocks), kForwardWarps * kWarp, 0, stream>>>(
          static_cast<const T*>(f.x), static_cast<const __nv_bfloat16*>(f.a), f.add_bias, f.gamma,
          f.beta, f.rows, f.eps, static_cast<T*>(f.h), static_cast<__nv_bfloat16*>(f.y), f.mean,
          f.rstd);
  return static_cast<int>(cudaGetLastError());
}

template <typename T, int V, bool kAdd>
int Backward(const BackwardArgs& b, cudaStream_t stream) {
  constexpr int n = V * kVec * kWarp;
  const int blocks = BackwardBlocks(b.rows);
  const int64_t part = static_cast<int64_t>(blocks) * n;
  float* partial_gamma = b.workspace;
  float* partial_beta = b.workspace + part;
  float* partial_bias = kAdd ? b.workspace + 2 * part : nullptr;
  LayerNormBackwardKernel<T, V, kAdd><<<blocks, kBackwardWarps * kWarp, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(b.dy), static_cast<const T*>(b.x),
      static_cast<const T*>(b.dh_in), b.gamma, b.mean, b.rstd, b.rows, static_cast<T*>(b.dx),
      static_cast<__nv_bfloat16*>(b.da), partial_gamma, partial_beta, partial_bias);
  int status = static_cast<int>(cudaGetLastError());
  if (status != 0) return status;
  const dim3 grid((n + kSumColumns - 1) / kSumColumns, kAdd ? 3 : 2);
  const PartialSums sums = {{partial_gamma, partial_beta, partial_bias},
                            {b.dgamma, b.dbeta, b.dbias}};
  SumPartialsKernel<<<grid, dim3(kSumColumns, kSumRowThreads), 0, stream>>>(sums, blocks, n);
  return static_cast<int>(cudaGetLastError());
}

template <int V>
int ForwardOfWidth(const ForwardArgs& f, bool x_bf16, cudaStream_t s) {
  using Bf16 = __nv_bfloat16;
  if (f.a != nullptr) return x_bf16 ? Forward<Bf16, V, true>(f, s) : Forward<float, V, true>(f, s);
  return x_bf16 ? Forward<Bf16, V, false>(f, s) : Forward<float, V, false>(f, s);
}

template <int V>
int BackwardOfWidth(const BackwardArgs& b, bool add, bool x_bf16, cudaStream_t s) {
  using Bf16 = __nv_bfloat16;
  if (add) return x_bf16 ? Backward<Bf16, V, true>(b, s) : Backward<float, V, true>(b, s);
  return x_bf16 ? Backward<Bf16, V, false>(b, s) : Backward<float, V, false>(b, s);
}

// n = 256 V, V in [1, 4]; else cudaErrorInvalidValue.
int RunForward(const ForwardArgs& f, bool x_bf16, int n, cudaStream_t s) {
  if (f.rows == 0) return 0;
  switch (n) {
    case 256:
      return ForwardOfWidth<1>(f, x_bf16, s);
    case 512:
      return ForwardOfWidth<2>(f, x_bf16, s);
    case 768:
      return ForwardOfWidth<3>(f, x_bf16, s);
    case 1024:
      return ForwardOfWidth<4>(f, x_bf16, s);
    default:
      return static_cast<int>(cudaErrorInvalidValue);
  }
}

int RunBackward(const BackwardArgs& b, bool add, bool x_bf16, int n, cudaStream_t s) {
  if (n != 256 && n != 512 && n != 768 && n != 1024) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (b.rows == 0) {  // no rows: zero gradients
    for (float* p : {b.dgamma, b.dbeta, add ? b.dbias : nullptr}) {
      if (p != nullptr) cudaMemsetAsync(p, 0, sizeof(float) * n, s);
    }
    return static_cast<int>(cudaGetLastError());
  }
  switch (n) {
    case 256:
      return BackwardOfWidth<1>(b, add, x_bf16, s);
    case 512:
      return BackwardOfWidth<2>(b, add, x_bf16, s);
    case 768:
      return BackwardOfWidth<3>(b, add, x_bf16, s);
    default:
      return BackwardOfWidth<4>(b, add, x_bf16, s);
  }
}

template <typename T, int V>
int RmsForward(const void* x, const float* w, int64_t rows, int n, float eps, void* y, float* rstd,
               cudaStream_t stream) {
  const int64_t blocks = (rows + kForwardWarps - 1) / kForwardWarps;
  RmsNormForwardKernel<T, V><<<static_cast<unsigned>(blocks), kForwardWarps * kWarp, 0, stream>>>(
      static_cast<const T*>(x), w, rows, n, eps, static_cast<__nv_bfloat16*>(y), rstd);
  return static_cast<int>(cudaGetLastError());
}

template <typename T, int V>
int RmsBackward(const void* dy, const void* x, const float* w, const float* rstd, int64_t rows,
                int n, void* dx, float* dw, float* workspace, cudaStream_t stream) {
  const int blocks = BackwardBlocks(rows);
  RmsNormBackwardKernel<T, V><<<blocks, kBackwardWarps * kWarp, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(dy), static_cast<const T*>(x), w, rstd, rows, n,
      static_cast<T*>(dx), workspace);
  const int status = static_cast<int>(cudaGetLastError());
  if (status != 0) return status;
  const PartialSums sums = {{workspace, nullptr, nullptr}, {dw, nullptr, nullptr}};  // grid.y 1
  SumPartialsKernel<<<dim3((n + kSumColumns - 1) / kSumColumns, 1),
                      dim3(kSumColumns, kSumRowThreads), 0, stream>>>(sums, blocks, n);
  return static_cast<int>(cudaGetLastError());
}

// ---- Casting many tensors at once ---------------------------------------------

constexpr int kCastThreads = 256;
constexpr int64_t kCastChunk = kCastThreads * kVec * 2;  // elements per block
constexpr int kCastMaxTensors = 64;

// A launch's tensors (passed by value: ~2.1 KB of the 4 KB of parameters).
// Block b converts chunk b - first_block[t] of the tensor t with
// first_block[t] <= b < first_block[t + 1].
struct CastArgs {
  const void* src[kCastMaxTensors];
  void* dst[kCastMaxTensors];
  int64_t numel[kCastMaxTensors];
  int64_t first_block[kCastMaxTensors + 1];
  uint64_t vector_ok;  // bit t: both of tensor t's pointers 16-byte aligned
  int count;
};

__device__ __forceinline__ void Convert(float from, __nv_bfloat16* to) {
  *to = __float2bfloat16_rn(from);
}
__device__ __forceinline__ void Convert(__nv_bfloat16 from, float* to) {
  *to = __bfloat162float(from);
}

__device__ __forceinline__ void StoreCast8(float* p, const float* v) { Store8(p, v); }

// Store8's rounding, with the bits packed by value: Store8's bf16 form
// (an address-taken uint4) costs this kernel a stack frame.
__device__ __forceinline__ void StoreCast8(__nv_bfloat16* p, const float* v) {
  uint32_t word[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    word[k] =
        static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(v[2 * k]))) |
        (static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(v[2 * k + 1]))) << 16);
  }
  *reinterpret_cast<uint4*>(p) = make_uint4(word[0], word[1], word[2], word[3]);
}

template <typename S, typename D>
__global__ void __launch_bounds__(kCastThreads) CastKernel(const CastArgs args) {
  const int64_t block = blockIdx.x;
  int lo = 0, hi = args.count - 1;  // the last t with first_block[t] <= block
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (args.first_block[mid] <= block) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const int t = lo;
  const int64_t start = (block - args.first_block[t]) * kCastChunk;
  const int64_t end = min(start + kCastChunk, args.numel[t]);
  const S* src = static_cast<const S*>(args.src[t]);
  D* dst = static_cast<D*>(args.dst[t]);
  // start is a multiple of kVec: with aligned pointers, every whole group
  // of kVec elements is 16-byte aligned.
  const bool vector = (args.vector_ok >> t) & 1;
  for (int64_t i = start + static_cast<int64_t>(threadIdx.x) * kVec; i < end;
       i += kCastThreads * kVec) {
    if (vector && i + kVec <= end) {
      float v[kVec];
      Load8(src + i, v);
      StoreCast8(dst + i, v);
    } else {
      for (int64_t k = i; k < min(i + kVec, end); ++k) Convert(src[k], dst + k);
    }
  }
}

// ---- Rotary position embedding ---------------------------------------------------

constexpr int kRotaryThreads = 256;

// One thread per group of 8 columns j in [0, half) of a row, and the 8 at
// j + half: `backward` applies the transposed rotation (dy in, dx out).
template <typename In, typename Out, bool kBackward>
__global__ void __launch_bounds__(kRotaryThreads)
    RotaryKernel(const In* __restrict__ in, const float* __restrict__ cos,
                 const float* __restrict__ sin, int64_t groups, int heads, int positions, int hd,
                 Out* __restrict__ out) {
  const int half = hd / 2, per_row = half / kVec;
  for (int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; g < groups;
       g += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = g / per_row;
    const int j = static_cast<int>(g % per_row) * kVec;
    const int64_t t = (row / heads) % positions;
    float a[kVec], b[kVec], c[kVec], s[kVec];
    Load8(in + row * hd + j, a);
    Load8(in + row * hd + j + half, b);
    Load8(cos + t * hd + j, c);
    Load8(sin + t * hd + j, s);
    float lo[kVec], hi[kVec];
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      if constexpr (kBackward) {
        lo[k] = a[k] * c[k] + b[k] * s[k];
        hi[k] = b[k] * c[k] - a[k] * s[k];
      } else {
        lo[k] = a[k] * c[k] - b[k] * s[k];
        hi[k] = b[k] * c[k] + a[k] * s[k];
      }
    }
    StoreCast8(out + row * hd + j, lo);
    StoreCast8(out + row * hd + j + half, hi);
  }
}

bool RotaryShape(int64_t rows, int heads, int positions, int hd) {
  return rows >= 0 && heads > 0 && positions > 0 && hd >= 16 && hd % 16 == 0 && hd <= 1024;
}

int64_t RotaryGrid(int64_t groups) {
  return std::max<int64_t>(1, std::min<int64_t>((groups + kRotaryThreads - 1) / kRotaryThreads,
                                                static_cast<int64_t>(SmCount()) * 16));
}

// The rotary kernel for `rows` rows: forward reads x (float, or bf16 when
// `x_bf16`) and writes bf16; backward reads bf16 dy and writes dx (bf16 when
// `x_bf16`, else float).
template <bool kBackward>
int LaunchRotary(const void* in, bool x_bf16, const float* cos, const float* sin, int64_t rows,
                 int heads, int positions, int hd, void* out, void* stream) {
  if (!RotaryShape(rows, heads, positions, hd)) return static_cast<int>(cudaErrorInvalidValue);
  const int64_t groups = rows * (hd / 2 / kVec);
  if (groups == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  const auto grid = static_cast<unsigned>(RotaryGrid(groups));
  using Bf16 = __nv_bfloat16;
  using X = float;  // x's dtype when not bf16
  if (x_bf16) {
    RotaryKernel<Bf16, Bf16, kBackward>
        <<<grid, kRotaryThreads, 0, s>>>(static_cast<const Bf16*>(in), cos, sin, groups, heads,
                                         positions, hd, static_cast<Bf16*>(out));
  } else if constexpr (kBackward) {
    RotaryKernel<Bf16, X, true><<<grid, kRotaryThreads, 0, s>>>(
        static_cast<const Bf16*>(in), cos, sin, groups, heads, positions, hd, static_cast<X*>(out));
  } else {
    RotaryKernel<X, Bf16, false><<<grid, kRotaryThreads, 0, s>>>(
        static_cast<const X*>(in), cos, sin, groups, heads, positions, hd, static_cast<Bf16*>(out));
  }
  return static_cast<int>(cudaGetLastError());
}

// RMSNorm's widths: a multiple of 8 in [8, 1024].
bool RmsWidth(int n) { return n >= kVec && n <= 4 * kVec * kWarp && n % kVec == 0; }

}  // namespace

int KernelsUsable() {
  // Fails with cudaErrorInvalidDeviceFunction (or NoKernelImageForDevice)
  // where the build holds no code this device can run.
  cudaFuncAttributes attributes;
  const cudaError_t status =
      cudaFuncGetAttributes(&attributes, LayerNormForwardKernel<__nv_bfloat16, 3, false>);
  if (status != cudaSuccess) cudaGetLastError();  // not sticky: clear it
  return static_cast<int>(status);
}

int LayerNormForward(const void* x, bool x_bf16, const float* gamma, const float* beta,
                     int64_t rows, int n, float eps, void* y, float* mean, float* rstd,
                     void* stream) {
  const ForwardArgs f = {x, nullptr, nullptr, gamma, beta, rows, eps, nullptr, y, mean, rstd};
  return RunForward(f, x_bf16, n, static_cast<cudaStream_t>(stream));
}

int64_t LayerNormBackwardWorkspace(int64_t rows, int n) {
  return 2 * static_cast<int64_t>(BackwardBlocks(rows)) * n;
}

int LayerNormBackward(const void* dy, const void* x, bool x_bf16, const float* gamma,
                      const float* mean, const float* rstd, int64_t rows, int n, void* dx,
                      float* dgamma, float* dbeta, float* workspace, void* stream) {
  BackwardArgs b = {};
  b.dy = dy, b.x = x, b.gamma = gamma, b.mean = mean, b.rstd = rstd, b.rows = rows;
  b.dx = dx, b.dgamma = dgamma, b.dbeta = dbeta, b.workspace = workspace;
  return RunBackward(b, /*add=*/false, x_bf16, n, static_cast<cudaStream_t>(stream));
}

int AddLayerNormForward(const void* x, bool x_bf16, const void* a, const float* add_bias,
                        const float* gamma, const float* beta, int64_t rows, int n, float eps,
                        void* h, void* y, float* mean, float* rstd, void* stream) {
  if (a == nullptr || add_bias == nullptr || h == nullptr) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  const ForwardArgs f = {x, a, add_bias, gamma, beta, rows, eps, h, y, mean, rstd};
  return RunForward(f, x_bf16, n, static_cast<cudaStream_t>(stream));
}

int64_t AddLayerNormBackwardWorkspace(int64_t rows, int n) {
  return 3 * static_cast<int64_t>(BackwardBlocks(rows)) * n;
}

int AddLayerNormBackward(const void* dy, const void* dh, const void* h, bool h_bf16,
                         const float* gamma, const float* mean, const float* rstd, int64_t rows,
                         int n, void* dx, void* da, float* dgamma, float* dbeta, float* dbias,
                         float* workspace, void* stream) {
  if (dbias == nullptr || (!h_bf16 && da == nullptr)) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  BackwardArgs b = {};
  b.dy = dy, b.x = h, b.dh_in = dh, b.gamma = gamma, b.mean = mean, b.rstd = rstd, b.rows = rows;
  b.dx = dx, b.da = h_bf16 ? nullptr : da, b.dgamma = dgamma, b.dbeta = dbeta, b.dbias = dbias;
  b.workspace = workspace;
  return RunBackward(b, /*add=*/true, h_bf16, n, static_cast<cudaStream_t>(stream));
}

int RmsNormForward(const void* x, bool x_bf16, const float* w, int64_t rows, int n, float eps,
                   void* y, float* rstd, void* stream) {
  if (!RmsWidth(n)) return static_cast<int>(cudaErrorInvalidValue);
  if (rows == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  using Bf16 = __nv_bfloat16;
  switch ((n + kVec * kWarp - 1) / (kVec * kWarp)) {
    case 1:
      return x_bf16 ? RmsForward<Bf16, 1>(x, w, rows, n, eps, y, rstd, s)
                    : RmsForward<float, 1>(x, w, rows, n, eps, y, rstd, s);
    case 2:
      return x_bf16 ? RmsForward<Bf16, 2>(x, w, rows, n, eps, y, rstd, s)
                    : RmsForward<float, 2>(x, w, rows, n, eps, y, rstd, s);
    case 3:
      return x_bf16 ? RmsForward<Bf16, 3>(x, w, rows, n, eps, y, rstd, s)
                    : RmsForward<float, 3>(x, w, rows, n, eps, y, rstd, s);
    default:
      return x_bf16 ? RmsForward<Bf16, 4>(x, w, rows, n, eps, y, rstd, s)
                    : RmsForward<float, 4>(x, w, rows, n, eps, y, rstd, s);
  }
}

int64_t RmsNormBackwardWorkspace(int64_t rows, int n) {
  return static_cast<int64_t>(BackwardBlocks(rows)) * n;
}

int RmsNormBackward(const void* dy, const void* x, bool x_bf16, const float* w, const float* rstd,
                    int64_t rows, int n, void* dx, float* dw, float* workspace, void* stream) {
  if (!RmsWidth(n)) return static_cast<int>(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  if (rows == 0) {  // no rows: a zero gradient
    cudaMemsetAsync(dw, 0, sizeof(float) * n, s);
    return static_cast<int>(cudaGetLastError());
  }
  using Bf16 = __nv_bfloat16;
#define RLAIF_RMS_BACKWARD(V)                                                         \
  return x_bf16 ? RmsBackward<Bf16, V>(dy, x, w, rstd, rows, n, dx, dw, workspace, s) \
                : RmsBackward<float, V>(dy, x, w, rstd, rows, n, dx, dw, workspace, s)
  switch ((n + kVec * kWarp - 1) / (kVec * kWarp)) {
    case 1:
      RLAIF_RMS_BACKWARD(1);
    case 2:
      RLAIF_RMS_BACKWARD(2);
    case 3:
      RLAIF_RMS_BACKWARD(3);
    default:
      RLAIF_RMS_BACKWARD(4);
  }
#undef RLAIF_RMS_BACKWARD
}

int BiasGeluForward(const void* h, const float* bias, int64_t rows, int n, bool tanh, void* y,
                    void* stream) {
  if (n <= 0 || n % kVec != 0) return static_cast<int>(cudaErrorInvalidValue);
  const int64_t vectors = rows * (n / kVec);
  if (vectors == 0) return 0;
  const int64_t blocks = std::min<int64_t>((vectors + kGeluThreads - 1) / kGeluThreads,
                                           static_cast<int64_t>(SmCount()) * 16);
  BiasGeluForwardKernel<<<static_cast<unsigned>(blocks), kGeluThreads, 0,
                          static_cast<cudaStream_t>(stream)>>>(static_cast<const __nv_bfloat16*>(h),
                                                               bias, vectors, n / kVec, tanh,
                                                               static_cast<__nv_bfloat16*>(y));
  return static_cast<int>(cudaGetLastError());
}

int64_t BiasGeluBackwardWorkspace(int64_t rows, int n) {
  return static_cast<int64_t>(BiasGeluBackwardGrid(rows, n).y) * n;
}

int BiasGeluBackward(const void* dy, const void* h, const float* bias, int64_t rows, int n,
                     bool tanh, void* dh, float* dbias, float* workspace, void* stream) {
  if (n <= 0 || n % kVec != 0) return static_cast<int>(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  if (rows == 0) {
    cudaMemsetAsync(dbias, 0, sizeof(float) * n, s);
    return static_cast<int>(cudaGetLastError());
  }
  const dim3 grid = BiasGeluBackwardGrid(rows, n);
  BiasGeluBackwardKernel<<<grid, kGeluThreads, 0, s>>>(
      static_cast<const __nv_bfloat16*>(dy), static_cast<const __nv_bfloat16*>(h), bias, rows,
      n / kVec, tanh, static_cast<__nv_bfloat16*>(dh), workspace);
  const int status = static_cast<int>(cudaGetLastError());
  if (status != 0) return status;
  const PartialSums sums = {{workspace, nullptr, nullptr}, {dbias, nullptr, nullptr}};  // grid.y 1
  SumPartialsKernel<<<dim3((n + kSumColumns - 1) / kSumColumns, 1),
                      dim3(kSumColumns, kSumRowThreads), 0, s>>>(sums, static_cast<int>(grid.y), n);
  return static_cast<int>(cudaGetLastError());
}

int RotaryForward(const void* x, bool x_bf16, const float* cos, const float* sin, int64_t rows,
                  int heads, int positions, int hd, void* y, void* stream) {
  return LaunchRotary<false>(x, x_bf16, cos, sin, rows, heads, positions, hd, y, stream);
}

int RotaryBackward(const void* dy, const float* cos, const float* sin, int64_t rows, int heads,
                   int positions, int hd, bool dx_bf16, void* dx, void* stream) {
  return LaunchRotary<true>(dy, dx_bf16, cos, sin, rows, heads, positions, hd, dx, stream);
}

int CastTensors(const CastJob* jobs, int count, bool to_bf16, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  int next = 0;
  while (next < count) {
    CastArgs args = {};
    int64_t blocks = 0;
    for (; next < count && args.count < kCastMaxTensors; ++next) {
      const CastJob& job = jobs[next];
      if (job.numel <= 0) continue;
      if (job.src == nullptr || job.dst == nullptr) return static_cast<int>(cudaErrorInvalidValue);
      const int t = args.count++;
      args.src[t] = job.src;
      args.dst[t] = job.dst;
      args.numel[t] = job.numel;
      args.first_block[t] = blocks;
      blocks += (job.numel + kCastChunk - 1) / kCastChunk;
      if ((reinterpret_cast<uintptr_t>(job.src) | reinterpret_cast<uintptr_t>(job.dst)) % 16 == 0) {
        args.vector_ok |= uint64_t{1} << t;
      }
    }
    if (args.count == 0) break;  // only empty jobs were left
    args.first_block[args.count] = blocks;
    if (blocks > 0x7fffffff) return static_cast<int>(cudaErrorInvalidValue);
    if (to_bf16) {
      CastKernel<float, __nv_bfloat16><<<static_cast<unsigned>(blocks), kCastThreads, 0, s>>>(args);
    } else {
      CastKernel<__nv_bfloat16, float><<<static_cast<unsigned>(blocks), kCastThreads, 0, s>>>(args);
    }
    const int status = static_cast<int>(cudaGetLastError());
    if (status != 0) return status;
  }
  return 0;
}

}  // namespace rlaif::trainer::cuda
