#!/usr/bin/env bash
# Both training phases and the test with the `caffe` tool, the shell way of the
# release's run_pascal_scribble.sh: fill the shipped prototxt/<NET_ID>/ files
# with sed, `caffe train` phase 1 (pCE), phase 2 (pCE + DenseCRF loss) from
# phase 1's final snapshot, then `caffe test` over the test list.
#
# Run it from the folder that holds the experiment folder $EXP, laid out as
# the release's: $EXP/list/$TRAIN_SET.txt, $EXP/list/$TEST_SET.txt;
# it writes $EXP/config/$NET_ID, $EXP/model/$NET_ID and $EXP/log/$NET_ID.
#
#   NET_ID=deeplab_largeFOV EXP=pascal_scribble DATA_ROOT=/data/VOC2012/ \
#   INIT_WEIGHTS=init.caffemodel DEV_ID=0 tools/train.sh
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

NET_ID=${NET_ID:-deeplab_largeFOV}       # deeplab_largeFOV deeplab_msc_largeFOV deeplab_vgg16 resnet-101 small
EXP=${EXP:-pascal_scribble}
DATA_ROOT=${DATA_ROOT:?set DATA_ROOT to the folder the list entries are relative to}
TRAIN_SET=${TRAIN_SET:-train_aug}
TEST_SET=${TEST_SET:-val}
NUM_LABELS=${NUM_LABELS:-21}
DENSECRF_LOSS_WEIGHT=${DENSECRF_LOSS_WEIGHT:-1e-8}
DEV_ID=${DEV_ID:-}                       # GPU id; empty: CPU
RUN_TRAIN=${RUN_TRAIN:-1}
RUN_TRAINWITHDENSECRFLOSS=${RUN_TRAINWITHDENSECRFLOSS:-1}
RUN_TEST=${RUN_TEST:-1}
INIT_WEIGHTS=${INIT_WEIGHTS:-}           # phase 1 initialisation (e.g. ImageNet VGG16)
MAX_ITER=${MAX_ITER:-}                   # override the solvers' 9000
CROP_SIZE=${CROP_SIZE:-321}
TEST_CROP_SIZE=${TEST_CROP_SIZE:-513}
BATCH_SIZE=${BATCH_SIZE:-}                # default: the release's for the net

die() { echo "train.sh: $*" >&2; exit 1; }
FILLED=(NET_ID EXP DATA_ROOT TRAIN_SET TEST_SET NUM_LABELS BATCH_SIZE CROP_SIZE TEST_CROP_SIZE
        DENSECRF_LOSS_WEIGHT)
