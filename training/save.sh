#!/bin/bash
# save.sh NAME [RUN_DIR]: copies what `tfvae train --resume` needs of a run
# (default runs/NAME) into training/in_flight/NAME, to be committed.
set -euo pipefail
name=$1
root=$(cd "$(dirname "$0")/.." && pwd)
run=${2:-$root/runs/$name}
saved=$root/training/in_flight/$name
state=$(ls -d "$run"/backup/state-* | sort | tail -n 1)
rm -rf "$saved.partial"
mkdir -p "$saved.partial/backup"
cp "$run/run.json" "$run/history.json" "$saved.partial/"
if [ -f "$run/best.weights.h5" ]; then cp "$run/best.weights.h5" "$saved.partial/"; fi
cp -r "$state" "$saved.partial/backup/"
rm -rf "$saved"
mv "$saved.partial" "$saved"
echo "saved $run (state $(basename "$state")) to $saved"
