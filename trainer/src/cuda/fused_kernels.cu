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
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

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

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Lane `lane`'s j-th group of 8 columns.
__device__ __forceinline__ int Column(int j, int lane) { return (j * kWarp + lane) * kVec; }

template <typename T, int V>
__global__ void LayerNormForwardKernel(const T* __restrict__ x, const float* __restrict__ gamma,
                                       const float* __restrict__ beta, int64_t rows, float eps,
                                       __nv_bfloat16* __restrict__ y, float* __restrict__ mean_out,
                                       float* __restrict__ rstd_out) {
  constexpr int n = V * kVec * kWarp;
  const int lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kForwardWarps + threadIdx.x / kWarp;
  if (row >= rows) return;  // the whole warp: a row is one warp's
  const T* xr = x + row * n;
  float v[V][kVec];
  float sum = 0;
#pragma unroll
  for (int j = 0; j < V; ++j) {
    Load8(xr + Column(j, lane), v[j]);
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
template <typename T, int V>
__global__ void LayerNormBackwardKernel(const __nv_bfloat16* __restrict__ dy,
                                        const T* __restrict__ x, const float* __restrict__ gamma,
                                        const float* __restrict__ mean,
                                        const float* __restrict__ rstd, int64_t rows,
                                        T* __restrict__ dx, float* __restrict__ partial_gamma,
                                        float* __restrict__ partial_beta) {
  constexpr int n = V * kVec * kWarp;
  __shared__ __align__(16) float shared[kBackwardWarps * n];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  float acc_gamma[V][kVec], acc_beta[V][kVec];
#pragma unroll
  for (int j = 0; j < V; ++j) {
#pragma unroll
    for (int k = 0; k < kVec; ++k) acc_gamma[j][k] = acc_beta[j][k] = 0;
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
      float out[kVec];
#pragma unroll
      for (int k = 0; k < kVec; ++k) out[k] = rs * (g[j][k] - mean_g - xhat[j][k] * mean_gx);
      Store8(dx + row * n + Column(j, lane), out);
    }
  }
  BlockPartial<V>(acc_gamma, shared, partial_gamma + static_cast<int64_t>(blockIdx.x) * n);
  BlockPartial<V>(acc_beta, shared, partial_beta + static_cast<int64_t>(blockIdx.x) * n);
}

// Up to two column sums in one launch: blockIdx.y picks the pair.
struct PartialSums {
  const float* partial[2];  // [parts, n] each
  float* out[2];            // [n] each
};

// out[c] = sum over p < parts of partial[p, c], for gridDim.y (1 or 2)
// arrays at once. Each column's order is fixed: deterministic.
__global__ void SumPartialsKernel(PartialSums sums, int parts, int n) {
  __shared__ float shared[kSumRowThreads][kSumColumns + 1];
  // A select, not sums.partial[blockIdx.y]: a dynamic index would copy the
  // parameter struct to local memory.
  const float* partial = blockIdx.y == 0 ? sums.partial[0] : sums.partial[1];
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
    (blockIdx.y == 0 ? sums.out[0] : sums.out[1])[c] = sum;
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

template <typename T, int V>
int Forward(const void* x, const float* gamma, const float* beta, int64_t rows, float eps, void* y,
            float* mean, float* rstd, cudaStream_t stream) {
  const int64_t blocks = (rows + kForwardWarps - 1) / kForwardWarps;
  LayerNormForwardKernel<T, V><<<static_cast<unsigned>(blocks), kForwardWarps * kWarp, 0, stream>>>(
      static_cast<const T*>(x), gamma, beta, rows, eps, static_cast<__nv_bfloat16*>(y), mean, rstd);
  return static_cast<int>(cudaGetLastError());
}

template <typename T, int V>
int Backward(const void* dy, const void* x, const float* gamma, const float* mean,
             const float* rstd, int64_t rows, void* dx, float* dgamma, float* dbeta,
             float* workspace, cudaStream_t stream) {
  constexpr int n = V * kVec * kWarp;
  const int blocks = BackwardBlocks(rows);
  float* partial_gamma = workspace;
  float* partial_beta = workspace + static_cast<int64_t>(blocks) * n;
  LayerNormBackwardKernel<T, V><<<blocks, kBackwardWarps * kWarp, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(dy), static_cast<const T*>(x), gamma, mean, rstd, rows,
      static_cast<T*>(dx), partial_gamma, partial_beta);
  int status = static_cast<int>(cudaGetLastError());
  if (status != 0) return status;
  const dim3 grid((n + kSumColumns - 1) / kSumColumns, 2);
  const PartialSums sums = {{partial_gamma, partial_beta}, {dgamma, dbeta}};
  SumPartialsKernel<<<grid, dim3(kSumColumns, kSumRowThreads), 0, stream>>>(sums, blocks, n);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int KernelsUsable() {
  // Fails with cudaErrorInvalidDeviceFunction (or NoKernelImageForDevice)
  // where the build holds no code this device can run.
  cudaFuncAttributes attributes;
  const cudaError_t status =
      cudaFuncGetAttributes(&attributes, LayerNormForwardKernel<__nv_bfloat16, 3>);
  if (status != cudaSuccess) cudaGetLastError();  // not sticky: clear it
  return static_cast<int>(status);
}

int LayerNormForward(const void* x, bool x_bf16, const float* gamma, const float* beta,
                     int64_t rows, int n, float eps, void* y, float* mean, float* rstd,
                     void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (rows == 0) return 0;
#define RLAIF_LN_FORWARD(V)                                                              \
  return x_bf16 ? Forward<__nv_bfloat16, V>(x, gamma, beta, rows, eps, y, mean, rstd, s) \
                : Forward<float, V>(x, gamma, beta, rows, eps, y, mean, rstd, s)
  switch (n) {
    case 256:
      RLAIF_LN_FORWARD(1);
    case 512:
      RLAIF_LN_FORWARD(2);
    case 768:
      RLAIF_LN_FORWARD(3);
    case 1024:
      RLAIF_LN_FORWARD(4);
    default:
      return static_cast<int>(cudaErrorInvalidValue);
  }
#undef RLAIF_LN_FORWARD
}

int64_t LayerNormBackwardWorkspace(int64_t rows, int n) {
  return 2 * static_cast<int64_t>(BackwardBlocks(rows)) * n;
}

int LayerNormBackward(const void* dy, const void* x, bool x_bf16, const float* gamma,
                      const float* mean, const float* rstd, int64_t rows, int n, void* dx,
                      float* dgamma, float* dbeta, float* workspace, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (rows == 0) {  // no rows: zero gradients
    cudaMemsetAsync(dgamma, 0, sizeof(float) * n, s);
    cudaMemsetAsync(dbeta, 0, sizeof(float) * n, s);
    return static_cast<int>(cudaGetLastError());
  }
#define RLAIF_LN_BACKWARD(V)                                                                 \
  return x_bf16                                                                              \
             ? Backward<__nv_bfloat16, V>(dy, x, gamma, mean, rstd, rows, dx, dgamma, dbeta, \
                                          workspace, s)                                      \
             : Backward<float, V>(dy, x, gamma, mean, rstd, rows, dx, dgamma, dbeta, workspace, s)
  switch (n) {
    case 256:
      RLAIF_LN_BACKWARD(1);
    case 512:
      RLAIF_LN_BACKWARD(2);
    case 768:
      RLAIF_LN_BACKWARD(3);
    case 1024:
      RLAIF_LN_BACKWARD(4);
    default:
      return static_cast<int>(cudaErrorInvalidValue);
  }
#undef RLAIF_LN_BACKWARD
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
  const PartialSums sums = {{workspace, nullptr}, {dbias, nullptr}};  // one array: grid.y 1
  SumPartialsKernel<<<dim3((n + kSumColumns - 1) / kSumColumns, 1),
                      dim3(kSumColumns, kSumRowThreads), 0, s>>>(sums, static_cast<int>(grid.y), n);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace rlaif::trainer::cuda