for v in "${FILLED[@]}"; do
  case ${!v} in *[\"\\]* | *$'\n'*)
    die "$v is '${!v}'; it goes into prototxt strings, so it cannot hold '\"', '\\' or a newline" ;;
  esac
done
FILLED+=(SOLVER_MODE)
[ -d "$REPO/prototxt/$NET_ID" ] || die "unknown NET_ID '$NET_ID'; choose one of: $(ls "$REPO/prototxt" | tr '\n' ' ')"
[ -d "$DATA_ROOT" ] || die "DATA_ROOT '$DATA_ROOT' is not a folder"
for s in "$TRAIN_SET" "$TEST_SET"; do
  [ -f "$EXP/list/$s.txt" ] || die "no list $EXP/list/$s.txt (make one with 'rloss lists')"
done
for v in NUM_LABELS CROP_SIZE TEST_CROP_SIZE BATCH_SIZE MAX_ITER; do  # empty: the default
  [ -z "${!v}" ] || [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v is '${!v}'; give a positive integer"
done
[[ $DENSECRF_LOSS_WEIGHT =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$ ]] \
  && awk -v w="$DENSECRF_LOSS_WEIGHT" 'BEGIN { exit !(w + 0 > 0) }' \
  || die "DENSECRF_LOSS_WEIGHT is '$DENSECRF_LOSS_WEIGHT'; give a positive number such as 1e-8"
command -v caffe > /dev/null || source "$REPO/env.sh"
command -v caffe > /dev/null || die "no caffe tool: run 'make' in $REPO"
# Refuse crops the net cannot take (Caffe would abort setting it up) and test
# images larger than the test crop (caffe test would score only their centre),
# before hours of training; the release's batch size for the net unless given.
BATCH_SIZE=$(GLOG_minloglevel=2 python3 -c "import sys, rloss.data as d, rloss.nets as n
net, crop, test_crop, batch, test_list, root = sys.argv[1:]
try:
    n.check_crop(net, int(crop), 'CROP_SIZE')
    n.check_crop(net, int(test_crop), 'TEST_CROP_SIZE')
    d.check_fits(test_list, root, int(test_crop), int(test_crop),
                 f'raise TEST_CROP_SIZE to {n.STRIDES[net]}k+1 at or above that')
except ValueError as e:
    sys.exit(f'train.sh: {e}')
print(batch or n.BATCH_SIZES[net])" "$NET_ID" "$CROP_SIZE" "$TEST_CROP_SIZE" "$BATCH_SIZE" \
  "$EXP/list/$TEST_SET.txt" "$DATA_ROOT")
if [ -n "$DEV_ID" ]; then SOLVER_MODE=GPU; GPU_ARG=(--gpu="$DEV_ID"); else SOLVER_MODE=CPU; GPU_ARG=(); fi
export GLOG_logtostderr=1                # no glog files in /tmp; logs are tee'd below

CONFIG=$EXP/config/$NET_ID MODEL=$EXP/model/$NET_ID LOG=$EXP/log/$NET_ID
mkdir -p "$CONFIG" "$MODEL" "$LOG"

# fill SRC DEST: the release's sub.sed, then refuse any placeholder left over.
# '&' and '#' are escaped for sed; the values' checks above keep out '"' and
# '\', which would need escaping in the prototxts' quoted strings as well.
fill() {
  local v script=
  for v in "${FILLED[@]}"; do
    script+="s#\${$v}#$(printf '%s' "${!v}" | sed 's/[&#]/\\&/g')#g;"
  done
  sed -e "$script" "$1" > "$2"
  [ -z "$MAX_ITER" ] || sed -i "s/^max_iter: .*/max_iter: $MAX_ITER/" "$2"
  if grep -q '\${' "$2"; then die "$2 still has $(grep -o '\${[A-Z_]*}' "$2" | sort -u | tr '\n' ' ')"; fi
}

# final NET (train or trainwithdensecrfloss): the caffemodel at its solver's
# max_iter, so that a run shorter than an earlier one in the same EXP is not
# shadowed by that one's higher-numbered snapshots; else (an interrupted run)
# the highest-numbered.
final() {
  local prefix=$MODEL/$1 iter=$MAX_ITER
  [ -n "$iter" ] || iter=$(sed -n 's/^max_iter: *//p' "$REPO/prototxt/$NET_ID/solver${1#train}.prototxt")
  if [ -f "${prefix}_iter_$iter.caffemodel" ]; then echo "${prefix}_iter_$iter.caffemodel"; return; fi
  ls "$prefix"_iter_*.caffemodel 2>/dev/null | sed 's/.*_iter_\([0-9]*\)\.caffemodel/\1 &/' \
    | sort -n | tail -1 | cut -d' ' -f2-
}

run_phase() {  # run_phase NET SOLVER WEIGHTS
  local net=$1 solver=$2 weights=$3
  fill "$REPO/prototxt/$NET_ID/$net.prototxt" "$CONFIG/${net}_$TRAIN_SET.prototxt"
  fill "$REPO/prototxt/$NET_ID/$solver.prototxt" "$CONFIG/${solver}_$TRAIN_SET.prototxt"
  local args=(train --solver="$CONFIG/${solver}_$TRAIN_SET.prototxt" "${GPU_ARG[@]}")
  [ -z "$weights" ] || args+=(--weights="$weights")
  echo "== $NET_ID $net: caffe ${args[*]}"
  caffe "${args[@]}" 2>&1 | tee "$LOG/$net.log" | grep -E "Iteration [0-9]+.*loss =|Snapshotting to|Optimization Done|Check failed|Error" || true
  [ "${PIPESTATUS[0]}" -eq 0 ] || die "caffe train failed; see $LOG/$net.log"
}

if [ "$RUN_TRAIN" = 1 ]; then
  [ -z "$INIT_WEIGHTS" ] || [ -f "$INIT_WEIGHTS" ] || die "INIT_WEIGHTS '$INIT_WEIGHTS' does not exist"
  run_phase train solver "$INIT_WEIGHTS"
fi
if [ "$RUN_TRAINWITHDENSECRFLOSS" = 1 ]; then
  phase1=$(final train)
  [ -n "$phase1" ] || die "no phase-1 snapshot in $MODEL; run with RUN_TRAIN=1 first"
  run_phase trainwithdensecrfloss solverwithdensecrfloss "$phase1"
fi
if [ "$RUN_TEST" = 1 ]; then
  fill "$REPO/prototxt/$NET_ID/test.prototxt" "$CONFIG/test_$TEST_SET.prototxt"
  n=$(grep -c '[^[:space:]]' "$EXP/list/$TEST_SET.txt" || true)  # the lines ImageSegData reads
  for prefix in train trainwithdensecrfloss; do
    model=$(final "$prefix")
    [ -n "$model" ] || continue
    echo "== $NET_ID test $(basename "$model") on $TEST_SET ($n images)"
    caffe test --model="$CONFIG/test_$TEST_SET.prototxt" --weights="$model" --iterations="$n" \
      "${GPU_ARG[@]}" > "$LOG/test_$prefix.log" 2>&1 || die "caffe test failed; see $LOG/test_$prefix.log"
    # SegAccuracy accumulates (reset: false): the last batch holds the whole list's scores.
    grep "Batch $((n - 1))," "$LOG/test_$prefix.log" | awk '{print $NF}' | paste -sd' ' \
      | awk '{printf "pixel accuracy %s, mean class accuracy %s, mIoU %s\n", $1, $2, $3}'
  done
fi
if command -v rloss > /dev/null && ls "$LOG"/train*.log > /dev/null 2>&1; then
  logs=("$LOG/train.log"); [ ! -f "$LOG/trainwithdensecrfloss.log" ] || logs+=("$LOG/trainwithdensecrfloss.log")
  [ -f "${logs[0]}" ] || logs=("${logs[@]:1}")
  rloss parse-log "${logs[@]}" --out "$LOG/curves" | tail -1
fi
