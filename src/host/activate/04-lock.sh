# --- The lock: a directory (mkdir is atomic) whose info file records its holder.

# This process's record (see write_info); l_group or l_unit name what it runs now, l_new_gen
# the generation it made (its link may exist before the profile is on it).
locked=0 l_kind="" l_command="" l_path="" l_action="" l_token="" l_prev_gen="" l_prev_system=""
l_phase="" l_since="" l_deadline="" l_group="" l_group_start="" l_unit="" l_runner="" l_new_gen=""
took_over="" took_over_from="" action="" path="" token="" prev_gen="" prev_system="" profile_set=0 switch_started=0
h_dir=""
self_start=$(proc_start $$)

# Replaces the lock's record of its holder (this process), atomically; key=value lines.
write_info() {
  [ "$locked" = 1 ] || return 0
  printf 'pid=%s\nstart=%s\nkind=%s\ncommand=%s\npath=%s\naction=%s\ntoken=%s\nprofile=%s\nprev_gen=%s\nprev_system=%s\nphase=%s\nsince=%s\ndeadline=%s\ngroup=%s\ngroup_start=%s\nunit=%s\nnew_gen=%s\n' \
    "$$" "$self_start" "$l_kind" "$l_command" "$l_path" "$l_action" "$l_token" "$profile" \
    "$l_prev_gen" "$l_prev_system" "$l_phase" "$l_since" "$l_deadline" "$l_group" \
    "$l_group_start" "$l_unit" "$l_new_gen" >"$state_dir/lock/info.$$" 2>/dev/null &&
    mv -f "$state_dir/lock/info.$$" "$state_dir/lock/info"
}

# The value of key $1 in the key=value lines of file $2 (its first line of that key), or nothing;
# read by the shell, with no process started.
info_value() {
  while IFS= read -r i_line; do
    case $i_line in "$1="*) printf '%s' "${i_line#*=}"; return 0 ;; esac
  done 2>/dev/null <"$2"
  return 0
}

# Reads the record of lock directory $1 into o_*: its info file, or the owner file ("PID
# COMMAND") of an older script, a holder with no deadline. o_raw is the record as read.
read_info() {
  o_pid="" o_start="" o_kind="" o_command="" o_path="" o_action="" o_token="" o_profile=""
  o_prev_gen="" o_prev_system="" o_phase="" o_since="" o_deadline="" o_group="" o_group_start=""
  o_unit="" o_new_gen="" o_raw=""
  if [ -f "$1/info" ]; then
    while IFS= read -r line; do
      o_raw="$o_raw$line;"
      # Known keys only: the name is one of these, the value is never evaluated.
      case ${line%%=*} in
        pid | start | kind | command | path | action | token | profile | prev_gen | prev_system | \
          phase | since | deadline | group | group_start | unit | new_gen) eval "o_${line%%=*}=\${line#*=}" ;;
      esac
    done <"$1/info" 2>/dev/null
  elif [ -f "$1/owner" ]; then
    line=""
    { IFS= read -r line <"$1/owner"; } 2>/dev/null
    o_raw=$line
    o_pid=${line%% *}
    o_command=${line#"$o_pid"}
    o_command=${o_command# }
    case $o_command in "activate /"*) o_kind=activate o_path=${o_command#activate } ;; esac
  fi
  for v in pid start since deadline group group_start prev_gen new_gen; do
    eval "digits \"\$o_$v\" || o_$v=''"
  done
  case $o_token in *[!A-Za-z0-9_-]*) o_token="" ;; esac
  [ -n "$o_since" ] || o_since=$(date -r "$1" +%s 2>/dev/null || true)
}

# Reads the lock into o_* and judges it: o_alive=1 while its holder runs; o_why says why it
# may be taken over (its holder is gone, or past its deadline), empty while it may not.
judge_lock() {
  read_info "$state_dir/lock"
  now_set
  j_now=$c_now
  o_alive=0 o_why=""
  if [ -n "$o_pid" ] && proc_alive "$o_pid" "$o_start"; then o_alive=1; fi
  if [ -z "$o_pid" ]; then
    # No record: a lock being taken (mkdir, then its record), or its taker killed in between.
    if [ -d "$state_dir/lock" ] && [ -n "$o_since" ] && [ $((j_now - o_since)) -gt 10 ]; then
      o_why="it records no holder"
    fi
  elif [ "$o_alive" = 0 ]; then
    o_why="its holder is gone"
  elif [ -n "$o_deadline" ] && [ "$j_now" -gt "$o_deadline" ]; then
    o_why="its holder still runs past its deadline ($(iso "$o_deadline"))"
  fi
}

