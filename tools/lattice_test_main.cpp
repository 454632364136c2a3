// main() for the lattice's own tests outside Caffe's test binary: they need
// neither Caffe nor its test main, so tools/run_tests.sh can cross-compile
// them with gtest alone and run them on aarch64 under qemu-user.
#include "gtest/gtest.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
