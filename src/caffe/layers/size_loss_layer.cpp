#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "caffe/layers/size_loss_layer.hpp"

namespace caffe {

template <typename Dtype>
void SizeLossLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  LossLayer<Dtype>::LayerSetUp(bottom, top);
  const SizeLossParameter& p = this->layer_param_.size_loss_param();
  const string& name = this->layer_param_.name();
  lower_.assign(p.lower_bound().begin(), p.lower_bound().end());
  upper_.assign(p.upper_bound().begin(), p.upper_bound().end());
  CHECK(bottom.size() == 1 || (lower_.empty() && upper_.empty()))
      << "SizeLoss layer '" << name << "': the bounds come from bottom[1] or"
      << " from size_loss_param { lower_bound upper_bound }, not both; drop"
      << " one of them";
  for (int i = 0; i < lower_.size(); ++i) {
    CHECK(std::isfinite(lower_[i]) && lower_[i] >= 0) << "SizeLoss layer '"
        << name << "': lower_bound " << lower_[i] << " must be a finite"
        << " size >= 0";
  }
  for (int i = 0; i < upper_.size(); ++i) {
    CHECK(!std::isnan(upper_[i]) && upper_[i] >= 0) << "SizeLoss layer '"
        << name << "': upper_bound " << upper_[i] << " must be a size >= 0";
  }
}

template <typename Dtype>
void SizeLossLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const string& name = this->layer_param_.name();
  const Blob<Dtype>& prob = *bottom[0];
  CHECK_EQ(prob.num_axes(), 4) << "SizeLoss layer '" << name
      << "': bottom[0] (the probabilities) must be N x K x H x W, got "
      << prob.shape_string();
  // Not LossLayer::Reshape: it expects a label bottom of the same batch.
  top[0]->Reshape(vector<int>());
  num_ = prob.shape(0);
  classes_ = prob.shape(1);
  area_ = prob.shape(2) * prob.shape(3);
  CHECK(classes_ >= 1 && area_ >= 1) << "SizeLoss layer '" << name
      << "': bottom[0] is empty: " << prob.shape_string();
  const int nl = lower_.size(), nu = upper_.size();
  CHECK(nl <= 1 || nl == classes_) << "SizeLoss layer '" << name << "': "
      << nl << " lower_bound values for " << classes_ << " classes; give"
      << " one (for every class) or one per class";
  CHECK(nu <= 1 || nu == classes_) << "SizeLoss layer '" << name << "': "
      << nu << " upper_bound values for " << classes_ << " classes; give"
      << " one (for every class) or one per class";
  if (bottom.size() > 1) {
    const Blob<Dtype>& b = *bottom[1];
    CHECK(b.num_axes() == 3 && b.shape(0) == num_ && b.shape(1) == classes_ &&
          b.shape(2) == 2) << "SizeLoss layer '" << name << "': bottom[1]"
        << " (the bounds) must be N x K x 2 = " << num_ << " x " << classes_
        << " x 2 (lower, upper per image and class), got " << b.shape_string();
  }
  unit_ = this->layer_param_.size_loss_param().relative() ? 1.0 / area_ : 1.0;
  size_.resize(num_ * classes_);
  excess_.resize(num_ * classes_);
}

template <typename Dtype>
void SizeLossLayer<Dtype>::Bounds(const vector<Blob<Dtype>*>& bottom, int n,
    int k, double* lower, double* upper) const {
  if (bottom.size() > 1) {
    const Dtype* b = bottom[1]->cpu_data() + (n * classes_ + k) * 2;
    *lower = b[0];
    *upper = b[1];
    CHECK(std::isfinite(*lower) && !std::isnan(*upper) && *lower <= *upper)
        << "SizeLoss layer '" << this->layer_param_.name() << "': bottom[1]"
        << " gives image " << n << ", class " << k << " the bounds ["
        << *lower << ", " << *upper << "]; they must be numbers with"
        << " lower <= upper";
    return;
  }
  const double inf = std::numeric_limits<double>::infinity();
  *lower = lower_.empty() ? 0 : lower_[lower_.size() == 1 ? 0 : k];
  *upper = upper_.empty() ? inf : upper_[upper_.size() == 1 ? 0 : k];
  CHECK_LE(*lower, *upper) << "SizeLoss layer '" << this->layer_param_.name()
      << "': class " << k << " has lower_bound " << *lower << " above"
      << " upper_bound " << *upper;
}

template <typename Dtype>
void SizeLossLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const Dtype* prob = bottom[0]->cpu_data();
  const int planes = num_ * classes_;
#pragma omp parallel for schedule(static)
  for (int p = 0; p < planes; ++p) {
    double s = 0;
    const Dtype* x = prob + static_cast<size_t>(p) * area_;
    for (int i = 0; i < area_; ++i) s += x[i];
    size_[p] = s * unit_;
  }
  double loss = 0;
  for (int p = 0; p < planes; ++p) {
    CHECK(std::isfinite(size_[p])) << "SizeLoss layer '"
        << this->layer_param_.name() << "': image " << p / classes_
        << ", class " << p % classes_ << " has size " << size_[p]
        << "; the probabilities must be finite";
    double lower, upper;
    Bounds(bottom, p / classes_, p % classes_, &lower, &upper);
    const double over = std::max(0.0, size_[p] - upper);
    const double under = std::max(0.0, lower - size_[p]);
    excess_[p] = over - under;
    loss += over * over + under * under;
  }
  top[0]->mutable_cpu_data()[0] = loss / num_;
}

template <typename Dtype>
void SizeLossLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  CHECK(bottom.size() < 2 || !propagate_down[1]) << "SizeLoss layer '"
      << this->layer_param_.name() << "' has no gradient for bottom[1] (the"
      << " bounds); set propagate_down: true propagate_down: false";
  if (!propagate_down[0]) return;
  const double scale = 2 * top[0]->cpu_diff()[0] * unit_ / num_;
  Dtype* diff = bottom[0]->mutable_cpu_diff();
  const int planes = num_ * classes_;
#pragma omp parallel for schedule(static)
  for (int p = 0; p < planes; ++p) {
    const Dtype g = static_cast<Dtype>(scale * excess_[p]);
    Dtype* d = diff + static_cast<size_t>(p) * area_;
    for (int i = 0; i < area_; ++i) d[i] = g;
  }
}

INSTANTIATE_CLASS(SizeLossLayer);
REGISTER_LAYER_CLASS(SizeLoss);

}  // namespace caffe
