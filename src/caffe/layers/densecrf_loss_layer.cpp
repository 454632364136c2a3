#include <vector>

#include "caffe/layers/densecrf_loss_layer.hpp"

namespace caffe {

template <typename Dtype>
void DenseCRFLossLayer<Dtype>::ReadParam(float* sigma_xy, float* sigma_rgb,
    float* scale_factor) const {
  const DenseCRFLossParameter& p = this->layer_param_.densecrf_loss_param();
  *sigma_xy = p.bi_xy_std();
  *sigma_rgb = p.bi_rgb_std();
  *scale_factor = p.scale_factor();
}

// -sum_k x_k' W x_k for x = S (.) R, computed on the lattice: splat and blur
// only; the slice waits for Backward.
template <typename Dtype>
double DenseCRFLossLayer<Dtype>::ImageLoss(const float* prob, int hw,
    Workspace* ws, Scratch*) {
  ws->lattice.Splat(prob, this->classes_, ws->point_weight());
  ws->lattice.Blur();
  return -ws->lattice.SplatDotBlurred();
}

// The published gradient -2 R (.) W x, scaled.
template <typename Dtype>
void DenseCRFLossLayer<Dtype>::ImageGradient(int hw, float scale,
    Workspace* ws, float* diff) {
  ws->lattice.Slice(diff, -2 * scale, ws->point_weight());
}

INSTANTIATE_CLASS(DenseCRFLossLayer);
REGISTER_LAYER_CLASS(DenseCRFLoss);

}  // namespace caffe
