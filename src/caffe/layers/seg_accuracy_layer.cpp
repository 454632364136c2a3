#include <cmath>
#include <string>
#include <vector>

#include "caffe/layers/seg_accuracy_layer.hpp"

namespace caffe {

template <typename Dtype>
void SegAccuracyLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const SegAccuracyParameter& p = this->layer_param_.seg_accuracy_param();
  ignore_label_.clear();
  for (int i = 0; i < p.ignore_label_size(); ++i) {
    ignore_label_.insert(p.ignore_label(i));
  }
  classes_ = 0;
}

template <typename Dtype>
void SegAccuracyLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const string& name = this->layer_param_.name();
  CHECK_EQ(bottom[0]->num_axes(), 4) << "SegAccuracy layer '" << name
      << "': scores must be N x K x H x W; got "
      << bottom[0]->shape_string() << ".";
  CHECK_EQ(bottom[1]->num_axes(), 4) << "SegAccuracy layer '" << name
      << "': labels must be N x 1 x H x W; got "
      << bottom[1]->shape_string() << ".";
  CHECK(bottom[1]->num() == bottom[0]->num() && bottom[1]->channels() == 1
      && bottom[1]->height() == bottom[0]->height()
      && bottom[1]->width() == bottom[0]->width())
      << "SegAccuracy layer '" << name << "': labels "
      << bottom[1]->shape_string() << " do not match scores "
      << bottom[0]->shape_string() << " (expected N x 1 x H x W of the "
      << "scores; resize one of them with an Interp layer).";
  if (bottom[0]->channels() != classes_) {
    classes_ = bottom[0]->channels();
    confusion_.assign(classes_ * classes_, 0.0);
  }
  top[0]->Reshape(1, 1, 1, 3);
}

template <typename Dtype>
void SegAccuracyLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  if (this->layer_param_.seg_accuracy_param().reset()) {
    confusion_.assign(classes_ * classes_, 0.0);
  }
  const Dtype* score = bottom[0]->cpu_data();
  const Dtype* label = bottom[1]->cpu_data();
  const int num = bottom[0]->num();
  const int spatial = bottom[0]->height() * bottom[0]->width();
  for (int n = 0; n < num; ++n) {
    const Dtype* s = score + n * classes_ * spatial;
    const Dtype* l = label + n * spatial;
    for (int i = 0; i < spatial; ++i) {
      CHECK(std::isfinite(l[i])) << "SegAccuracy layer '"
          << this->layer_param_.name() << "': label " << l[i] << " at image "
          << n << ", pixel " << i << " is not a number.";
      const Dtype whole = std::floor(l[i] + Dtype(0.5));
      // A blend of two classes (a label map resized bilinearly) is no class.
      CHECK_LE(std::fabs(l[i] - whole), Dtype(1e-3)) << "SegAccuracy layer '"
          << this->layer_param_.name() << "': label " << l[i] << " at image "
          << n << ", pixel " << i << " is not a whole class id; resize label "
          << "maps with nearest neighbour, which keeps their values.";
      const int truth = static_cast<int>(whole);
      if (ignore_label_.count(truth)) continue;
      CHECK(truth >= 0 && truth < classes_) << "SegAccuracy layer '"
          << this->layer_param_.name() << "': label " << truth
          << " at image " << n << ", pixel " << i << " is outside [0, "
          << classes_ << "); list it in ignore_label if it marks unlabeled "
          << "pixels.";
      // A NaN never wins a comparison, so it would pass as a prediction.
      int best = 0;
      Dtype best_score = s[i];
      bool nan = std::isnan(best_score);
      for (int k = 1; k < classes_; ++k) {
        const Dtype v = s[k * spatial + i];
        nan |= std::isnan(v);
        if (v > best_score) {
          best_score = v;
          best = k;
        }
      }
      CHECK(!nan) << "SegAccuracy layer '" << this->layer_param_.name()
          << "': the scores of image " << n << ", pixel " << i << " hold nan;"
          << " they must be numbers (a diverged net? lower the learning rate).";
      confusion_[truth * classes_ + best] += 1;
    }
  }
  double total = 0, correct = 0, class_acc = 0, iou = 0;
  int present = 0, seen = 0;
  for (int k = 0; k < classes_; ++k) {
    double row = 0, col = 0;
    for (int j = 0; j < classes_; ++j) {
      row += confusion_[k * classes_ + j];
      col += confusion_[j * classes_ + k];
    }
    const double hit = confusion_[k * classes_ + k];
    total += row;
    correct += hit;
    if (row > 0) {
      class_acc += hit / row;
      ++present;
    }
    if (row + col - hit > 0) {
      iou += hit / (row + col - hit);
      ++seen;
    }
  }
  Dtype* out = top[0]->mutable_cpu_data();
  out[0] = total > 0 ? correct / total : 0;
  out[1] = present > 0 ? class_acc / present : 0;
  out[2] = seen > 0 ? iou / seen : 0;
}

template <typename Dtype>
void SegAccuracyLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  for (int i = 0; i < propagate_down.size(); ++i) {
    CHECK(!propagate_down[i]) << "SegAccuracy layer '"
        << this->layer_param_.name() << "' has no gradient; do not give it a "
        << "loss_weight or force backward through it.";
  }
}

INSTANTIATE_CLASS(SegAccuracyLayer);
REGISTER_LAYER_CLASS(SegAccuracy);

}  // namespace caffe
