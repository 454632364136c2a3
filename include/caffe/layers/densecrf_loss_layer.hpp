#ifndef CAFFE_DENSECRF_LOSS_LAYER_HPP_
#define CAFFE_DENSECRF_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/permutohedral.hpp"

#include "caffe/layers/loss_layer.hpp"

namespace caffe {

/**
 * @brief DenseCRF loss (Tang et al., "On Regularized Losses for
 *        Weakly-supervised CNN Segmentation", ECCV 2018):
 *        @f$ E = -\frac{1}{N} \sum_n \sum_k (S_{nk} \odot R_n)^\top W_n
 *        (S_{nk} \odot R_n) @f$, W_n the bilateral Gaussian over
 *        (x/\sigma_{xy}, y/\sigma_{xy}, I_1/\sigma_{rgb}, ...,
 *        I_C/\sigma_{rgb})
 *        filtered on a permutohedral lattice, R_n the region of interest.
 *
 * Bottoms: image N x C x H x W (any C >= 1); probabilities N x K x H x W;
 * optional ROI N x 1 x H x W (nonzero = inside). Without the ROI bottom a
 * pixel is outside when all its image values truncate to 0 (DeepLab pads crops
 * with the mean, which is 0 after mean subtraction). Top: the scalar loss.
 *
 * Backward gives bottom 1 the published gradient -2 (W_n (S_nk R_n)) R_n / N,
 * reusing Forward's W S. It is exact for a symmetric W; the lattice's W is
 * symmetric only up to a few percent, as in the published layer. There is no
 * gradient for the image or the ROI: set propagate_down: false for them.
 *
 * With scale_factor s < 1, image and ROI are sampled (nearest) and the
 * probabilities resized (bilinear, half-pixel centres) to floor(s H) x
 * floor(s W) and filtered there with sigma_xy * s; the gradient is mapped back
 * through the adjoint of that resize. The loss is then the loss of the smaller
 * problem: about s^4 times the full-resolution value (s^2 fewer pixels, each
 * with s^2 fewer neighbours in the kernel).
 */
template <typename Dtype>
class DenseCRFLossLayer : public LossLayer<Dtype> {
 public:
  explicit DenseCRFLossLayer(const LayerParameter& param)
      : LossLayer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "DenseCRFLoss"; }
  virtual inline int ExactNumBottomBlobs() const { return -1; }
  virtual inline int MinBottomBlobs() const { return 2; }
  virtual inline int MaxBottomBlobs() const { return 3; }
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index == 1;
  }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

 private:
  /// Per-thread lattice and buffers, kept between calls.
  struct Workspace {
    PermutohedralLattice lattice;
    std::vector<float> image;     // C x h x w, the (sampled) image
    std::vector<float> features;  // h*w x (2 + C)
    std::vector<float> values;    // h*w x K, S (.) R interleaved
    std::vector<float> filtered;  // h*w x K, W (S (.) R)
  };

  void CheckFinite(const Blob<Dtype>& blob, const char* what) const;
  void ComputeRoi(const vector<Blob<Dtype>*>& bottom);
  /// Bilinear resize of one H x W plane to h x w (scale_factor < 1) ...
  void Downsample(const Dtype* src, Dtype* tmp, Dtype* dst) const;
  /// ... and its adjoint, accumulated into a zeroed H x W plane.
  void DownsampleAdjoint(const Dtype* src, Dtype* tmp, Dtype* dst) const;
  /// Filters one image's S (.) R; writes R (.) W (S (.) R) and returns the
  /// image's loss term.
  double FilterImage(const Dtype* image, const Dtype* prob, const Dtype* roi,
      Dtype* filtered, Workspace* ws);

  float sigma_xy_;
  float sigma_rgb_;
  float scale_;
  int num_, channels_, classes_, height_, width_;
  int small_height_, small_width_;  // the filtered resolution
  Blob<Dtype> roi_;            // N x 1 x h x w, 1 inside, 0 outside
  Blob<Dtype> filtered_;       // N x K x h x w: R (.) W (S (.) R), for Backward
  Blob<Dtype> small_prob_;     // N x K x h x w, when scale_factor < 1
  Blob<Dtype> resize_tmp_;     // N x K x h x W, when scale_factor < 1
  std::vector<int> near_y_, near_x_;       // nearest source row / column
  std::vector<int> lin_y_, lin_x_;         // first bilinear tap
  std::vector<int> next_y_, next_x_;       // second bilinear tap
  std::vector<Dtype> frac_y_, frac_x_;     // weight of the second tap
  std::vector<Workspace> workspaces_;
  std::vector<double> image_loss_;
};

}  // namespace caffe

#endif  // CAFFE_DENSECRF_LOSS_LAYER_HPP_
