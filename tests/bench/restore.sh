#!/usr/bin/env bash
# Restore time of a store with KEYS keys (default 1,000,000): from the
# changelog alone, and from a local checkpoint plus the changelog's tail,
# measured side by side (RUNS alternations, medians).
#   tests/bench/restore.sh BROKERS [KEYS] [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
brokers=$1 keys=${2:-1000000} runs=${3:-3}
sproc=$here/build/sproc
py=${SPROC_CACHE:-$HOME/.cache/sproc}/venv/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tag=restore$$
seq 1 "$keys" | sed 's/^/key-/' >"$work/keys.txt"
"$py" - "$brokers" "$tag" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({"bootstrap.servers": sys.argv[1]})
t = sys.argv[2] + "-in"
a.create_topics([NewTopic(t, 4, 1)])[t].result(30)
PY
cat >"$work/feed.lua" <<LUA
local sproc = require "sproc"
sproc.source{ file = "$work/keys.txt" }
  :key_by(function(r) return r.value end)
  :to{ topic = "$tag-in" }
LUA
cat >"$work/count.lua" <<LUA
local sproc = require "sproc"
local counts = sproc.store{ name = "counts" }
sproc.source{ topic = "$tag-in" }
  :each(function(r) counts:incr(r.key) end)
LUA
"$sproc" "$work/feed.lua" --brokers "$brokers" --app "$tag-feed" --until-end --quiet
# the first run fills the store (and its changelog) and leaves checkpoints
"$sproc" "$work/count.lua" --brokers "$brokers" --app "$tag" --until-end \
  --set sproc.state.dir="$work/state" --quiet
# restore seconds: from the first "restoring" to the last "restored" line
restore_time() {
  "$py" -c '
import sys, datetime
ts = []
for line in open(sys.argv[1]):
    if "restor" in line and "store counts" in line:
        ts.append(datetime.datetime.fromisoformat(line.split()[0].rstrip("Z")))
print("%.2f" % (max(ts) - min(ts)).total_seconds() if ts else "nan")' "$1"
}
full=() ckpt=()
for ((i = 1; i <= runs; i++)); do
  "$sproc" "$work/count.lua" --brokers "$brokers" --app "$tag" --until-end \
    --set sproc.state.dir= 2>"$work/full.log"
  full+=("$(restore_time "$work/full.log")")
  "$sproc" "$work/count.lua" --brokers "$brokers" --app "$tag" --until-end \
    --set sproc.state.dir="$work/state" 2>"$work/ckpt.log"
  ckpt+=("$(restore_time "$work/ckpt.log")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
grep -h "restored" "$work/ckpt.log" | head -4 >&2
echo "restore of $keys keys over 4 partitions, median of $runs:"
echo "  changelog alone:            $(median "${full[@]}") s   (runs: ${full[*]})"
echo "  checkpoint + changelog tail: $(median "${ckpt[@]}") s   (runs: ${ckpt[*]})"
