#ifndef CAFFE_NORMALIZED_CUT_LOSS_LAYER_HPP_
#define CAFFE_NORMALIZED_CUT_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/bilateral_loss_layer.hpp"

namespace caffe {

/**
 * @brief Normalized Cut loss (Tang et al., "Normalized Cut Loss for
 *        Weakly-supervised CNN Segmentation", CVPR 2018), on the DenseCRF
 *        loss's bilateral kernel W, with its bottoms, ROI rule and
 *        scale_factor (see BilateralLossLayer):
 *        @f$ E = \frac{1}{N} \sum_n \sum_k
 *        \frac{x_{nk}^\top W_n (R_n - x_{nk})}{d_n^\top x_{nk}},\;
 *        x_{nk} = S_{nk} \odot R_n,\; d_n = W_n R_n @f$
 *        (d: the degrees; R = 1 without padding, as in the paper's
 *        S_k' W (1 - S_k) / d' S_k).
 *
 * Gradient, per image and class (x = x_k, B = d'x, C = x'Wx, so the term is
 * (B - C) / B = 1 - C / B):
 *   d(C/B)/dx = ((W + W') x) / B - C d / B^2,
 * hence dE/dS_k = -R (.) [(W x + W' x) / B - C d / B^2] / N. W is not exactly
 * symmetric on the lattice, so W'x is its own (transposed) filtering: the
 * gradient is exact for the loss the forward pass computes. d comes from the
 * same lattice pass as W x (R as one more value channel).
 *
 * A class with d'x = 0 in an image (no mass inside the ROI; an image with an
 * empty ROI) contributes nothing to the loss or the gradient.
 */
template <typename Dtype>
class NormalizedCutLossLayer : public BilateralLossLayer<Dtype> {
 public:
  explicit NormalizedCutLossLayer(const LayerParameter& param)
      : BilateralLossLayer<Dtype>(param) {}
  virtual inline const char* type() const { return "NormalizedCutLoss"; }

 protected:
  typedef typename BilateralLossLayer<Dtype>::Workspace Workspace;
  typedef typename BilateralLossLayer<Dtype>::Scratch Scratch;
  virtual void ReadParam(float* sigma_xy, float* sigma_rgb,
      float* scale_factor) const;
  virtual const char* param_name() const {
    return "normalized_cut_loss_param";
  }
  virtual double ImageLoss(const float* prob, int hw, Workspace* ws,
      Scratch* scratch);
  virtual void ImageGradient(int hw, float scale, Workspace* ws, float* diff);
};

}  // namespace caffe

#endif  // CAFFE_NORMALIZED_CUT_LOSS_LAYER_HPP_
