#!/bin/bash
# resume.sh NAME [CORE]: continues training/in_flight/NAME in runs/NAME, in the
# background, pinned to CORE (default 0), logging to runs/NAME.log.
set -euo pipefail
name=$1
core=${2:-0}
root=$(cd "$(dirname "$0")/.." && pwd)
saved=$root/training/in_flight/$name
run=$root/runs/$name
if [ ! -d "$run" ]; then
  mkdir -p "$root/runs"
  cp -r "$saved" "$run"
fi
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=2
nohup taskset -c "$core" tfvae train --resume --out "$run" --verbose 2 \
  >> "$root/runs/$name.log" 2>&1 &
echo "resumed $name in $run (pid $!, core $core); log: runs/$name.log"
