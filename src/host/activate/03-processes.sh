# --- Processes: a pid with its start time names one process, even once the pid is reused.

# The start time of process $1 (field 22 of /proc/PID/stat), or nothing.
proc_start() {
  stat=""
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || [ -n "$stat" ] || return 0
  # shellcheck disable=SC2086 # the fields after "(comm) ": numbers and a state letter
  set -- ${stat##*) }
  [ $# -lt 20 ] || printf '%s' "${20}"
}

# Whether process $1 runs (is not a zombie) and, given $2, started at that time.
proc_alive() {
  stat=""
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || [ -n "$stat" ] || return 1
  # shellcheck disable=SC2086
  set -- "${2-}" ${stat##*) }
  case $2 in Z | X | x) return 1 ;; esac
  [ -z "$1" ] || [ "$1" = "${21-}" ]
}

# Whether a live process is in process group $1.
group_alive() {
  for f in /proc/[0-9]*/stat; do
    s=""
    { read -r s <"$f"; } 2>/dev/null || [ -n "$s" ] || continue
    # shellcheck disable=SC2086
    set -- "$1" ${s##*) }
    [ "${4-}" = "$1" ] && [ "$2" != Z ] && return 0
  done
  return 1
}

# Stops process group $1, whose leader started at $2: TERM, then KILL after KILL_GRACE
# seconds. A group led by another process (the pid reused) is left alone. Returns 1 when
# nothing of it ran.
stop_group() {
  digits "${1-}" || return 1
  g_start=$(proc_start "$1")
  if [ -n "${2-}" ] && [ -n "$g_start" ] && [ "$g_start" != "$2" ]; then return 1; fi
  group_alive "$1" || return 1
  kill -s TERM -- "-$1" 2>/dev/null
  i=0
  while group_alive "$1" && [ "$i" -lt $((KILL_GRACE * 10 + 20)) ]; do
    [ "$i" != $((KILL_GRACE * 10)) ] || kill -s KILL -- "-$1" 2>/dev/null
    sleep 0.1
    i=$((i + 1))
  done
  return 0
}

have_systemd() { [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; }

# Stops systemd unit $1 (TimeoutStopSec escalates to KILL); returns 1 when it did not run.
stop_unit() {
  have_systemd && systemctl is-active --quiet "$1" 2>/dev/null || return 1
  timeout -k 2 $((KILL_GRACE + 5)) systemctl stop "$1" >/dev/null 2>&1
  systemctl kill --signal=SIGKILL "$1" >/dev/null 2>&1
  return 0
}

