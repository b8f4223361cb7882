#include "rlaif/trainer/compute.h"

#include <dlfcn.h>

namespace rlaif::trainer {
namespace {

using SetThreadsFn = void (*)(int);
using GetThreadsFn = int (*)();

// OpenBLAS is loaded by LibTorch (Debian: libblas.so.3 -> OpenBLAS), so its
// symbols are in the global scope; another BLAS simply lacks them.
// Looked up once: /v1/status asks for the description on every request.
SetThreadsFn SetFn() {
  static const auto fn =
      reinterpret_cast<SetThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  return fn;
}
GetThreadsFn GetFn() {
  static const auto fn =
      reinterpret_cast<GetThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return fn;
}

}  // namespace

bool SetBlasThreads(int n) {
  SetThreadsFn set = SetFn();
  if (set == nullptr) return false;
  if (n > 0) set(n);
  return true;
}

std::string BlasDescription() {
  GetThreadsFn get = GetFn();
  if (get == nullptr) return "unknown";
  return "openblas (" + std::to_string(get()) + " threads)";
}

}  // namespace rlaif::trainer
