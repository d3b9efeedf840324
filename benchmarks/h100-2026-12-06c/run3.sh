#!/bin/bash
# 20b down at 192 and 256 rows per expert, the last place pick_config still splits K for tiles of
# more than 16 rows (256-row tiles of 128 columns: 736 programs, 3 splits): the table's split
# against k_splits=1, the kernel alone and prefill end to end (gate_up unsplit in both).
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
K="python -m experiments.bench_kernel --config=configs/bench_kernel.py --config.shapes=20b_down --config.rows=6144,8192 --config.baselines= --config.plot=False"
t kernel_table 60 $K --config.output_dir=$OUT/kernel_table
t kernel_split1 60 $K --config.kernel_options=k_splits=1 --config.output_dir=$OUT/kernel_split1
grep -h "P=" $OUT/kernel_*.log | tee -a $OUT/summary.log
E="python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes= --config.bench.prefill_lengths=1536,2048"
for i in 1 2; do
  t e2e_table$i 130 $E --config.bench.output_dir=$OUT/e2e_table$i
  grep -h "prefill batch" $OUT/e2e_table$i.log | tee -a $OUT/summary.log
  t e2e_split1_$i 130 $E --config.bench.kernel_options=k_splits=1 --config.bench.output_dir=$OUT/e2e_split1_$i
  grep -h "prefill batch" $OUT/e2e_split1_$i.log | tee -a $OUT/summary.log
done