# Takes the lock for this process (its record from l_*), taking over a stale one; returns 1,
# with the holder in o_*, while a live holder within its deadline keeps it. With "unrecorded",
# the caller writes the record itself (write_info) moments later, once it has read what the
# lock guards: a lock with no record is not stale for 10 s (judge_lock), and one rename fewer.
try_lock() {
  [ -d "$state_dir" ] || mkdir -p "$state_dir"
  tries=0
  until mkdir "$state_dir/lock" 2>/dev/null; do
    judge_lock
    if [ -n "$o_why" ]; then
      take_over && return 0
    elif [ -d "$state_dir/lock" ]; then
      return 1
    fi
    tries=$((tries + 1))
    [ "$tries" -lt 10 ] || return 1
    sleep 0.5
  done
  locked=1
  [ "${1-}" = unrecorded ] || write_info
}

lock() { try_lock "$@" || refuse_locked; }

refuse_locked() {
  holder="${o_command:-an activation that is just starting}${o_pid:+, pid $o_pid}"
  [ -z "$o_since" ] || holder="$holder, since $(iso "$o_since")"
  if [ -n "$o_deadline" ]; then
    holder="$holder, until $(iso "$o_deadline")); it is taken over after that deadline"
  else
    holder="$holder); it is taken over once that process is gone"
  fi
  message="another activation is in progress on this host ($holder"
  log "$message"
  printf '{"ok":false,"command":%s,"result":"locked","exitCode":8,"message":%s,"since":%s,"deadline":%s}\n' \
    "$(verb_json)" \
    "$(json_str "$message")" "$(json_num "$o_since")" "$(json_num "$o_deadline")"
  exit 8
}

# Frees the lock, unless a takeover made it another's.
unlock() {
  if [ "$locked" = 1 ]; then
    u_pid=$(info_value pid "$state_dir/lock/info")
    if [ -z "$u_pid" ] || [ "$u_pid" = "$$" ]; then rm -rf "$state_dir/lock"; fi
  fi
  locked=0
}

# The outcome confirm and abort report for token $1: $2 (rolled-back, rollback-failed,
# confirmed), reason $3.
write_result() {
  printf '%s\n%s\n' "$2" "$3" >"$state_dir/result-$1.tmp" &&
    mv -f "$state_dir/result-$1.tmp" "$state_dir/result-$1"
}

# Outcomes and cancels of activations long over go, so that /run does not fill with one file a
# deploy: a deployer asks after its token within its own session (SETTLE_TIME after its
# activation), never hours on. At most once an hour, an activation holding the lock removes the
# result-* and abort-* files the last sweep listed (so 1 to 2 hours old), and lists those there
# are now. The list (swept: the sweep's time, then one name a line) is read by the shell; one rm
# when there is something to remove.
sweep_outcomes() {
  s_file="$state_dir/swept" s_at="" s_old=""
  { IFS= read -r s_at <"$s_file"; } 2>/dev/null || true
  now_set
  if digits "$s_at"; then
    s_age=$((c_now - s_at))
    [ "$s_age" -lt 0 ] || [ "$s_age" -ge 3600 ] || return 0
    while IFS= read -r s_name; do
      case $s_name in
        result-* | abort-*) case $s_name in *[!A-Za-z0-9._-]*) ;; *) s_old="$s_old $state_dir/$s_name" ;; esac ;;
      esac
    done 2>/dev/null <"$s_file"
  fi
  # (Names checked above: no space or glob character in them.)
  # shellcheck disable=SC2086
  [ -z "$s_old" ] || rm -f $s_old
  # (Under the lock, so no other sweep reads it while it is written.)
  {
    printf '%s\n' "$c_now"
    for s_f in "$state_dir"/result-* "$state_dir"/abort-*; do
      [ ! -e "$s_f" ] || printf '%s\n' "${s_f##*/}"
    done
  } >"$s_file"
}

