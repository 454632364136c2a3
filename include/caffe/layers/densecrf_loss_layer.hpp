#ifndef CAFFE_DENSECRF_LOSS_LAYER_HPP_
#define CAFFE_DENSECRF_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/bilateral_loss_layer.hpp"

namespace caffe {

/**
 * @brief DenseCRF loss (Tang et al., "On Regularized Losses for
 *        Weakly-supervised CNN Segmentation", ECCV 2018):
 *        @f$ E = -\frac{1}{N} \sum_n \sum_k (S_{nk} \odot R_n)^\top W_n
 *        (S_{nk} \odot R_n) @f$, W_n the bilateral Gaussian filtered on a
 *        permutohedral lattice, R_n the region of interest (see
 *        BilateralLossLayer for the bottoms, the ROI rule and scale_factor).
 *
 * Backward gives bottom 1 the published gradient -2 R_n (.) W_n (S_nk R_n) / N.
 * It is exact for a symmetric W; the lattice's W is symmetric only up to a few
 * percent, as in the published layer, whose values and tuned loss weights
 * this keeps. With scale_factor s < 1 the loss is the loss of the smaller
 * problem: about s^4 times the full-resolution value (s^2 fewer pixels, each
 * with s^2 fewer neighbours in the kernel).
 */
template <typename Dtype>
class DenseCRFLossLayer : public BilateralLossLayer<Dtype> {
 public:
  explicit DenseCRFLossLayer(const LayerParameter& param)
      : BilateralLossLayer<Dtype>(param) {}
  virtual inline const char* type() const { return "DenseCRFLoss"; }

 protected:
  typedef typename BilateralLossLayer<Dtype>::Workspace Workspace;
  typedef typename BilateralLossLayer<Dtype>::Scratch Scratch;
  virtual void ReadParam(float* sigma_xy, float* sigma_rgb,
      float* scale_factor) const;
  virtual const char* param_name() const { return "densecrf_loss_param"; }
  virtual double ImageLoss(const float* prob, int hw, Workspace* ws,
      Scratch* scratch);
  virtual void ImageGradient(int hw, float scale, Workspace* ws, float* diff);
};

}  // namespace caffe

#endif  // CAFFE_DENSECRF_LOSS_LAYER_HPP_
