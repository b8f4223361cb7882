// Process-wide compute settings for the BLAS library that LibTorch's CPU
// matrix products run on.
//
//   if (!rlaif::trainer::SetBlasThreads(1)) { /* not OpenBLAS: nothing set */ }
#pragma once

#include <string>

namespace rlaif::trainer {

// Sets the threads each BLAS call may use (OpenBLAS's
// openblas_set_num_threads, found at run time). n <= 0 leaves the library's
// own default. Returns false, changing nothing, when the loaded BLAS is not
// OpenBLAS. Process-wide: serving and training share it.
bool SetBlasThreads(int n);

// "openblas (N threads)" or "unknown", for logs and /v1/status.
std::string BlasDescription();

}  // namespace rlaif::trainer
