#!/usr/bin/env bash
# bench_stream.sh — the large-data rows of make bench (issue 24): the
# Ali-CCP-shaped synthetic stream generated into shards, a dataset converted
# into shards, one shuffled epoch read back, and training on the shard stream
# against the same model on the same rows in memory (MMoE, 4 experts [128],
# towers [64], emb 8, batch 2048, one thread, one epoch; ROUNDS rounds
# alternating the two, medians). Each measurement is its own process, so its
# peak RSS (getrusage) is its own.
#
# Then a CSV of CSV_ROWS impressions (bench_stream csvgen) converted into
# shards, streamed (tl_shards_convert_csv, two passes; with user a
# vocabulary, then hashed too) and, up to
# MEMORY_MAX_ROWS, loaded whole and converted (the same shards): rows/s and
# peak RSS of each.
#
#   STREAM_ROWS=2000000 ROUNDS=3 bash scripts/bench_stream.sh
#   CSV_ONLY=1 CSV_ROWS=20000000 bash scripts/bench_stream.sh   # only the CSV rows
#   STREAM_ROWS=100000000 bash scripts/bench_stream.sh   # the issue's 100 M run: ~28 GB of
#                                                        # shards; the in-memory side is skipped
#                                                        # above MEMORY_MAX_ROWS (20 M)
# The machine is shared: wall-clock rates move with its load, rates per CPU
# second much less; both are shown, with the load average.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${BUILD:=build}" "${STREAM_ROWS:=2000000}" "${ROUNDS:=3}" "${MEMORY_MAX_ROWS:=20000000}" "${CONVERT_ROWS:=1000000}" \
  "${CSV_ROWS:=2000000}" "${CSV_ONLY:=0}"
B="$BUILD/bench/bench_stream"
[ -x "$B" ] || { echo "bench_stream.sh: $B is not built (make $B)"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tl-bench-stream.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
raw="$tmp/raw"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; $STREAM_ROWS train rows"
get() { awk -v k="$1" '$1 == k {print $2}' "$raw" | sort -g | awk '{v[++n] = $1} END {if (n) print v[int((n + 1) / 2)]}'; }

csv_rows() {
  "$B" csvgen "$tmp/in.csv" "$CSV_ROWS" || exit 1
  local csv_mb; csv_mb=$(du -sm "$tmp/in.csv" | cut -f1)
  "$B" csvconv "$tmp/in.csv" "$tmp/csvh" hashed | sed 's/^peak_rss_mb/csv_hashed_peak_rss_mb/' >>"$raw" || exit 1
  rm -rf "$tmp/csvh"
  "$B" csvconv "$tmp/in.csv" "$tmp/csvs" stream | sed 's/^peak_rss_mb/csv_stream_peak_rss_mb/' >>"$raw" || exit 1
  if [ "$CSV_ROWS" -le "$MEMORY_MAX_ROWS" ]; then
    "$B" csvconv "$tmp/in.csv" "$tmp/csvm" memory | sed 's/^peak_rss_mb/csv_memory_peak_rss_mb/' >>"$raw" || exit 1
    same=identical; for f in "$tmp"/csvs/*; do cmp -s "$f" "$tmp/csvm/${f##*/}" || same=different; done
    rm -rf "$tmp/csvm"
  fi
  echo "| CSV → shards, streamed ($CSV_ROWS rows, $csv_mb MB of CSV; user a vocabulary) | $(get csv_stream_rows_per_s) rows/s wall, $(get csv_stream_cpu_rows_per_s) rows per CPU-second, peak RSS $(get csv_stream_peak_rss_mb) MB |"
  echo "| the same with user hashed too (hash=2^20) | $(get csv_hashed_rows_per_s) rows/s wall, $(get csv_hashed_cpu_rows_per_s) rows per CPU-second, peak RSS $(get csv_hashed_peak_rss_mb) MB |"
  if [ "$CSV_ROWS" -le "$MEMORY_MAX_ROWS" ]; then
    echo "| CSV → shards, loaded whole then converted (same rows; shards $same) | $(get csv_memory_rows_per_s) rows/s wall, $(get csv_memory_cpu_rows_per_s) rows per CPU-second, peak RSS $(get csv_memory_peak_rss_mb) MB |"
  fi
  rm -rf "$tmp/in.csv" "$tmp/csvs"
}
if [ "$CSV_ONLY" = 1 ]; then echo; echo "| large data | value |"; echo "|---|---|"; csv_rows; exit 0; fi

"$B" gen "$tmp/ccp" "$STREAM_ROWS" 2 >>"$raw" || exit 1
sed -i 's/^peak_rss_mb/gen_peak_rss_mb/' "$raw"
"$B" convert "$tmp/conv" "$CONVERT_ROWS" >>"$raw" || exit 1
"$B" read "$tmp/ccp" | sed 's/^peak_rss_mb/read_peak_rss_mb/' >>"$raw" || exit 1
for r in $(seq 1 "$ROUNDS"); do
  "$B" train "$tmp/ccp" stream 1 1 | sed 's/^peak_rss_mb/stream_peak_rss_mb/' >>"$raw" || exit 1
  if [ "$STREAM_ROWS" -le "$MEMORY_MAX_ROWS" ]; then
    "$B" train "$tmp/ccp" memory 1 1 | sed 's/^peak_rss_mb/memory_peak_rss_mb/' >>"$raw" || exit 1
  fi
done
shard_mb=$(du -sm "$tmp/ccp" | cut -f1)
echo
echo "| large data | value |"
echo "|---|---|"
echo "| synthetic ccp → shards ($(get gen_rows) rows, $shard_mb MB) | $(get gen_rows_per_s) rows/s wall, $(get gen_cpu_rows_per_s) rows per CPU-second, peak RSS $(get gen_peak_rss_mb) MB |"
echo "| dataset → shards ($CONVERT_ROWS rows, synthetic pair) | $(get convert_rows_per_s) rows/s |"
echo "| one shuffled epoch read (65536-row buffer) | $(get read_rows_per_s) rows/s, peak RSS $(get read_peak_rss_mb) MB |"
echo "| train on the stream, 1 thread | $(get train_stream_cpu_rows_per_s) rows per CPU-second ($(get train_stream_rows_per_s) wall), peak RSS $(get stream_peak_rss_mb) MB |"
if [ "$STREAM_ROWS" -le "$MEMORY_MAX_ROWS" ]; then
  echo "| train in memory, same model and rows | $(get train_memory_cpu_rows_per_s) rows per CPU-second ($(get train_memory_rows_per_s) wall), peak RSS $(get memory_peak_rss_mb) MB |"
  awk '$1 == "train_stream_cpu_rows_per_s" {s[++i] = $2} $1 == "train_memory_cpu_rows_per_s" {m[++j] = $2}
       END {for (k = 1; k <= i && k <= j; k++) print s[k] / m[k]}' "$raw" | sort -g |
    awk '{v[++n] = $1} END {if (n) printf("| stream / memory (median of %d rounds, per CPU-second) | %.3f |\n", n, v[int((n + 1) / 2)])}'
fi
echo "| valid click AUC after 1 epoch: stream / memory | $(get train_stream_valid_auc_click) / $(get train_memory_valid_auc_click) |"
csv_rows
