#ifndef CAFFE_SEG_ACCURACY_LAYER_HPP_
#define CAFFE_SEG_ACCURACY_LAYER_HPP_

#include <set>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Segmentation accuracy from a K x K confusion matrix (DeepLab's
 *        SegAccuracy layer).
 *
 * Bottoms: scores N x K x H x W (the prediction is the arg max over K) and
 * labels N x 1 x H x W. Pixels whose label is in ignore_label are skipped;
 * any other label must lie in [0, K). Top: 1 x 1 x 1 x 3 holding
 * [pixel accuracy, mean class accuracy, mean IoU]. Class accuracy averages
 * over classes present in the labels, IoU over classes present in the labels
 * or the predictions. With reset: false the matrix accumulates over calls, so
 * after one TEST pass over a list the top holds that list's scores.
 */
template <typename Dtype>
class SegAccuracyLayer : public Layer<Dtype> {
 public:
  explicit SegAccuracyLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "SegAccuracy"; }
  virtual inline int ExactNumBottomBlobs() const { return 2; }
  virtual inline int ExactNumTopBlobs() const { return 1; }

  /// The accumulated matrix, row = true class, column = predicted class.
  const std::vector<double>& confusion() const { return confusion_; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  /// Not differentiable: refuses a gradient request.
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

 private:
  std::set<int> ignore_label_;
  int classes_;
  std::vector<double> confusion_;
};

}  // namespace caffe

#endif  // CAFFE_SEG_ACCURACY_LAYER_HPP_
