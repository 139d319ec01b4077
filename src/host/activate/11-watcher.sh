# The watcher left behind for magic rollback: waits for confirm or abort, else rolls back.
watcher_script() {
  cat <<'WATCH'
dir=$1 token=$2 timeout=$3 profile=$4 prev_gen=$5 prev_system=$6 action=$7 info=$8
settle=$9 rollback_timeout=${10} kill_grace=${11} waker=${12-} started=${13-}
profile_timeout=${14-10} window_file=${15-}
outcome=rolled-back reason="no confirmation within ${timeout}s" w_why=""
# How a bounded rollback step that failed ended ($1: its exit status; $2: its bound in seconds).
ended() {
  case $1 in
    124 | 137) printf 'took longer than %ss; stopped' "$2" ;;
    *) printf 'exited with %s' "$1" ;;
  esac
}
# This process holds the lock now, until the window closes and a rollback would have ended; it
# records itself as activate.sh does (pid, start time, deadline, what it runs).
read -r stat <"/proc/$$/stat"
set -- ${stat##*) }
start=${20}
# From the time activate.sh gave (its clock, read by the shell), else date's.
case $started in '' | *[!0-9]*) started=$(date +%s) ;; esac
deadline=$((started + timeout + settle))
phase=confirm
record() {
  printf '%s\npid=%s\nstart=%s\nkind=window\ncommand=confirmation window %s\nphase=%s\ndeadline=%s\ngroup=%s\ngroup_start=%s\n' \
    "$info" "$$" "$start" "$token" "$phase" "$deadline" "${1-}" "${2-}" >"$dir/lock/info.$$" &&
    mv -f "$dir/lock/info.$$" "$dir/lock/info"
}
record
# activate.sh waits for this record: its sleep ($waker) ends now, if it is still that sleep
# (KILL: it ignores TERM, as activate.sh does by then).
if [ -n "$waker" ]; then
  w_comm=""
  { read -r w_comm <"/proc/$waker/comm"; } 2>/dev/null || true
  [ "$w_comm" != sleep ] || kill -s KILL "$waker" 2>/dev/null || true
fi
# Sleep through the window unless woken: confirm and abort write their flag, then kill the
# sleeper. The pid file is written before the flags are checked, so a flag written before
# the wait is seen, and one written after it finds the sleeper to kill. No polling.
sleep "$timeout" &
sleeper=$!
printf '%s\n' "$sleeper" >"$dir/sleeper-$token"
if [ ! -e "$dir/confirmed-$token" ] && [ ! -e "$dir/abort-$token" ]; then
  wait "$sleeper"
fi
kill "$sleeper" 2>/dev/null
if [ -e "$dir/confirmed-$token" ]; then
  outcome=confirmed reason="confirmed within ${timeout}s"
elif [ -e "$dir/abort-$token" ]; then
  reason="aborted by the deployer"
