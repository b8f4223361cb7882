// The trainer's own CUDA kernels (src/cuda/fused_kernels.cu), built only
// with -DRLAIF_CUDA_KERNELS=ON (nvcc and a CUDA LibTorch). A plain C++
// interface: raw device pointers and a cudaStream_t passed as void*, so
// that the .cu file needs neither LibTorch's headers nor its compiler flags.
// fused_ops.cc is the one caller.
#pragma once

#include <cstdint>

namespace rlaif::trainer::cuda {

// 0 (cudaSuccess) when the current device can run these kernels (the build
// holds code for its architecture), else the CUDA error code.
int KernelsUsable();

// LayerNorm over rows of n = 256 * v elements, v in [1, 4]: x [rows, n]
// float (x_bf16 false) or bf16, gamma and beta [n] float; writes y [rows, n]
// bf16 and each row's mean and 1 / sqrt(var + eps) [rows] float. All
// pointers 16-byte aligned. Returns a CUDA error code (0 = cudaSuccess).
int LayerNormForward(const void* x, bool x_bf16, const float* gamma, const float* beta,
                     int64_t rows, int n, float eps, void* y, float* mean, float* rstd,
                     void* stream);

// The floats of workspace LayerNormBackward needs for `rows` rows of n.
int64_t LayerNormBackwardWorkspace(int64_t rows, int n);

// Its backward: dy [rows, n] bf16, x, gamma, mean, rstd as above; writes dx
// [rows, n] in x's dtype, dgamma and dbeta [n] float (each block sums its
// rows, then one pass sums the blocks: deterministic on a given device).
int LayerNormBackward(const void* dy, const void* x, bool x_bf16, const float* gamma,
                      const float* mean, const float* rstd, int64_t rows, int n, void* dx,
                      float* dgamma, float* dbeta, float* workspace, void* stream);

// The residual add before a LayerNorm, in the same pass: h = x + (a +
// add_bias), a [rows, n] bf16 (a product's output without its bias),
// add_bias [n] float, h [rows, n] in x's dtype (the float sum rounded to
// it); then y, mean and rstd of h as stored, as LayerNormForward.
int AddLayerNormForward(const void* x, bool x_bf16, const void* a, const float* add_bias,
                        const float* gamma, const float* beta, int64_t rows, int n, float eps,
                        void* h, void* y, float* mean, float* rstd, void* stream);

// The floats of workspace AddLayerNormBackward needs.
int64_t AddLayerNormBackwardWorkspace(int64_t rows, int n);

// Its backward: dx = dh + the LayerNorm's input gradient from dy (dh
// [rows, n] in h's dtype: the gradient h receives from its other uses, or
// null for none), written in h's dtype to dx (x's gradient) and, when h is
// float, in bf16 to da (a's; when h is bf16, dx is a's gradient too and da
// is ignored); dbias [n] = dx's column sums (in float, before rounding);
// dgamma, dbeta as LayerNormBackward.
int AddLayerNormBackward(const void* dy, const void* dh, const void* h, bool h_bf16,
                         const float* gamma, const float* mean, const float* rstd, int64_t rows,
                         int n, void* dx, void* da, float* dgamma, float* dbeta, float* dbias,
                         float* workspace, void* stream);

// RMSNorm (Llama blocks) over rows of n elements, n a multiple of 8 in
// [8, 1024]: x [rows, n] float (x_bf16 false) or bf16, w [n] float; writes
// y = x * rstd * w [rows, n] bf16 and each row's rstd = 1 / sqrt(mean(x^2) +
// eps) [rows] float. 16-byte aligned rows.
int RmsNormForward(const void* x, bool x_bf16, const float* w, int64_t rows, int n, float eps,
                   void* y, float* rstd, void* stream);

// The floats of workspace RmsNormBackward needs.
int64_t RmsNormBackwardWorkspace(int64_t rows, int n);

// Its backward from dy [rows, n] bf16: dx [rows, n] in x's dtype, dw [n]
// float (per-block partial sums, then summed in a fixed order).
int RmsNormBackward(const void* dy, const void* x, bool x_bf16, const float* w, const float* rstd,
                    int64_t rows, int n, void* dx, float* dw, float* workspace, void* stream);

// y = gelu(h + bias) (tanh's approximation when `tanh`, else erf's) over h
// [rows, n] bf16, bias [n] float, n a multiple of 8; y bf16. 16-byte aligned.
int BiasGeluForward(const void* h, const float* bias, int64_t rows, int n, bool tanh, void* y,
                    void* stream);

// The floats of workspace BiasGeluBackward needs.
int64_t BiasGeluBackwardWorkspace(int64_t rows, int n);

// Its backward from dy [rows, n] bf16: dh = dy * gelu'(h + bias) (bf16) and
// dbias = the column sums of dh's float values (partial sums per block,
// then summed in a fixed order).
int BiasGeluBackward(const void* dy, const void* h, const float* bias, int64_t rows, int n,
                     bool tanh, void* dh, float* dbias, float* workspace, void* stream);

// Rotary position embedding (Llama's rotate_half form) of x [rows, hd],
// rows = batch * T * heads (heads innermost, then positions t in [0, T)):
// with half = hd / 2, c = cos[t][j] and s = sin[t][j] (cos, sin [T, hd]
// float, the second half of each row a copy of the first, as Hugging Face
// builds them), y[j] = x[j] c - x[j + half] s and y[j + half] = x[j + half]
// c + x[j] s for j < half, computed in float and written bf16. x float
// (x_bf16 false) or bf16; hd a multiple of 16; rows 16-byte aligned.
int RotaryForward(const void* x, bool x_bf16, const float* cos, const float* sin, int64_t rows,
                  int heads, int positions, int hd, void* y, void* stream);

// Its backward from dy [rows, hd] bf16: dx[j] = dy[j] c + dy[j + half] s,
// dx[j + half] = dy[j + half] c - dy[j] s, written in x's dtype.
int RotaryBackward(const void* dy, const float* cos, const float* sin, int64_t rows, int heads,
                   int positions, int hd, bool dx_bf16, void* dx, void* stream);

// One float <-> bf16 conversion per tensor, for many tensors in few
// launches (one per 64 tensors): dst = src rounded to bf16 to nearest even
// (to_bf16: src float, dst bf16; as LibTorch's .to(kBFloat16)) or widened
// to float (src bf16, dst float), numel elements each, both contiguous. Any
// alignment (16-byte aligned pairs take the vector path). Empty jobs are
// skipped; a null pointer with elements is cudaErrorInvalidValue.
struct CastJob {
  const void* src;
  void* dst;
  int64_t numel;
};
int CastTensors(const CastJob* jobs, int count, bool to_bf16, void* stream);

}  // namespace rlaif::trainer::cuda
