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

// -sum_k x_k' W x_k for x = S (.) R; gradient -2 R (.) W x (the published one).
template <typename Dtype>
double DenseCRFLossLayer<Dtype>::ImageLoss(const Dtype* roi, int hw,
    Workspace* ws, Dtype* grad) {
  const int K = this->classes_;
  ws->filtered.resize(hw * K);
  const float* values = &ws->values[0];
  ws->lattice.Filter(values, K, &ws->filtered[0]);
  double energy = 0;
  const float* filtered = &ws->filtered[0];
  for (int k = 0; k < K; ++k) {
    Dtype* out = grad + k * hw;
    for (int i = 0; i < hw; ++i) {
      const float v = filtered[i * K + k];
      out[i] = -2 * v * roi[i];
      energy += static_cast<double>(values[i * K + k]) * v;
    }
  }
  return -energy;
}

INSTANTIATE_CLASS(DenseCRFLossLayer);
REGISTER_LAYER_CLASS(DenseCRFLoss);

}  // namespace caffe
