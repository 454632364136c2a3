#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "caffe/layers/bilateral_loss_layer.hpp"

namespace caffe {

namespace {

inline int MaxThreads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

inline int ThreadId() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Calls f(n, thread) for images [0, num): whole images per thread when there
// are enough of them, else in order, leaving the lattice's own loops to run
// in parallel. Not through "parallel for if (...)": an inactive region would
// make the lattice's regions nested ones, whose threads are slow to wake
// after idling (3x slower on 2 threads for one image between iterations).
template <typename F>
void ForEachImage(int num, F f) {
  const int threads = MaxThreads();
  if (num >= threads && threads > 1) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int n = 0; n < num; ++n) f(n, ThreadId());
  } else {
    for (int n = 0; n < num; ++n) f(n, 0);
  }
}

// Source taps of a resize from in to out samples by factor s, as PyTorch's
// interpolate(scale_factor=s) computes them: nearest takes floor(i / s);
// bilinear (align_corners=False) samples (i + 0.5) / s - 0.5, clamped at 0.
template <typename Dtype>
void ResizeTaps(int in, int out, float s, std::vector<int>* nearest,
    std::vector<int>* first, std::vector<int>* second,
    std::vector<Dtype>* frac) {
  nearest->resize(out);
  first->resize(out);
  second->resize(out);
  frac->resize(out);
  const double inv = 1.0 / s;
  for (int i = 0; i < out; ++i) {
    (*nearest)[i] = std::min(static_cast<int>(std::floor(i * inv)), in - 1);
    const double src = std::max((i + 0.5) * inv - 0.5, 0.0);
    const int lo = std::min(static_cast<int>(src), in - 1);
    (*first)[i] = lo;
    (*second)[i] = lo < in - 1 ? lo + 1 : lo;
    (*frac)[i] = static_cast<Dtype>(src - lo);
  }
}

// The lattice works in float: a float blob is used in place, a double one
// is converted into buf.
inline const float* AsFloat(const float* p, int, std::vector<float>*) {
  return p;
}

inline const float* AsFloat(const double* p, int count,
                            std::vector<float>* buf) {
  buf->resize(count);
  std::copy(p, p + count, buf->begin());
  return &(*buf)[0];
}

inline float* FloatOut(float* p, int, std::vector<float>*) { return p; }

inline float* FloatOut(double*, int count, std::vector<float>* buf) {
  buf->resize(count);
  return &(*buf)[0];
}

inline void FinishOut(float*, const std::vector<float>&) {}

inline void FinishOut(double* p, const std::vector<float>& buf) {
  std::copy(buf.begin(), buf.end(), p);
}

}  // namespace

template <typename Dtype>
void BilateralLossLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  LossLayer<Dtype>::LayerSetUp(bottom, top);
  const string& name = this->layer_param_.name();
  ReadParam(&sigma_xy_, &sigma_rgb_, &scale_);
  CHECK(std::isfinite(sigma_xy_) && sigma_xy_ > 0)
      << this->type() << " layer '" << name << "': bi_xy_std is " << sigma_xy_
      << "; set " << param_name() << " { bi_xy_std } to a positive number of"
      << " pixels (the published nets use 100)";
  CHECK(std::isfinite(sigma_rgb_) && sigma_rgb_ > 0)
      << this->type() << " layer '" << name << "': bi_rgb_std is "
      << sigma_rgb_ << "; set " << param_name() << " { bi_rgb_std } to a"
      << " positive intensity difference (the published nets use 15)";
  CHECK(scale_ > 0 && scale_ <= 1)
      << this->type() << " layer '" << name << "': scale_factor is " << scale_
      << "; it must lie in (0, 1] (1 filters at full resolution)";
}

