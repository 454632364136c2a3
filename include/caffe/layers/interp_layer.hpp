#ifndef CAFFE_INTERP_LAYER_HPP_
#define CAFFE_INTERP_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Bilinear resize of N x C x H x W with aligned corners (DeepLab's
 *        Interp layer), forward and backward.
 *
 * The input is first cropped by the (non-positive) pads: H_eff = H + pad_beg
 * + pad_end rows starting at row -pad_beg, likewise for columns. The output
 * size is, by the first rule that applies:
 *   - a second bottom: its height and width;
 *   - shrink_factor s and/or zoom_factor z: (H_eff - 1) / s + 1, then
 *     H' + (H' - 1)(z - 1);
 *   - height and width given explicitly.
 * Output pixel y samples input row y (H_eff - 1) / (H_out - 1), so corners
 * map to corners and a shrink by s of an (s k + 1)-row input reads exactly
 * every s-th row: label maps shrink without mixing labels.
 */
template <typename Dtype>
class InterpLayer : public Layer<Dtype> {
 public:
  explicit InterpLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "Interp"; }
  virtual inline int MinBottomBlobs() const { return 1; }
  virtual inline int MaxBottomBlobs() const { return 2; }
  virtual inline int ExactNumTopBlobs() const { return 1; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

 private:
  /// Source taps along one axis: output i reads lo[i] and lo[i] + step[i]
  /// of the cropped input with weights 1 - frac[i] and frac[i].
  static void Taps(int in, int out, std::vector<int>* lo,
      std::vector<int>* step, std::vector<Dtype>* frac);

  int pad_beg_, pad_end_;
  int height_in_, width_in_, height_eff_, width_eff_;
  int height_out_, width_out_;
  std::vector<int> lo_y_, step_y_, lo_x_, step_x_;
  std::vector<Dtype> frac_y_, frac_x_;
};

}  // namespace caffe

#endif  // CAFFE_INTERP_LAYER_HPP_
