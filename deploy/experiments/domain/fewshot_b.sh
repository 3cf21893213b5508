#!/bin/bash
# Domain B few-shot (from the domain-A parent and from the base model) and the LoRA evals of
# docs/data.md "A second domain end to end". Run from the repository root after the parent is
# trained (it waits for var/domain/a/adapter/manifest.json). The --config files name the
# adapter and greedy decoding:
#   [chain.options.lora]
#   adapter_dir = "<abs path>/var/domain/a/adapter"     # lora-parent.toml (b0/adapter-child, b0/adapter-nopar)
#   num_beams = 1
#   candidates = 1
# FEW_MIN (default 6) is each child's --max-minutes, LIMIT (default 20) the eval's --limit.
# Logs: var/domain/logs/*.log, wall/CPU times in var/domain/logs/times.txt
set -u
PY="env PYTHONPATH=$PWD nice -n 10 ${PYTHON:-python} -m recx_worker.cli"
D=var/domain
while [ ! -f $D/a/adapter/manifest.json ]; do sleep 20; done
echo "parent done $(date -u +%T)" >> $D/logs/times.txt
T="/usr/bin/time -a -o $D/logs/times.txt -f"
COMMON="--data $D/b0/data --index $D/b0/index --max-train 300 --max-valid 40 --rank 16 --layers 10 --lr 1e-3 --epochs 1 --eval-every 10 --max-minutes ${FEW_MIN:-6} --threads 2"
$T "child %e s wall %U user" $PY train lora $COMMON --init-adapter $D/a/adapter --out $D/b0/adapter-child --work $D/b0/work-child > $D/logs/train_child.log 2>&1 &
$T "nopar %e s wall %U user" $PY train lora $COMMON --out $D/b0/adapter-nopar --work $D/b0/work-nopar > $D/logs/train_nopar.log 2>&1 &
$T "eval parent %e s wall %U user" $PY eval --data $D/b0/data --index $D/b0/index --explainers lora --limit ${LIMIT:-20} --no-baselines --no-progress --config $D/lora-parent.toml --out $D/b0/eval-parent > $D/logs/eval_parent.log 2>&1 &
wait
echo "children done $(date -u +%T)" >> $D/logs/times.txt
$T "eval child %e s wall %U user" $PY eval --data $D/b0/data --index $D/b0/index --explainers lora --limit ${LIMIT:-20} --no-baselines --no-progress --config $D/lora-child.toml --out $D/b0/eval-child > $D/logs/eval_child.log 2>&1 &
$T "eval nopar %e s wall %U user" $PY eval --data $D/b0/data --index $D/b0/index --explainers lora --limit ${LIMIT:-20} --no-baselines --no-progress --config $D/lora-nopar.toml --out $D/b0/eval-nopar > $D/logs/eval_nopar.log 2>&1 &
wait
echo "all done $(date -u +%T)" >> $D/logs/times.txt
