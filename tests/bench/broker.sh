#!/usr/bin/env bash
# Through a real broker: preload N ~100-byte JSON records into a 4-partition
# topic (with sproc's own file source), then time bounded runs of
#   S0 pass-through and S1 parse + filter + project 2 fields,
# each RUNS times in alternation, reporting the median records/s.
#   tests/bench/broker.sh BROKERS [N] [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
brokers=$1 n=${2:-2000000} runs=${3:-3}
sproc=$here/build/sproc
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tag=bench$$
python3 - "$n" >"$work/in.jsonl" <<'PY'
import sys
n = int(sys.argv[1])
c = ("NL", "DE", "FR", "US")
w = sys.stdout.write
for i in range(n):
    w('{"id":%d,"user":"u%05d","amount":%d.%02d,"country":"%s","ok":%s,"pad":"xxxxxxxxxx"}\n'
      % (i, i % 50000, i % 997, i % 100, c[i % 4], "false" if i % 3 == 0 else "true"))
PY
topics=$(for t in in s0 s1; do echo "$tag-$t"; done)
for t in $topics; do
  "${SPROC_CACHE:-$HOME/.cache/sproc}/venv/bin/python" - "$brokers" "$t" <<'PY' 2>/dev/null || \
  python3 -c "print('need the test venv (scripts/setup --python)')"
import sys
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({"bootstrap.servers": sys.argv[1]})
a.create_topics([NewTopic(sys.argv[2], 4, 1)])[sys.argv[2]].result(30)
PY
done
cat >"$work/feed.lua" <<LUA
local sproc = require "sproc"
sproc.source{ file = "$work/in.jsonl" }:to{ topic = "$tag-in" }
LUA
t0=$(date +%s.%N)
"$sproc" "$work/feed.lua" --brokers "$brokers" --until-end --quiet
t1=$(date +%s.%N)
echo "preload: $n records in $(echo "$t1 - $t0" | bc) s"
cat >"$work/s0.lua" <<LUA
local sproc = require "sproc"
sproc.source{ topic = "$tag-in", value = "bytes" }:to{ topic = "$tag-s0" }
LUA
cat >"$work/s1.lua" <<LUA
local sproc = require "sproc"
sproc.source{ topic = "$tag-in", value = "json" }
  :filter(function(r) return r.value.ok end)
  :select{ "id", "amount" }
  :to{ topic = "$tag-s1" }
LUA
declare -A res
for ((i = 1; i <= runs; i++)); do
  for s in s0 s1; do
    t0=$(date +%s.%N)
    "$sproc" "$work/$s.lua" --brokers "$brokers" --app "$tag-$s-$i" --until-end --quiet
    t1=$(date +%s.%N)
    res[$s]+="$(echo "$n / ($t1 - $t0)" | bc) "
  done
done
for s in s0 s1; do
  med=$(echo ${res[$s]} | tr ' ' '\n' | sort -n | sed -n "$(((runs + 1) / 2))p")
  echo "$s: median $med records/s over $runs runs (all: ${res[$s]})"
done