fi
if [ "$outcome" = rolled-back ]; then
  ok=true
  phase=rollback
  record
  if [ -n "$prev_system" ]; then
    if [ "$action" = switch ] && [ -n "$prev_gen" ]; then
      # The generation this activation made goes: no rollback or boot menu may take it.
      failed_gen=$(readlink "$profile" | sed -n 's/^.*-\([0-9][0-9]*\)-link$/\1/p')
      # Each bounded: Nix's profile lock may be another's.
      if timeout -k "$kill_grace" "$profile_timeout" nix-env -p "$profile" --switch-generation "$prev_gen"; then
        [ -z "$failed_gen" ] || [ "$failed_gen" = "$prev_gen" ] ||
          timeout -k "$kill_grace" "$profile_timeout" nix-env -p "$profile" --delete-generations "$failed_gen" || true
      else
        w_status=$? ok=false
        w_why="nix-env --switch-generation $prev_gen $(ended "$w_status" "$profile_timeout")"
      fi
    fi
    # Bounded, in its own process group (recorded, for a takeover to stop).
    timeout -k "$kill_grace" "$rollback_timeout" "$prev_system/bin/switch-to-configuration" "$action" &
    group=$!
    read -r stat <"/proc/$group/stat"
    set -- ${stat##*) }
    record "$group" "${20}"
    if wait "$group"; then :; else
      w_status=$? ok=false
      w_why="${w_why:+$w_why, }switch-to-configuration $action $(ended "$w_status" "$rollback_timeout")"
    fi
  else
    ok=false
    reason="$reason; no earlier system to go back to: the host runs $(printf '%s\n' "$info" | sed -n 's/^path=//p'), marked failed until an activation succeeds"
  fi
  if [ "$ok" = false ]; then
    outcome=rollback-failed
    [ -z "$w_why" ] || reason="$reason; the rollback failed too ($w_why)"
  fi
fi
# A confirmed system is no failed one; one that could not be left is (see mark_failed). The
# path is read from the record by the shell (its line after since=, as start_watcher writes it).
w_path=""
case $info in *"
path="*) w_path=${info#*"
path="} w_path=${w_path%%"
"*} ;;
esac
if [ "$outcome" = confirmed ]; then
  # rm started only when there is a mark to remove (most often there is none).
  if [ -e "$dir/failed" ] || [ -L "$dir/failed" ]; then rm -f "$dir/failed"; fi
elif [ "$outcome" = rollback-failed ] && [ -n "$w_path" ]; then
  printf 'path=%s\nsince=%s\nreason=%s\n' "$w_path" "$(date +%s)" \
    "$(printf '%s\n' "$reason" | head -n 1 | head -c 500)" >"$dir/failed.tmp" &&
    mv -f "$dir/failed.tmp" "$dir/failed"
fi
# The lock goes (unless a takeover made it another's), then the outcome is told.
w_pid=""
while IFS= read -r w_line; do
  case $w_line in pid=*) w_pid=${w_line#pid=}; break ;; esac
done 2>/dev/null <"$dir/lock/info"
if [ "$w_pid" = "$$" ]; then rm -rf "$dir/lock"; fi
# The window ended, as the record on the disk says no more (unless another's replaced it).
w_token=""
{ IFS= read -r w_token; } 2>/dev/null <"$window_file" || true
if [ "$w_token" = "token=$token" ]; then : >"$window_file"; fi
printf '%s\n%s\n' "$outcome" "$reason" >"$dir/result-$token.tmp"
mv "$dir/result-$token.tmp" "$dir/result-$token"
rm -f "$dir/pending-$token" "$dir/confirmed-$token" "$dir/abort-$token" "$dir/sleeper-$token"
WATCH
}

# $1: a process (activate's sleep) the watcher ends once it has recorded itself, or nothing.
start_watcher() {
  printf '%s\n' "$path" >"$state_dir/pending-$token"
  w_info=$(printf 'since=%s\npath=%s\naction=%s\ntoken=%s\nprofile=%s\nprev_gen=%s\nprev_system=%s' \
    "$l_since" "$path" "$action" "$token" "$profile" "$prev_gen" "$prev_system")
  if have_systemd; then
    systemd-run --collect --no-ask-password --quiet --unit="nixship-confirm-$token" \
      sh -c "$(watcher_script)" watcher "$state_dir" "$token" "$confirm_timeout" "$profile" \
      "$prev_gen" "$prev_system" "$action" "$w_info" "$SETTLE_TIME" "$ROLLBACK_TIMEOUT" \
      "$KILL_GRACE" "${1-}" "$(now)" "$PROFILE_TIMEOUT" "$window_file" >&2
  else
    (
      trap - INT TERM
      exec setsid sh -c "$(watcher_script)" watcher "$state_dir" "$token" "$confirm_timeout" \
        "$profile" "$prev_gen" "$prev_system" "$action" "$w_info" "$SETTLE_TIME" \
        "$ROLLBACK_TIMEOUT" "$KILL_GRACE" "${1-}" "$(now)" "$PROFILE_TIMEOUT" "$window_file"
    ) </dev/null >>"$state_dir/watch-$token.log" 2>&1 &
  fi
}