template <typename Dtype>
void BilateralLossLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const string& name = this->layer_param_.name();
  const Blob<Dtype>& image = *bottom[0];
  const Blob<Dtype>& prob = *bottom[1];
  CHECK_EQ(image.num_axes(), 4) << this->type() << " layer '" << name
      << "': bottom[0] (the image) must be N x C x H x W, got "
      << image.shape_string();
  CHECK_EQ(prob.num_axes(), 4) << this->type() << " layer '" << name
      << "': bottom[1] (the probabilities) must be N x K x H x W, got "
      << prob.shape_string();
  CHECK(image.shape(0) == prob.shape(0) && image.shape(2) == prob.shape(2) &&
        image.shape(3) == prob.shape(3)) << this->type() << " layer '" << name
      << "': bottom[0] (the image, " << image.shape_string()
      << ") and bottom[1] (the probabilities, " << prob.shape_string()
      << ") must agree in N, H and W; resize the scores to the image (Interp)"
      << " before the softmax";
  CHECK_GE(image.shape(1), 1) << this->type() << " layer '" << name
      << "': bottom[0] (the image) has no channels: " << image.shape_string();
  CHECK_GE(prob.shape(1), 1) << this->type() << " layer '" << name
      << "': bottom[1] (the probabilities) has no classes: "
      << prob.shape_string();
  CHECK(image.shape(2) >= 1 && image.shape(3) >= 1) << this->type()
      << " layer '" << name << "': the image is empty: "
      << image.shape_string();
  if (bottom.size() > 2) {
    const Blob<Dtype>& roi = *bottom[2];
    CHECK(roi.num_axes() == 4 && roi.shape(0) == image.shape(0) &&
          roi.shape(1) == 1 && roi.shape(2) == image.shape(2) &&
          roi.shape(3) == image.shape(3)) << this->type() << " layer '" << name
        << "': bottom[2] (the ROI) must be N x 1 x H x W = "
        << image.shape(0) << " x 1 x " << image.shape(2) << " x "
        << image.shape(3) << ", got " << roi.shape_string();
  }
  LossLayer<Dtype>::Reshape(bottom, top);

  num_ = image.shape(0);
  channels_ = image.shape(1);
  classes_ = prob.shape(1);
  height_ = image.shape(2);
  width_ = image.shape(3);
  small_height_ = height_;
  small_width_ = width_;
  if (scale_ < 1) {
    small_height_ = static_cast<int>(std::floor(height_ * scale_));
    small_width_ = static_cast<int>(std::floor(width_ * scale_));
    CHECK(small_height_ >= 1 && small_width_ >= 1) << this->type() << " layer '"
        << name << "': scale_factor " << scale_ << " shrinks the "
        << height_ << " x " << width_ << " input to nothing; raise it";
  }
  const double reach = (std::max(small_height_, small_width_) - 1) /
                       (static_cast<double>(sigma_xy_) * scale_);
  CHECK_LE(reach, PermutohedralLattice::kMaxFeature) << this->type()
      << " layer '" << name << "': bi_xy_std " << sigma_xy_ << " is too small"
      << " for a " << height_ << " x " << width_ << " image: positions /"
      << " bi_xy_std reach " << reach << ", beyond the lattice's range of "
      << PermutohedralLattice::kMaxFeature << "; raise bi_xy_std";
  ResizeTaps(height_, small_height_, scale_, &near_y_, &lin_y_, &next_y_,
             &frac_y_);
  ResizeTaps(width_, small_width_, scale_, &near_x_, &lin_x_, &next_x_,
             &frac_x_);
  if (static_cast<int>(workspaces_.size()) < num_) workspaces_.resize(num_);
  halves_ = false;
  if (scale_ < 1) {
    small_prob_.Reshape(num_, classes_, small_height_, small_width_);
    // The vertical taps by full-resolution row, in order of the resampled row
    // (for DownsampleAdjoint).
    tap_start_.assign(height_ + 1, 0);
    for (int ys = 0; ys < small_height_; ++ys) {
      ++tap_start_[lin_y_[ys] + 1];
      ++tap_start_[next_y_[ys] + 1];
    }
    for (int y = 0; y < height_; ++y) tap_start_[y + 1] += tap_start_[y];
    tap_row_.resize(2 * small_height_);
    tap_weight_.resize(2 * small_height_);
    for (int ys = 0; ys < small_height_; ++ys) {  // tap_start_ as cursors
      tap_row_[tap_start_[lin_y_[ys]]] = ys;
      tap_weight_[tap_start_[lin_y_[ys]]++] = 1 - frac_y_[ys];
      tap_row_[tap_start_[next_y_[ys]]] = ys;
      tap_weight_[tap_start_[next_y_[ys]]++] = frac_y_[ys];
    }
    for (int y = height_; y > 0; --y) tap_start_[y] = tap_start_[y - 1];
    tap_start_[0] = 0;
    // scale_factor 1/2 pairs columns 2i and 2i + 1 with weights 1/2 each.
    halves_ = true;
    for (int xs = 0; xs < small_width_ && halves_; ++xs) {
      halves_ = lin_x_[xs] == 2 * xs && next_x_[xs] == 2 * xs + 1 &&
                frac_x_[xs] == Dtype(0.5);
    }
  }
  image_loss_.resize(num_);
}

