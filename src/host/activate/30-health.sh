# One health check option ($1, its value $2) into health_cmds or health_timeout. Each check is
# one line: "r" (retried until its timeout) or "o" (once, within it), its timeout, a colon, and
# the command. A --health-timeout applies to the checks after it; a check before any takes the
# last one given (health_timeout, empty in its line), as a single --health-timeout always did.
health_option() {
  case $1 in
    --health-cmd) health_cmds="${health_cmds}r$h_next:$2
" ;;
    --health-once) health_cmds="${health_cmds}o$h_next:$2
" ;;
    --health-timeout)
      health_timeout=$2
      case $2 in '' | *[!0-9]*) h_bad_timeout=$2 ;; *) h_next=$(decimal "$2") ;; esac
      # timeout(1) reads 0 as none at all: a check must end.
      { [ -n "$h_bad_timeout" ] || { [ "$h_next" -ge 1 ] && [ "$h_next" -le 86400 ]; }; } ||
        h_bad_timeout=$2 ;;
  esac
}

# The health options' timeouts, for verb $1: whole seconds, or a usage error.
check_health_timeouts() {
  case $health_timeout in '' | *[!0-9]*) h_bad_timeout=${h_bad_timeout:-$health_timeout} ;; esac
  [ -z "$h_bad_timeout" ] || usage "$1: --health-timeout must be whole seconds from 1 to 86400"
  health_timeout=$(decimal "$health_timeout")
  { [ "$health_timeout" -ge 1 ] && [ "$health_timeout" -le 86400 ]; } ||
    usage "$1: --health-timeout must be whole seconds from 1 to 86400"
}

# The timeout of check line $1 (health_option), in seconds.
check_timeout() {
  c_t=${1#?}
  c_t=${c_t%%:*}
  printf '%s' "${c_t:-$health_timeout}"
}

# Seconds the command checks of health_cmds may take at most: each within its own timeout.
checks_time() {
  c_sum=0 c_old_ifs=$IFS
  set -f
  IFS='
'
  for c_line in $health_cmds; do c_sum=$((c_sum + $(check_timeout "$c_line"))); done
  IFS=$c_old_ifs
  set +f
  printf '%s' "$c_sum"
}

# Why health check $check failed for good (bounded's status h_status, on attempt h_tries): its
# exit code, or that the health timeout stopped it, and the end of its last attempt's output,
# from h_dir: the last 10 lines and at most 1000 bytes, control characters removed, lines joined
# by " | " (none kept when it had to be killed). The check is named in at most 500 bytes: the
# message stays far below the 4096 characters the deployer takes.
health_failure() {
  case $h_status in
    124) h_why="still running when the health timeout of ${h_timeout}s ran out; stopped it" ;;
    137) h_why="still running when the health timeout of ${h_timeout}s ran out, and TERM did not stop it; killed it" ;;
    *) h_code=$(cat "$h_dir/code" 2>/dev/null)
      h_why="could not be run"
      ! digits "$h_code" || h_why="exit code $h_code" ;;
  esac
  h_s=s
  [ "$h_tries" != 1 ] || h_s=""
  h_within="in ${h_timeout}s"
  [ "$h_once" = false ] || h_within="only: retry false"
  # (A UTF-8 continuation byte, where the cut leaves one first; a C1 control in UTF-8.)
  h_cont=$(printf '[\200-\277]') h_c1=$(printf '\302[\200-\237]')
  h_tail=$(tail -n 10 "$h_dir/out" 2>/dev/null | tail -c 1000 | tr '\t' ' ' |
    tr -d '\000-\010\013-\037\177' | LC_ALL=C sed -e "1s/^$h_cont*//" -e "s/$h_c1//g" |
    LC_ALL=C awk 'NF { printf "%s%s", sep, $0; sep = " | " }')
  h_name=$(printf '%s' "$check" | head -c 500)
  [ "$h_name" = "$check" ] || h_name="$h_name..."
  printf 'health check failed: %s: %s (%s attempt%s %s); ' "$h_name" "$h_why" "$h_tries" \
    "$h_s" "$h_within"
  if [ -n "$h_tail" ]; then
    printf 'output: "%s"' "$h_tail"
  elif [ "$h_status" = 137 ]; then
    printf 'its output went with it'
  else
    printf 'no output'
  fi
}