# Takes over the stale lock judged in o_*: kills its holder if it still runs, takes the lock,
# stops what the holder left running and puts the host back on the generation and system it
# recorded, as far as its phase got. Says so in took_over. One taker at a time (a guard
# directory, given up after a minute); returns 1 when another takes over.
take_over() {
  if ! mkdir "$state_dir/takeover" 2>/dev/null; then
    t_guard=$(date -r "$state_dir/takeover" +%s 2>/dev/null || echo 0)
    [ $(($(now) - t_guard)) -gt 60 ] || return 1
    rm -rf "$state_dir/takeover"
    mkdir "$state_dir/takeover" 2>/dev/null || return 1
  fi
  t_seen=$o_raw
  judge_lock
  if [ -z "$o_why" ] || [ "$o_raw" != "$t_seen" ]; then
    rmdir "$state_dir/takeover"
    return 1
  fi
  # Bounded, and not to be interrupted halfway (callers re-arm their traps).
  trap '' INT TERM
  t_done=""
  # The holder first, so that it changes nothing more: KILL (a watcher with its whole group).
  if [ "$o_alive" = 1 ]; then
    [ "$o_kind" != window ] || kill -s KILL -- "-$o_pid" 2>/dev/null
    kill -s KILL "$o_pid" 2>/dev/null
    i=0
    while proc_alive "$o_pid" "$o_start" && [ "$i" -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
    t_done="killed it, "
    read_info "$state_dir/lock" # what it recorded last (o_why stays)
  fi
  t_sleeper=""
  { IFS= read -r t_sleeper; } 2>/dev/null <"$state_dir/sleeper-$o_token" || true
  if digits "$t_sleeper" && [ "$(cat "/proc/$t_sleeper/comm" 2>/dev/null)" = sleep ]; then
    kill "$t_sleeper" 2>/dev/null
  fi
  rm -rf "$state_dir/lock"
  if ! mkdir "$state_dir/lock" 2>/dev/null; then
    rmdir "$state_dir/takeover"
    return 1
  fi
  locked=1
  s_kind=$l_kind s_command=$l_command s_path=$l_path s_action=$l_action s_token=$l_token
  s_phase=$l_phase s_profile=$profile s_act=$action
  [ -z "$o_profile" ] || profile=$o_profile
  # Killed while cleaning up, this record makes the next taker do it again.
  l_kind=takeover l_command="taking over from ${o_command:-an unrecorded holder}"
  l_path=$o_path l_action=$o_action l_token=$o_token l_prev_gen=$o_prev_gen
  l_prev_system=$o_prev_system l_phase=$o_phase l_new_gen=$o_new_gen
  write_info
  rmdir "$state_dir/takeover"
  ! stop_group "$o_group" "$o_group_start" || t_done="${t_done}stopped its process group $o_group, "
  [ -z "$o_unit" ] || ! stop_unit "$o_unit" || t_done="${t_done}stopped its unit $o_unit, "
  secrets_discard
  ! digits "$o_pid" || rm -rf "$state_dir/health-$o_pid"
  # What it may have changed, by its phase (nothing once it reported an outcome).
  action=$o_action prev_gen=$o_prev_gen prev_system=$o_prev_system profile_set=0 switch_started=0
  case $o_phase in switch | health | confirm | rollback) switch_started=1 profile_set=1 ;; profile) profile_set=1 ;; esac
  case $o_action in switch | boot) ;; *) profile_set=0 ;; esac
  [ -z "$o_token" ] || [ ! -e "$state_dir/result-$o_token" ] || profile_set=0 switch_started=0
  restore_previous
  case $? in
    0) t_back="rolled back to"
      [ "$profile_set" = 0 ] || [ -z "$prev_gen" ] || t_back="$t_back generation $prev_gen${r_system:+ and}"
      t_back="$t_back${r_system:+ $r_system}" ;;
    1) t_back="rolling back failed ($r_why)" ;;
    2) t_back="nothing to roll back" ;;
    *) t_back="no previous system to go back to" ;;
  esac
  t_since="since unknown"
  [ -z "$o_since" ] || t_since="since $(iso "$o_since")"
  took_over="taking over a stale lock: ${o_command:-an unrecorded holder} (pid ${o_pid:-unknown}, $t_since): $o_why; $t_done$t_back"
  # What the holder was switching to: a caller may have seen the host on it, mid-way.
  took_over_from=$o_path
  log "$took_over"
  if [ -n "$o_token" ] && [ ! -e "$state_dir/result-$o_token" ]; then
    case $t_back in rolled* | nothing*) t_outcome="rolled-back" ;; *) t_outcome="rollback-failed" ;; esac
    write_result "$o_token" "$t_outcome" "$took_over"
  fi
  [ -z "$o_token" ] || rm -f "$state_dir/pending-$o_token" "$state_dir/confirmed-$o_token" \
    "$state_dir/abort-$o_token" "$state_dir/sleeper-$o_token"
  [ "$o_kind" != window ] || forget_window
  l_kind=$s_kind l_command=$s_command l_path=$s_path l_action=$s_action l_token=$s_token
  l_phase=$s_phase profile=$s_profile action=$s_act l_prev_gen="" l_prev_system="" l_new_gen=""
  prev_gen="" prev_system="" profile_set=0 switch_started=0
  write_info
  return 0
}

# A stale lock is taken over (the host put back) and freed; a live one is left alone.
clear_stale() {
  [ -d "$state_dir/lock" ] || return 0
  judge_lock
  [ -n "$o_why" ] || return 0
  now_set
  l_kind=$1 l_command=$2 l_since=$c_now
  l_deadline=$((l_since + SETTLE_TIME))
  if try_lock; then unlock; fi
}

