# --- Running things so that they can be stopped as a whole.

# Runs a command (stdin /dev/null, stdout to stderr when $1 is "log", /dev/null when "quiet",
# else to the file $1) in its own
# process group, led by coreutils timeout, which stops the group after $2 seconds (TERM, then
# KILL). The lock records the group, for an interrupt, an abort or a takeover to stop. `wait`
# returns at once on INT or TERM, whose trap prints the result (so no redirection around it).
bounded() {
  b_out=$1 b_secs=$2
  shift 2
  (
    trap - INT TERM
    case $b_out in quiet) exec >/dev/null ;; log) exec >&2 ;; *) exec >"$b_out" ;; esac
    exec timeout -k "$KILL_GRACE" "$b_secs" "$@"
  ) &
  l_group=$!
  l_group_start=$(proc_start "$l_group")
  write_info
  wait "$l_group"
  b_status=$?
  l_group="" l_group_start=""
  return "$b_status"
}

# switch-to-configuration $2 of system $1, bounded to $3 seconds, output to stderr. Where
# systemd runs, a unit (nixship-$4-PID, RuntimeMaxSec) so that a dropped session cannot kill
# it; else a process group under timeout.
run_switch() {
  if have_systemd; then
    l_unit="nixship-$4-$$"
    write_info
    (
      trap - INT TERM
      exec systemd-run --collect --no-ask-password --pipe --quiet --service-type=exec \
        --property=RuntimeMaxSec="$3" --property=TimeoutStopSec="$KILL_GRACE" \
        --unit="$l_unit" --wait "$1/bin/switch-to-configuration" "$2"
    ) >&2 &
    l_runner=$!
    wait "$l_runner"
    b_status=$?
    l_unit="" l_runner=""
    return "$b_status"
  fi
  bounded log "$3" "$1/bin/switch-to-configuration" "$2"
}

# Stops what this process runs now (see bounded and run_switch), if anything.
stop_child() {
  [ -z "$l_unit" ] || stop_unit "$l_unit"
  [ -z "$l_group" ] || stop_group "$l_group" "$l_group_start"
  [ -z "$l_runner" ] || kill "$l_runner" 2>/dev/null # (systemd-run --wait, its unit stopped)
  for p in $l_group $l_runner; do wait "$p" 2>/dev/null; done
  l_group="" l_group_start="" l_unit="" l_runner=""
}

