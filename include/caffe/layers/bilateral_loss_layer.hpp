#ifndef CAFFE_BILATERAL_LOSS_LAYER_HPP_
#define CAFFE_BILATERAL_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/permutohedral.hpp"

#include "caffe/layers/loss_layer.hpp"

namespace caffe {

/**
 * @brief Base of the regularized losses on a bilateral kernel W_n over
 *        (x/\sigma_{xy}, y/\sigma_{xy}, I_1/\sigma_{rgb}, ..., I_C/\sigma_{rgb})
 *        (DenseCRFLoss, NormalizedCutLoss): the bottoms, their checks, the
 *        region of interest, the scale_factor resize and its adjoint, one
 *        permutohedral lattice per image (kept for Backward), and Backward.
 *
 * Bottoms: image N x C x H x W (any C >= 1); probabilities N x K x H x W;
 * optional ROI N x 1 x H x W (nonzero = inside). Without the ROI bottom a
 * pixel is outside when all its image values truncate to 0 (DeepLab pads crops
 * with the mean, which is 0 after mean subtraction). Top: the scalar loss,
 * (1/N) sum_n of the derived layer's per-image term. No gradient for the image
 * or the ROI: set propagate_down: false for them.
 *
 * With scale_factor s < 1, image and ROI are sampled (nearest) and the
 * probabilities resized (bilinear, half-pixel centres) to floor(s H) x
 * floor(s W) and filtered there with sigma_xy * s; the gradient is mapped back
 * through the adjoint of that resize.
 */
template <typename Dtype>
class BilateralLossLayer : public LossLayer<Dtype> {
 public:
  explicit BilateralLossLayer(const LayerParameter& param)
      : LossLayer<Dtype>(param), halves_(false) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline int ExactNumBottomBlobs() const { return -1; }
  virtual inline int MinBottomBlobs() const { return 2; }
  virtual inline int MaxBottomBlobs() const { return 3; }
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index == 1;
  }

 protected:
  /// One image's lattice and what Backward needs of it, kept from Forward
  /// to Backward and between calls (same-sized batches do not allocate).
  struct Workspace {
    PermutohedralLattice lattice;
    std::vector<float> roi;   // h*w, 1 inside, 0 outside
    std::vector<float> grad;  // the derived layer's stored gradient, if any
    /// The lattice's point weights: the ROI, or NULL where every pixel is
    /// inside (the same values; the splat and slice then skip a stream).
    const float* point_weight() const { return all_inside ? NULL : &roi[0]; }
    bool all_inside = false;
  };
  /// One thread's scratch, reused image after image.
  struct Scratch {
    std::vector<float> image;     // C x h x w, the image sampled or as float
    std::vector<float> prob;      // K x h x w, S as float when Dtype is not
    std::vector<float> diff;      // ImageGradient's output when Dtype is not
    std::vector<float> a, b;      // the derived layer's
    std::vector<Dtype> rows;      // one plane's resize rows (scale_factor < 1)
  };

  /// The derived layer's kernel widths and resolution, and its parameter's
  /// name for messages.
  virtual void ReadParam(float* sigma_xy, float* sigma_rgb,
      float* scale_factor) const = 0;
  virtual const char* param_name() const = 0;
  /// One image, its lattice built: returns the image's loss term for the
  /// probabilities prob (K x hw, planar) inside ws->roi.
  virtual double ImageLoss(const float* prob, int hw, Workspace* ws,
      Scratch* scratch) = 0;
  /// After ImageLoss on the same workspace: diff (K x hw, planar) = scale *
  /// d(image term)/dS, zero outside the ROI.
  virtual void ImageGradient(int hw, float scale, Workspace* ws,
      float* diff) = 0;

  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  int classes_;

 private:
  /// Dies naming the first non-finite value of blob's [begin, begin +
  /// count); returns the largest |value| there.
  double CheckFinite(const Blob<Dtype>& blob, int begin, int count,
      const char* what) const;
  /// Image n's checks (finite, in the lattice's range) and its ROI.
  void PrepareImage(const vector<Blob<Dtype>*>& bottom, int n);
  /// Bilinear resize of one H x W plane to h x w (scale_factor < 1), with
  /// tmp W values of scratch ...
  void Downsample(const Dtype* src, Dtype* tmp, Dtype* dst) const;
  /// ... and its adjoint, written to an H x W plane, with tmp h x W.
  void DownsampleAdjoint(const Dtype* src, Dtype* tmp, Dtype* dst) const;
  /// Builds one image's lattice, then calls ImageLoss.
  double FilterImage(const Dtype* image, const Dtype* prob, Workspace* ws,
      Scratch* scratch);

  float sigma_xy_;
  float sigma_rgb_;
  float scale_;
  int num_, channels_, height_, width_;
  int small_height_, small_width_;  // the filtered resolution
  Blob<Dtype> small_prob_;     // N x K x h x w, when scale_factor < 1
  std::vector<int> near_y_, near_x_;       // nearest source row / column
  std::vector<int> lin_y_, lin_x_;         // first bilinear tap
  std::vector<int> next_y_, next_x_;       // second bilinear tap
  std::vector<Dtype> frac_y_, frac_x_;     // weight of the second tap
  // The rows of bilinear taps on each full-resolution row: row y has
  // tap_row_/tap_weight_ [tap_start_[y], tap_start_[y + 1]).
  std::vector<int> tap_start_, tap_row_;
  std::vector<Dtype> tap_weight_;
  bool halves_;  // the columns' taps are those of scale_factor 1/2
  std::vector<Workspace> workspaces_;     // one per image
  std::vector<Scratch> scratch_;          // one per thread
  std::vector<double> image_loss_;
};

}  // namespace caffe

#endif  // CAFFE_BILATERAL_LOSS_LAYER_HPP_
