# Sourced by the device sweep scripts: collect_sweep DIR OUT packs sweep folder DIR into parts of one
# tar.gz under OUT (the device tool brings back files of limited size): finished runs need only
# their manifest and metrics; unfinished ones resume from their checkpoint, the most advanced
# first while the parts stay within what comes back (64 MiB).
collect_sweep() {
  local dir=$1 out=$2
  (
    cd "$dir" || exit 1
    list=$(mktemp)
    ls sweep.toml > "$list"
    ckpts=$(mktemp)
    for d in runs/*/; do
      ls "$d"manifest.json "$d"metrics.csv 2>/dev/null >> "$list"
      if ! grep -q '"status": *"finished"' "$d"manifest.json 2>/dev/null && [ -d "$d"checkpoint ]; then
        step=$(ls "$d"checkpoint | sed -n 's/^model-\([0-9]*\)\.bpk$/\1/p' | sort -n | tail -1)
        echo "${step:-0} ${d}checkpoint" >> "$ckpts"
      fi
    done
    # The most advanced checkpoints first, while the parts stay within what comes back (64 MiB).
    total=0
    while read -r step ck; do
      size=$(du -sb "$ck" | cut -f1)
      [ $(( total + size )) -gt 45000000 ] && { echo "checkpoint left out: $ck ($step)" >> "$out/sweep.log"; continue; }
      total=$(( total + size ))
      echo "$ck" >> "$list"
    done < <(sort -rn "$ckpts")
    tar czf /tmp/sweep.tgz -T "$list"
    split -b 15M -d /tmp/sweep.tgz "$out/sweep.tgz.part"
    ls -la "$out"
  )
}
