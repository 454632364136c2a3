// C entry points for `rloss bench` (loaded with ctypes): the restated
// published algorithm, and our lattice alone with its phases timed apart.
// Our lattice comes from libcaffe.so, so this measures the shipped code.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "caffe/util/permutohedral.hpp"
#include "published.hpp"

namespace {

double Now() {
  return std::chrono::duration<double>(
      std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The layer's ROI rule, as the layer computes it: outside where every
// channel truncates to 0, i.e. |v| < 1.
void Roi(const float* image, int channels, int n, float* roi) {
  std::fill(roi, roi + n, 0.0f);
  for (int c = 0; c < channels; ++c) {
    for (int i = 0; i < n; ++i) {
      roi[i] = std::fabs(image[c * n + i]) >= 1 ? 1 : roi[i];
    }
  }
}

// As the layer does: images go to threads only when there are at least as
// many as threads; otherwise a plain loop, so that the lattice's own regions
// are not nested in an inactive one.
template <typename F>
void ForEachImage(int num, F one_image) {
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  if (num >= threads && threads > 1) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < num; ++i) one_image(i);
  } else {
    for (int i = 0; i < num; ++i) one_image(i);
  }
}

struct Lattices {
  std::vector<caffe::PermutohedralLattice> lattice;
  std::vector<std::vector<float> > roi;
};

}  // namespace

extern "C" {
void rb_set_threads(int threads) {
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
}

// Published: per image, one lattice and one value_size-1 filtering per
// class; images in parallel. Returns the loss (1/N) sum; grad as the layer's
// bottom diff for loss weight 1. times: build, filtering (summed).
double rb_published(const float* image, int num, int channels, int height,
    int width, const float* prob, int classes, float sigma_xy,
    float sigma_rgb, float* grad, double* times) {
  const int n = height * width;
  std::vector<double> loss(num);
  std::vector<double> t(2 * num, 0.0);
#pragma omp parallel for schedule(dynamic, 1)
  for (int i = 0; i < num; ++i) {
    loss[i] = rloss_bench::PublishedDenseCRF(
        image + static_cast<size_t>(i) * channels * n, channels, height,
        width, prob + static_cast<size_t>(i) * classes * n, classes,
        sigma_xy, sigma_rgb, grad + static_cast<size_t>(i) * classes * n,
        &t[2 * i]);
  }
  double total = 0;
  times[0] = times[1] = 0;
  for (int i = 0; i < num; ++i) {
    total += loss[i];
    times[0] += t[2 * i];
    times[1] += t[2 * i + 1];
  }
  const size_t count = static_cast<size_t>(num) * classes * n;
  for (size_t i = 0; i < count; ++i) grad[i] /= num;
  return total / num;
}

void* rb_lattices_new() { return new Lattices(); }

void rb_lattices_free(void* handle) { delete static_cast<Lattices*>(handle); }

// Our lattice alone, as the layer drives it: build from the image, splat with
// the ROI, blur, dot on the vertices, slice into grad. times: build, splat,
// blur, slice (summed over images). vertices: lattice sizes.
double rb_lattice(void* handle, const float* image, int num, int channels,
    int height, int width, const float* prob, int classes, float sigma_xy,
    float sigma_rgb, float* grad, double* times, int* vertices) {
  Lattices* state = static_cast<Lattices*>(handle);
  const int n = height * width;
  if (static_cast<int>(state->lattice.size()) < num) {
    state->lattice.resize(num);
    state->roi.resize(num);
  }
  std::vector<double> loss(num), t(4 * num, 0.0);
  ForEachImage(num, [&](int i) {
    const float* img = image + static_cast<size_t>(i) * channels * n;
    caffe::PermutohedralLattice& lattice = state->lattice[i];
    std::vector<float>& roi = state->roi[i];
    double t0 = Now();
    roi.resize(n);
    Roi(img, channels, n, &roi[0]);
    // As the layer does: no point weights where every pixel is inside.
    const float* weight =
        std::find(roi.begin(), roi.end(), 0.0f) == roi.end() ? NULL : &roi[0];
    lattice.InitBilateral(img, channels, height, width, sigma_xy, sigma_rgb);
    double t1 = Now();
    lattice.Splat(prob + static_cast<size_t>(i) * classes * n, classes,
                  weight);
    double t2 = Now();
    lattice.Blur();
    loss[i] = -lattice.SplatDotBlurred();
    double t3 = Now();
    lattice.Slice(grad + static_cast<size_t>(i) * classes * n, -2.0f / num,
                  weight);
    double t4 = Now();
    t[4 * i] = t1 - t0;
    t[4 * i + 1] = t2 - t1;
    t[4 * i + 2] = t3 - t2;
    t[4 * i + 3] = t4 - t3;
    vertices[i] = lattice.num_vertices();
  });
  double total = 0;
  for (int j = 0; j < 4; ++j) times[j] = 0;
  for (int i = 0; i < num; ++i) {
    total += loss[i];
    for (int j = 0; j < 4; ++j) times[j] += t[4 * i + j];
  }
  return total / num;
}

// Bytes the lattices hold (their share of the layer's memory).
double rb_lattices_bytes(void* handle) {
  const Lattices* state = static_cast<Lattices*>(handle);
  double bytes = 0;
  for (size_t i = 0; i < state->lattice.size(); ++i) {
    bytes += state->lattice[i].memory_bytes();
  }
  return bytes;
}
}  // extern "C"
