#include <algorithm>
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
double NormalizedCutLossLayer<Dtype>::ImageLoss(const float* prob, int hw,
    Workspace* ws, Scratch* scratch) {
  const int K = this->classes_, V = K + 1;
  const float* roi = &ws->roi[0];
  // x = S (.) R and R, planar: [x_1 .. x_K, R] -> [W x_1 .. W x_K, d] in
  // one pass; then W' x.
  scratch->a.resize(hw * V);
  float* x = &scratch->a[0];
  for (int k = 0; k < K; ++k) {
    for (int i = 0; i < hw; ++i) x[k * hw + i] = prob[k * hw + i] * roi[i];
  }
  std::copy(roi, roi + hw, x + K * hw);
  scratch->b.resize(hw * V + hw * K);
  float* wx = &scratch->b[0];
  float* wtx = wx + hw * V;
  ws->lattice.Filter(x, V, wx);
  ws->lattice.Filter(x, K, wtx, true);
  const float* d = wx + K * hw;

  ws->grad.resize(hw * K);
  double loss = 0;
  for (int k = 0; k < K; ++k) {
    const float* xk = x + k * hw;
    const float* wxk = wx + k * hw;
    double b = 0, c = 0;
    for (int i = 0; i < hw; ++i) {
      b += static_cast<double>(d[i]) * xk[i];
      c += static_cast<double>(wxk[i]) * xk[i];
    }
    float* g = &ws->grad[k * hw];
    if (!(b > 0)) {
      std::fill(g, g + hw, 0.0f);
      continue;
    }
    loss += 1 - c / b;
    const double cb2 = c / (b * b);
    const float* wtxk = wtx + k * hw;
    for (int i = 0; i < hw; ++i) {
      const double sym = static_cast<double>(wxk[i]) + wtxk[i];
      g[i] = roi[i] * static_cast<float>(cb2 * d[i] - sym / b);
    }
  }
  return loss;
}

template <typename Dtype>
void NormalizedCutLossLayer<Dtype>::ImageGradient(int hw, float scale,
    Workspace* ws, float* diff) {
  const int count = this->classes_ * hw;
  const float* g = &ws->grad[0];
  for (int i = 0; i < count; ++i) diff[i] = scale * g[i];
}

INSTANTIATE_CLASS(NormalizedCutLossLayer);
REGISTER_LAYER_CLASS(NormalizedCutLoss);

}  // namespace caffe