template <typename Dtype>
double BilateralLossLayer<Dtype>::CheckFinite(const Blob<Dtype>& blob,
    int begin, int count, const char* what) const {
  const Dtype* data = blob.cpu_data() + begin;
  Dtype largest = 0;
  int finite = 1;
  // One branch-free pass (it vectorises); the culprit is looked for only
  // when there is one.
#pragma omp simd reduction(max : largest) reduction(& : finite)
  for (int i = 0; i < count; ++i) {
    const Dtype a = std::fabs(data[i]);
    finite &= a <= std::numeric_limits<Dtype>::max();  // false for NaN, inf
    largest = std::max(largest, a);
  }
  if (finite) return largest;
  const int i = begin + (std::find_if(data, data + count, [](Dtype v) {
    return !std::isfinite(v);
  }) - data);
  const int area = blob.shape(2) * blob.shape(3);
  LOG(FATAL) << this->type() << " layer '" << this->layer_param_.name()
      << "': " << what << " " << blob.shape_string() << " holds "
      << blob.cpu_data()[i] << " at (n, c, y, x) = ("
      << i / (blob.shape(1) * area) << ", " << (i / area) % blob.shape(1)
      << ", " << (i % area) / blob.shape(3) << ", " << i % blob.shape(3)
      << "); the values feeding it must be finite (a diverged net? lower the"
      << " learning rate)";
  return 0;
}

template <typename Dtype>
void BilateralLossLayer<Dtype>::PrepareImage(
    const vector<Blob<Dtype>*>& bottom, int n) {
  const int h = small_height_, w = small_width_;
  const int plane = height_ * width_, C = channels_;
  const char* what = "bottom[0] (the image)";
  const Dtype* image = bottom[0]->cpu_data() + n * C * plane;
  const Dtype* roi_in = NULL;
  if (bottom.size() > 2) {
    CheckFinite(*bottom[2], n * plane, plane, "bottom[2] (the ROI)");
    roi_in = bottom[2]->cpu_data() + n * plane;
  }
  Workspace& ws = workspaces_[n];
  std::vector<float>& roi = ws.roi;
  roi.resize(h * w);
  double largest;
  if (scale_ == 1 && !roi_in) {
    // The finite and range checks ride on the ROI's passes over the planes
    // (inside where some channel does not truncate to 0: |v| >= 1). One pass
    // per channel: a loop over channels inside the pixel loop does not
    // vectorise.
    Dtype peak = 0;
    int finite = 1, outside = 0;
    float* inside = &roi[0];
    std::fill(inside, inside + plane, 0.0f);
    for (int c = 0; c < C; ++c) {
      const Dtype* in = image + c * plane;
#pragma omp simd reduction(max : peak) reduction(& : finite)
      for (int i = 0; i < plane; ++i) {
        const Dtype a = std::fabs(in[i]);
        finite &= a <= std::numeric_limits<Dtype>::max();  // not NaN, inf
        peak = std::max(peak, a);
        inside[i] = a >= 1 ? 1.0f : inside[i];
      }
    }
    if (!finite) CheckFinite(*bottom[0], n * C * plane, C * plane, what);
#pragma omp simd reduction(+ : outside)
    for (int i = 0; i < plane; ++i) outside += inside[i] == 0;
    largest = peak;
    ws.all_inside = outside == 0;
  } else {
    largest = CheckFinite(*bottom[0], n * C * plane, C * plane, what);
    for (int ys = 0; ys < h; ++ys) {
      for (int xs = 0; xs < w; ++xs) {
        const int at = scale_ == 1 ? ys * w + xs
                                   : near_y_[ys] * width_ + near_x_[xs];
        bool inside = false;
        if (roi_in) {
          inside = roi_in[at] != 0;
        } else {
          for (int c = 0; c < C && !inside; ++c) {
            inside = std::fabs(image[c * plane + at]) >= 1;
          }
        }
        roi[ys * w + xs] = inside ? 1 : 0;
      }
    }
    ws.all_inside = std::find(roi.begin(), roi.end(), 0.0f) == roi.end();
  }
  CHECK_LE(largest / sigma_rgb_, PermutohedralLattice::kMaxFeature)
      << this->type() << " layer '" << this->layer_param_.name()
      << "': image values reach " << largest << ", which over bi_rgb_std "
      << sigma_rgb_ << " is beyond the lattice's range of "
      << PermutohedralLattice::kMaxFeature << "; raise bi_rgb_std or feed the"
      << " image in its usual range (0-255, or mean-subtracted)";
}

