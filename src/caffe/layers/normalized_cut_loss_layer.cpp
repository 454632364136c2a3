#include <vector>

#include "caffe/layers/normalized_cut_loss_layer.hpp"

namespace caffe {

template <typename Dtype>
void NormalizedCutLossLayer<Dtype>::ReadParam(float* sigma_xy,
    float* sigma_rgb, float* scale_factor) const {
  const NormalizedCutLossParameter& p =
      this->layer_param_.normalized_cut_loss_param();
  *sigma_xy = p.bi_xy_std();
  *sigma_rgb = p.bi_rgb_std();
  *scale_factor = p.scale_factor();
}

template <typename Dtype>
double NormalizedCutLossLayer<Dtype>::ImageLoss(const Dtype* roi, int hw,
    Workspace* ws, Dtype* grad) {
  const int K = this->classes_, V = K + 1;
  // [x_1 .. x_K, R] -> [W x_1 .. W x_K, d] in one pass; then W' x.
  ws->extra.resize(hw * V);
  float* in = &ws->extra[0];
  const float* x = &ws->values[0];
  for (int i = 0; i < hw; ++i) {
    for (int k = 0; k < K; ++k) in[i * V + k] = x[i * K + k];
    in[i * V + K] = roi[i];
  }
  ws->filtered.resize(hw * V + hw * K);
  float* wx = &ws->filtered[0];
  float* wtx = wx + hw * V;
  ws->lattice.Filter(in, V, wx);
  ws->lattice.Filter(x, K, wtx, true);

  double loss = 0;
  for (int k = 0; k < K; ++k) {
    double b = 0, c = 0;
    for (int i = 0; i < hw; ++i) {
      b += static_cast<double>(wx[i * V + K]) * x[i * K + k];
      c += static_cast<double>(wx[i * V + k]) * x[i * K + k];
    }
    Dtype* g = grad + k * hw;
    if (!(b > 0)) {
      for (int i = 0; i < hw; ++i) g[i] = 0;
      continue;
    }
    loss += 1 - c / b;
    const double cb2 = c / (b * b);
    for (int i = 0; i < hw; ++i) {
      const double sym = static_cast<double>(wx[i * V + k]) + wtx[i * K + k];
      g[i] = roi[i] * static_cast<Dtype>(cb2 * wx[i * V + K] - sym / b);
    }
  }
  return loss;
}

INSTANTIATE_CLASS(NormalizedCutLossLayer);
REGISTER_LAYER_CLASS(NormalizedCutLoss);

}  // namespace caffe