# Says, once per attempt, that the check's last attempt left a process holding its output.
held_note() {
  [ ! -e "$h_dir/held" ] || log "health: $check: a process it started kept its output open; not waited for"
  rm -f "$h_dir/held"
}

# The health checks of $health_cmds (one per line, "r" retried until its timeout, or "o"
# once), then systemd's failed units: returns 1 with h_message saying why when one fails.
run_health_checks() {
  h_message=""
  if h_undeclared=$(undeclared_check "$1"); then
    h_message="the command check '$h_undeclared' is not one $1 declares in nixship/health-commands: this host's trust is pinned, and only its system's own commands run as root"
    return 1
  fi
  if [ -n "$health_cmds" ]; then
    # Each attempt's output (stdout and stderr together) is logged, and its last 4 KiB kept for
    # the message in h_dir, this activation's own directory (removed when it ends). The check
    # ($1) runs under sh -c as before; its exit code goes to $2/code, its output through tee to
    # the log and through a fifo to tail. The shells wait for the check even when the timeout
    # stops it (TERM), and tee and tail ignore TERM: they end with its output, which is kept.
    # (A shell's "Terminated" goes to the log, not with it.) The attempt succeeds when the check
    # exits 0.
    # A process the check leaves running (started in the background) may keep its output open:
    # once the check's code is written, tee gets a second to see the end of the output, then is
    # killed ($2/held says so), and the attempt is judged by the check's own exit code.
    # shellcheck disable=SC2016 # expanded by that sh, from its arguments
    # (The quoted script stays on one line: the SSM document drops indentation.)
    h_run='rm -f "$2/out" "$2/code" "$2/held"; trap : TERM; (trap "" TERM; exec tail -c 4096 <"$2/fifo" >"$2/out") & t=$!; { trap : TERM; (exec sh -c "$1" 2>&1); echo "$?" >"$2/code"; } | (trap "" TERM; exec tee "$2/fifo") & p=$!; while [ ! -s "$2/code" ] && kill -0 "$p" 2>/dev/null; do sleep 0.1; done; w=0; while [ "$w" -lt 10 ] && kill -0 "$p" 2>/dev/null; do sleep 0.1; w=$((w + 1)); done; if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null; : >"$2/held"; fi; wait "$t"; [ "$(cat "$2/code" 2>/dev/null)" = 0 ]'
    h_dir=$state_dir/health-$$
    rm -rf "$h_dir"
    if ! { mkdir -m 700 "$h_dir" && mkfifo "$h_dir/fifo"; }; then
      h_message="cannot create $h_dir"
      return 1
    fi
    old_ifs=$IFS
    IFS='
'
    for check in $health_cmds; do
      IFS=$old_ifs
      h_once=false
      case $check in o*) h_once=true ;; esac
      h_timeout=$(check_timeout "$check")
      check=${check#*:}
      log "health: $check"
      # Retried about every second until it passes or its timeout ends, as HTTP checks are:
      # a service that starts slowly is not rolled back for it. A check given with
      # --health-once (retry false) fails at its first failure.
      h_end=$(($(date +%s) + h_timeout)) h_left=$h_timeout h_tries=1
      until bounded log "$h_left" sh -c "$h_run" health "$check" "$h_dir"; do
        h_status=$?
        held_note
        h_left=$((h_end - $(date +%s) - 1))
        if [ "$h_once" = true ] || [ "$h_left" -le 0 ]; then
          h_message=$(health_failure) h_check=$check
          IFS=$old_ifs
          return 1
        fi
        if aborted; then
          h_message=aborted
          IFS=$old_ifs
          return 1
        fi
        h_tries=$((h_tries + 1))
        sleep 1
      done
      held_note
    done
    IFS=$old_ifs
    rm -rf "$h_dir"
    h_dir=""
  fi
  if have_systemd; then
    failed_units=$(systemctl --failed --no-legend --plain 2>/dev/null | awk '{print $1}' | tr '\n' ' ')
    if [ -n "$failed_units" ]; then
      h_message="failed units: $failed_units"
      return 1
    fi
  fi
}