// Row by row: the blended source row is resampled while it is in cache.
template <typename Dtype>
void BilateralLossLayer<Dtype>::Downsample(const Dtype* src, Dtype* tmp,
    Dtype* dst) const {
  const int h = small_height_, w = small_width_, W = width_;
  for (int ys = 0; ys < h; ++ys) {
    const Dtype f = frac_y_[ys];
    const Dtype* a = src + lin_y_[ys] * W;
    const Dtype* b = src + next_y_[ys] * W;
    for (int x = 0; x < W; ++x) tmp[x] = (1 - f) * a[x] + f * b[x];
    Dtype* out = dst + ys * w;
    if (halves_) {  // the same sums, in a loop that vectorises
      const Dtype half = 0.5;
#pragma omp simd
      for (int xs = 0; xs < w; ++xs) {
        out[xs] = half * tmp[2 * xs] + half * tmp[2 * xs + 1];
      }
      continue;
    }
    for (int xs = 0; xs < w; ++xs) {
      const Dtype g = frac_x_[xs];
      out[xs] = (1 - g) * tmp[lin_x_[xs]] + g * tmp[next_x_[xs]];
    }
  }
}

// Each full-resolution row is written once, as the weighted sum of the
// resampled rows that tap it (in the order of those rows): no zeroing and no
// read-modify-write passes over the H x W plane.
template <typename Dtype>
void BilateralLossLayer<Dtype>::DownsampleAdjoint(const Dtype* src, Dtype* tmp,
    Dtype* dst) const {
  const int h = small_height_, w = small_width_, W = width_;
  // The columns' adjoint of every resampled row (tmp: h x W).
  for (int ys = 0; ys < h; ++ys) {
    Dtype* row = tmp + ys * W;
    const Dtype* g = src + ys * w;
    if (halves_) {  // the same values, in a loop that vectorises
      const Dtype half = 0.5;
#pragma omp simd
      for (int xs = 0; xs < w; ++xs) {
        row[2 * xs] = half * g[xs];
        row[2 * xs + 1] = half * g[xs];
      }
      std::fill(row + 2 * w, row + W, Dtype(0));
      continue;
    }
    std::fill(row, row + W, Dtype(0));
    for (int xs = 0; xs < w; ++xs) {
      const Dtype f = frac_x_[xs];
      row[lin_x_[xs]] += (1 - f) * g[xs];
      row[next_x_[xs]] += f * g[xs];
    }
  }
  for (int y = 0; y < height_; ++y) {
    Dtype* out = dst + y * W;
    const int first = tap_start_[y], end = tap_start_[y + 1];
    if (first == end) {
      std::fill(out, out + W, Dtype(0));
      continue;
    }
    const Dtype* r = tmp + tap_row_[first] * W;
    const Dtype f = tap_weight_[first];
    for (int x = 0; x < W; ++x) out[x] = f * r[x];
    for (int t = first + 1; t < end; ++t) {
      const Dtype* more = tmp + tap_row_[t] * W;
      const Dtype g = tap_weight_[t];
      for (int x = 0; x < W; ++x) out[x] += g * more[x];
    }
  }
}

template <typename Dtype>
double BilateralLossLayer<Dtype>::FilterImage(const Dtype* image,
    const Dtype* prob, Workspace* ws, Scratch* scratch) {
  const int h = small_height_, w = small_width_, hw = h * w;
  const int C = channels_;
  const int plane = height_ * width_;
  const float* planar;  // the image at the filtered resolution, as float
  if (scale_ == 1) {
    planar = AsFloat(image, C * hw, &scratch->image);
  } else {
    std::vector<float>& sampled = scratch->image;
    sampled.resize(C * hw);
    for (int c = 0; c < C; ++c) {
      for (int ys = 0; ys < h; ++ys) {
        const Dtype* row = image + c * plane + near_y_[ys] * width_;
        float* out = &sampled[(c * h + ys) * w];
        for (int xs = 0; xs < w; ++xs) out[xs] = row[near_x_[xs]];
      }
    }
    planar = &sampled[0];
  }
  ws->lattice.InitBilateral(planar, C, h, w, sigma_xy_ * scale_, sigma_rgb_);
  return ImageLoss(AsFloat(prob, classes_ * hw, &scratch->prob), hw, ws,
                   scratch);
}

