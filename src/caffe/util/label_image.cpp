#include <opencv2/imgcodecs.hpp>
#include <png.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "caffe/util/label_image.hpp"

namespace caffe {

namespace {

// Closes the file and frees libpng's state however the read ends.
struct PngReader {
  FILE* file;
  png_structp png;
  png_infop info;
  PngReader() : file(NULL), png(NULL), info(NULL) {}
  ~PngReader() {
    if (png) png_destroy_read_struct(&png, info ? &info : NULL, NULL);
    if (file) std::fclose(file);
  }
};

void SilentWarning(png_structp, png_const_charp) {}

bool ReadPng(const std::string& path, cv::Mat* labels, std::string* error) {
  PngReader r;
  r.file = std::fopen(path.c_str(), "rb");
  if (!r.file) {
    *error = "cannot open it";
    return false;
  }
  r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL,
                                 SilentWarning);
  r.info = r.png ? png_create_info_struct(r.png) : NULL;
  if (!r.info) {
    *error = "out of memory";
    return false;
  }
  if (setjmp(png_jmpbuf(r.png))) {
    *error = "it is not a valid PNG file";
    return false;
  }
  png_init_io(r.png, r.file);
  png_read_info(r.png, r.info);
  const int width = png_get_image_width(r.png, r.info);
  const int height = png_get_image_height(r.png, r.info);
  const int depth = png_get_bit_depth(r.png, r.info);
  const int type = png_get_color_type(r.png, r.info);
  if (type != PNG_COLOR_TYPE_PALETTE && type != PNG_COLOR_TYPE_GRAY) {
    *error = "it is a colour or alpha PNG; labels must be a palette or 8-bit "
             "grey PNG whose values are class indices";
    return false;
  }
  if (depth == 16) {
    *error = "it is a 16-bit PNG; labels must be 8-bit";
    return false;
  }
  if (depth < 8) png_set_packing(r.png);  // one byte per pixel, values kept
  png_read_update_info(r.png, r.info);
  labels->create(height, width, CV_8UC1);
  std::vector<png_bytep> rows(height);
  for (int y = 0; y < height; ++y) rows[y] = labels->ptr<png_byte>(y);
  png_read_image(r.png, rows.data());
  png_read_end(r.png, NULL);
  return true;
}

}  // namespace

bool ReadLabelImage(const std::string& path, cv::Mat* labels,
    std::string* error) {
  unsigned char magic[8] = {0};
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    *error = "cannot open it";
    return false;
  }
  const size_t got = std::fread(magic, 1, 8, f);
  std::fclose(f);
  if (got == 8 && png_sig_cmp(magic, 0, 8) == 0) {
    return ReadPng(path, labels, error);
  }
  cv::Mat raw = cv::imread(path, cv::IMREAD_UNCHANGED);
  if (raw.empty()) {
    *error = "OpenCV cannot decode it";
    return false;
  }
  if (raw.type() != CV_8UC1) {
    *error = "it is not an 8-bit one-channel image of class indices";
    return false;
  }
  *labels = raw;
  return true;
}

}  // namespace caffe
