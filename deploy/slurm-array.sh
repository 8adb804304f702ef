#!/usr/bin/env bash
# A routelab sweep cut into N shards, as a Slurm job array: task I runs
# `routelab run SCENARIO --shard I/N` into RESULTS/shard-I; a dependent job then runs
# `routelab merge RESULTS/shard-* --out RESULTS/merged`, which writes byte for byte the folder
# one unsharded `routelab run` would have written. See deploy/README.md.
#
# Submit from the repository root, on a filesystem every node sees:
#
#   deploy/slurm-array.sh submit        # the array (N tasks) and the dependent merge job
#
# which does, by hand:
#
#   jid=$(sbatch --parsable --array=0-7 deploy/slurm-array.sh)
#   sbatch --dependency=afterok:$jid --job-name=routelab-merge \
#          --wrap "routelab merge results/sweep-load-sharded/shard-* --out results/sweep-load-sharded/merged"
#
# Edit (or set in the environment; sbatch passes it on to the tasks):
#   SCENARIO   the scenario file                     (scenarios/smoke/sweep-load.yaml)
#   RESULTS    where the shards and the merge go     (results/<scenario file name>-sharded)
#   SHARDS     N; `submit` sets --array=0-(N-1) from it; with a plain `sbatch`, keep the
#              #SBATCH --array line below equal to 0-(N-1)   (8). A task beyond N-1 fails
#              (`--shard` checks I < N); a missing one makes `routelab merge` fail.
#   ROUTELAB   the routelab binary                   (routelab on PATH, else target/release/routelab)
#   and the #SBATCH resources: one task runs one shard on --cpus-per-task cores.
#
#SBATCH --job-name=routelab-sweep
#SBATCH --array=0-7
#SBATCH --cpus-per-task=2
#SBATCH --mem=4G
#SBATCH --time=02:00:00
#SBATCH --output=slurm-%x-%A_%a.out
set -euo pipefail

SCENARIO="${SCENARIO:-scenarios/smoke/sweep-load.yaml}"
RESULTS="${RESULTS:-results/$(basename "${SCENARIO%.yaml}")-sharded}"
SHARDS="${SHARDS:-8}"
if [ -z "${ROUTELAB:-}" ]; then
  if command -v routelab >/dev/null 2>&1; then ROUTELAB=routelab; else ROUTELAB=target/release/routelab; fi
fi

if [ "${1:-}" = "submit" ]; then
  jid="$(sbatch --parsable --array="0-$((SHARDS - 1))" --export=ALL,SCENARIO="$SCENARIO",RESULTS="$RESULTS",SHARDS="$SHARDS",ROUTELAB="$ROUTELAB" "$0")"
  jid="${jid%%;*}"
  mid="$(sbatch --parsable --dependency="afterok:$jid" --job-name=routelab-merge --cpus-per-task=1 \
    --output="slurm-%x-%j.out" --wrap "'$ROUTELAB' merge '$RESULTS'/shard-* --out '$RESULTS/merged'")"
  echo "submitted array job $jid ($SHARDS shards of $SCENARIO) and merge job ${mid%%;*} -> $RESULTS/merged"
  exit 0
fi

: "${SLURM_ARRAY_TASK_ID:?run this with sbatch (an array task), or as: $0 submit}"
exec "$ROUTELAB" run "$SCENARIO" \
  --shard "$SLURM_ARRAY_TASK_ID/$SHARDS" \
  --out "$RESULTS/shard-$SLURM_ARRAY_TASK_ID" \
  --threads "${SLURM_CPUS_PER_TASK:-0}" \
  --quiet --no-plots