template <typename Dtype>
void BilateralLossLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int hw = small_height_ * small_width_;
  const int plane = height_ * width_;
  const Dtype* prob = bottom[1]->cpu_data();
  if (static_cast<int>(scratch_.size()) < MaxThreads()) {
    scratch_.resize(MaxThreads());
  }
  if (scale_ < 1) {
    const Dtype* full = prob;
    Dtype* small = small_prob_.mutable_cpu_data();
    const int planes = num_ * classes_;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; ++p) {
      std::vector<Dtype>& rows = scratch_[ThreadId()].rows;
      rows.resize(width_);
      Downsample(full + p * plane, &rows[0], small + p * hw);
    }
    prob = small;
  }
  const Dtype* image = bottom[0]->cpu_data();
  // The first cpu_data() may allocate: not from several threads at once.
  for (int i = 0; i < bottom.size(); ++i) bottom[i]->cpu_data();
  // Each image's arithmetic is the same whichever way ForEachImage runs it,
  // so results do not depend on the thread count. Each image is checked and
  // its ROI made on the thread that filters it: in parallel, and while its
  // planes are in cache.
  ForEachImage(num_, [&](int n, int thread) {
    PrepareImage(bottom, n);
    image_loss_[n] = FilterImage(image + n * channels_ * plane,
        prob + n * classes_ * hw, &workspaces_[n], &scratch_[thread]);
  });
  double loss = 0;
  for (int n = 0; n < num_; ++n) loss += image_loss_[n];
  if (!std::isfinite(loss)) {
    CheckFinite(*bottom[1], 0, bottom[1]->count(),
                "bottom[1] (the probabilities)");
    LOG(FATAL) << this->type() << " layer '" << this->layer_param_.name()
        << "': the loss overflowed to " << loss << "; the image values are"
        << " too large for bi_rgb_std " << sigma_rgb_ << ", or a class"
        << " vanished from an image";
  }
  top[0]->mutable_cpu_data()[0] = loss / num_;
}

template <typename Dtype>
void BilateralLossLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const LayerParameter& param = this->layer_param_;
  for (int i = 0; i < bottom.size(); ++i) {
    CHECK(i == 1 || !propagate_down[i]) << this->type() << " layer '"
        << param.name() << "' has no gradient for bottom[" << i << "] (the "
        << (i == 0 ? "image" : "ROI")
        << "); set its propagate_down: false, e.g. propagate_down: false"
        << " propagate_down: true" << (i == 2 ? " propagate_down: false" : "");
  }
  if (!propagate_down[1]) return;
  const float scale = top[0]->cpu_diff()[0] / num_;
  const int hw = small_height_ * small_width_, count = classes_ * hw;
  Dtype* diff = scale_ == 1 ? bottom[1]->mutable_cpu_diff()
                            : small_prob_.mutable_cpu_diff();
  if (static_cast<int>(scratch_.size()) < MaxThreads()) {
    scratch_.resize(MaxThreads());
  }
  ForEachImage(num_, [&](int n, int thread) {
    std::vector<float>& buffer = scratch_[thread].diff;
    Dtype* out = diff + n * count;
    ImageGradient(hw, scale, &workspaces_[n], FloatOut(out, count, &buffer));
    FinishOut(out, buffer);
  });
  if (scale_ == 1) return;
  Dtype* full = bottom[1]->mutable_cpu_diff();
  const int planes = num_ * classes_;
#pragma omp parallel for schedule(static)
  for (int p = 0; p < planes; ++p) {
    std::vector<Dtype>& rows = scratch_[ThreadId()].rows;
    rows.resize(small_height_ * width_);
    DownsampleAdjoint(diff + p * hw, &rows[0], full + p * height_ * width_);
  }
}

INSTANTIATE_CLASS(BilateralLossLayer);

}  // namespace caffe
