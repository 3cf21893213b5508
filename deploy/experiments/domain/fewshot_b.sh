#!/bin/bash
# Domain B few-shot children (from the domain-A parent and from the base model), one after the
# other, then the greedy LoRA evaluations on all domain-B test records and one report that puts
# every system side by side with paired bootstraps: docs/data.md "A second domain end to end".
# Run from the repository root after var/domain/{a,b0} are prepared and indexed and the parent
# is trained (it waits for var/domain/a/adapter/manifest.json). It writes the --config files
# (adapter_dir, greedy decoding: num_beams = 1, candidates = 1, one thread) itself.
# FEW_MIN (default 10) is each child's --max-minutes, FEW_EPOCHS (default 5) its --epochs
# (early stopping on validation loss keeps the best step). AUTOGROUP_NICE (e.g. -10) raises the
# CPU share of this script's session against other sessions (plain nice acts only inside one):
#   AUTOGROUP_NICE=-10 setsid bash deploy/experiments/domain/fewshot_b.sh
# Logs: var/domain/logs/*.log, wall/CPU times in var/domain/logs/times.txt
set -eu
if [ -n "${AUTOGROUP_NICE:-}" ]; then echo "$AUTOGROUP_NICE" > /proc/self/autogroup; fi
PY="env PYTHONPATH=$PWD ${PYTHON:-python} -m recx_worker.cli"
D=var/domain
mkdir -p $D/logs
while [ ! -f $D/a/adapter/manifest.json ]; do sleep 20; done
T="/usr/bin/time -a -o $D/logs/times.txt -f"
COMMON="--data $D/b0/data --index $D/b0/index --max-train 300 --max-valid 60 --rank 16 --layers 10
 --lr 1e-3 --epochs ${FEW_EPOCHS:-5} --eval-every 15 --max-minutes ${FEW_MIN:-10} --threads 1
 --no-progress"
echo "children start $(date -u +%T)" >> $D/logs/times.txt
$T "child %e s wall %U user" $PY train lora $COMMON --init-adapter $D/a/adapter \
  --out $D/b0/adapter-child --work $D/b0/work-child > $D/logs/train_child.log 2>&1
$T "nopar %e s wall %U user" $PY train lora $COMMON \
  --out $D/b0/adapter-nopar --work $D/b0/work-nopar > $D/logs/train_nopar.log 2>&1
for run in parent:a/adapter child:b0/adapter-child nopar:b0/adapter-nopar; do
  name=${run%%:*}
  printf '[chain.options.lora]\nadapter_dir = "%s"\nnum_beams = 1\ncandidates = 1\nthreads = 1\n' \
    "$PWD/$D/${run#*:}" > $D/lora-$name.toml
  $T "eval $name %e s wall %U user" $PY eval --data $D/b0/data --index $D/b0/index \
    --explainers lora --no-baselines --no-progress --config $D/lora-$name.toml \
    --out $D/b0/eval-$name > $D/logs/eval_$name.log 2>&1
done
$T "report %e s wall %U user" $PY eval --data $D/b0/data --index $D/b0/index \
  --explainers template --no-progress \
  --external parent=$D/b0/eval-parent/outputs/lora.jsonl \
  --external child=$D/b0/eval-child/outputs/lora.jsonl \
  --external nopar=$D/b0/eval-nopar/outputs/lora.jsonl \
  --compare child:template --compare child:most-frequent --compare child:nopar \
  --compare child:parent --compare parent:template --compare nopar:template \
  --out $D/b0/report > $D/logs/report.log 2>&1
echo "all done $(date -u +%T)" >> $D/logs/times.txt
