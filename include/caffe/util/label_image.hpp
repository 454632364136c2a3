#ifndef CAFFE_UTIL_LABEL_IMAGE_HPP_
#define CAFFE_UTIL_LABEL_IMAGE_HPP_

#include <opencv2/core/core.hpp>

#include <string>

namespace caffe {

/**
 * @brief Reads a label image as class indices into an 8-bit one-channel Mat.
 *
 * Palette PNGs (PASCAL VOC's SegmentationClass) give their palette indices,
 * which OpenCV cannot: it expands palettes to colours. 8-bit grey images give
 * their values. Colour, grey + alpha and 16-bit images are refused, because
 * any conversion would invent classes. Returns false with *error set to the
 * reason when the file cannot be used.
 */
bool ReadLabelImage(const std::string& path, cv::Mat* labels,
    std::string* error);

}  // namespace caffe

#endif  // CAFFE_UTIL_LABEL_IMAGE_HPP_
