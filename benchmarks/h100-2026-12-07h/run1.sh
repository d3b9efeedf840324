#!/bin/bash
# Prepared, not run (no GPU was lent). Run twice, STAGE=1 then STAGE=2, or once with STAGE=0.
# The K loop of the TABLE's last row without a zero-trip path. ptxas (CUDA 12.8, Triton's)
# reports C7515 for that row's kernels (128-row tiles by 256-column blocks, 8 warps): "wgmma
# instructions are serialized due to non wgmma instructions defining accumulator registers ...
# between start and end of the pipeline stage". The K loop's trip count was zero for tiles
# without rows, and that path's zeroed accumulators joined the loop's exit before its last
# wgmma wait: every HGMMA waited for the one before (8 waits a K tile; 2 with a trip count of at
# least 1). The other rows' kernels are not serialized either way.
# base: this tree with the trip count as before; fix: this tree.
# STAGE=1: the kernel alone, 20b at P = 4096 (128 rows an expert: the row above,
#   not serialized, where tiles without rows now cost one K step) and
#   16,384 (512: the last row), alternated; then 20b prefill 1k (that row), 2k and 8k
#   end to end, alternated.
# STAGE=2: 20b prefill again, 120b prefill 8k, alternated; the grouped matmul's GPU tests.
# STAGE=0 (one call, by priority): the kernel alternated once, the grouped matmul's GPU tests,
#   20b prefill alternated, the kernel again, 256 x 128 blocks.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv \
  | tee -a $OUT/summary.log
export PYTHONPATH=/tmp/site:.
left() { echo $((${LIMIT:-590} - SECONDS - 3)); }
mkdir -p /tmp/base && cp -r mxfp4_jax experiments configs /tmp/base/
sed -i 's/loop(0, jnp.maximum(has_work \* num_k_tiles, 1))/loop(0, has_work * num_k_tiles)/' \
  /tmp/base/mxfp4_jax/kernels/pallas_grouped.py
echo "base's zero-trip loop lines: $(grep -c 'loop(0, has_work \* num_k_tiles)' \
  /tmp/base/mxfp4_jax/kernels/pallas_grouped.py)" | tee -a $OUT/summary.log
here=$PWD
# run NAME TREE LIMIT COMMAND...: the command in the tree, its log under $OUT, key lines kept
run() {
  local name=$1 tree=$2 limit=$3; shift 3
  [ $(left) -lt $limit ] && { echo "$name skipped: $(left) s left" | tee -a $OUT/summary.log; return; }
  local start=$SECONDS
  (cd $tree && timeout $limit "$@") > $OUT/$name.log 2>&1
  echo "$name rc=$? in $((SECONDS - start)) s" | tee -a $OUT/summary.log
  grep -E "^ +20b|prefill batch|Error" $OUT/$name.log | sed "s/^/  [$name] /" \
    | tee -a $OUT/summary.log
}
K="python -m experiments.bench_kernel --config.shapes=20b_gate_up,20b_down
  --config.rows=4096,16384 --config.baselines= --config.plot=False"
P20="python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=
  --config.bench.prefill_lengths=1024,2048,8192"
P120="python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py
  --config.bench.batch_sizes= --config.bench.prefill_lengths=8192"
gpu_tests() {
  if [ $(left) -gt 60 ]; then
    XLA_PYTHON_CLIENT_PREALLOCATE=false timeout $(left) python -m pytest -q -n 6 \
      -p no:cacheprovider tests/test_grouped_matmul.py > $OUT/gpu_tests.log 2>&1
    echo "gpu_tests rc=$?: $(tail -1 $OUT/gpu_tests.log)" | tee -a $OUT/summary.log
  fi
}
if [ "${STAGE:-1}" = 0 ]; then
  run kernel_base_1 /tmp/base 90 $K
  run kernel_fix_1 $here 90 $K
  LIMIT=$((${LIMIT:-590} - ${RESERVE:-240})) gpu_tests  # RESERVE: seconds kept for the rest
  run e2e20_fix_1 $here 130 $P20
  run e2e20_base_1 /tmp/base 130 $P20
  run kernel_fix_2 $here 90 $K
  run kernel_base_2 /tmp/base 90 $K
  run kernel_fix_256x128 $here 90 $K --config.kernel_options=block_m=256,block_n=128
elif [ "${STAGE:-1}" = 1 ]; then
  for round in 1 2; do
    run kernel_base_$round /tmp/base 90 $K
    run kernel_fix_$round $here 90 $K
  done
  run e2e20_base_1 /tmp/base 130 $P20
  run e2e20_fix_1 $here 130 $P20
  run kernel_fix_256x128 $here 90 $K --config.kernel_options=block_m=256,block_n=128
else
  run e2e20_fix_2 $here 130 $P20
  run e2e20_base_2 /tmp/base 130 $P20
  run e2e120_base /tmp/base 130 $P120
  run e2e120_fix $here 130 $P120
  gpu_tests
fi
echo "done at ${SECONDS}s" | tee -a $OUT/summary.log
