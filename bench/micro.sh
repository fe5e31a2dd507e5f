#!/usr/bin/env bash
# Micro-benchmarks of the pure hot code, in wall time and (stable under noise)
# in instructions counted by callgrind: each case runs alone under valgrind and
# its instruction count, minus an empty run's, is divided by the iterations.
#
# Usage: bench/micro.sh            (needs valgrind for the instruction column)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo bench -p ferrocore-bench --bench pure --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "pure" and m.get("executable"):
        print(m["executable"])' > "$CARGO_TARGET_DIR/.pure-bench-path"
binary=$(tail -1 "$CARGO_TARGET_DIR/.pure-bench-path")
cases="sql_where_and_select_seed_rule mqtt_decode_publish_100b mqtt_encode_publish_100b topic_match_100k_filters policy_eval_walled_garden shadow_update_and_delta_20_keys"
echo "| case | ns/op (wall, median of 3) | instructions/op (callgrind) |"
echo "|---|---|---|"
for case in $cases; do
  wall=$(for _ in 1 2 3; do "$binary" "$case" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["ns_per_op"])'; done | sort -n | sed -n 2p)
  instructions="—"
  if command -v valgrind >/dev/null 2>&1; then
    count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$binary" "$case" "$1" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
    small=$(count 10); large=$(count 1010)
    instructions=$(( (large - small) / 1000 ))
  fi
  echo "| \`$case\` | $wall | $instructions |"
done
