#ifndef CAFFE_SIZE_LOSS_LAYER_HPP_
#define CAFFE_SIZE_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/loss_layer.hpp"

namespace caffe {

/**
 * @brief Size-constraint loss (Kervadec et al., "Constrained-CNN losses for
 *        weakly supervised segmentation", MIDL 2018): a quadratic penalty on
 *        each class's predicted size outside [a_k, b_k],
 *        @f$ E = \frac{1}{N} \sum_n \sum_k \max(0, s_{nk} - b_{nk})^2 +
 *        \max(0, a_{nk} - s_{nk})^2,\; s_{nk} = \sum_i S_{nki} @f$.
 *
 * Bottoms: probabilities N x K x H x W; optional bounds N x K x 2 (per image
 * and class: lower, upper). Without the bounds bottom, size_loss_param gives
 * them: lower_bound / upper_bound each hold no value (no bound), one value
 * (every class) or K values. With relative: true sizes and bounds are
 * fractions of H x W, so the loss does not grow with the resolution;
 * otherwise they are pixel counts.
 *
 * Gradient: dE/dS_nki = 2 (max(0, s - b) - max(0, a - s)) / N (over HW when
 * relative), the same for every pixel of the class. The bounds get none.
 */
template <typename Dtype>
class SizeLossLayer : public LossLayer<Dtype> {
 public:
  explicit SizeLossLayer(const LayerParameter& param)
      : LossLayer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "SizeLoss"; }
  virtual inline int ExactNumBottomBlobs() const { return -1; }
  virtual inline int MinBottomBlobs() const { return 1; }
  virtual inline int MaxBottomBlobs() const { return 2; }
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index == 0;
  }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

 private:
  /// The bounds of image n, class k, as sizes in the loss's units.
  void Bounds(const vector<Blob<Dtype>*>& bottom, int n, int k, double* lower,
      double* upper) const;

  std::vector<float> lower_, upper_;  // from the parameter, per class
  int num_, classes_, area_;
  double unit_;                       // 1 / (H W) when relative, else 1
  std::vector<double> size_;          // N x K: s, in the loss's units
  std::vector<double> excess_;        // N x K: max(0,s-b) - max(0,a-s)
};

}  // namespace caffe

#endif  // CAFFE_SIZE_LOSS_LAYER_HPP_
