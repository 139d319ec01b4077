# The generation number a profile link points at (system-12-link -> 12), or empty.
generation_of() {
  link=$(readlink "$1" 2>/dev/null) || return 0
  link_number "$link"
  [ -z "$l_num" ] || printf '%s\n' "$l_num"
}

# l_num: the number in a profile link's name (.../system-12-link -> 12), or empty; read by the
# shell itself, since the status and every activation ask it several times.
link_number() {
  case $1 in *-*-link) ;; *) l_num="" && return 0 ;; esac
  l_num=${1%-link}
  l_num=${l_num##*-}
  digits "$l_num" || l_num=""
}

current_generation() { generation_of "$profile"; }

# The system of generation $1 of the profile.
generation_path() { resolve "$profile-$1-link"; }

# The profile's generation numbers, in ascending order, one per line.
generations() {
  for link in "$profile"-*-link; do
    [ -L "$link" ] || continue
    link_number "$link"
    [ -z "$l_num" ] || printf '%s\n' "$l_num"
  done | sort -n
}

# The highest generation number the profile ever had: the one recorded (new_generation) or the
# highest it has, whichever is higher (a number of more than 15 digits is not taken).
highest_generation() {
  h_rec=$(head -c 32 "$(generation_record)" 2>/dev/null)
  h_rec=${h_rec%%"
"*}
  { digits "$h_rec" && [ ${#h_rec} -le 15 ]; } || h_rec=0
  decimal_set "$h_rec"
  h_rec=$d
  # The links' highest number, by the shell (no sort or awk started).
  for h_link in "$profile"-*-link; do
    [ -L "$h_link" ] || continue
    link_number "$h_link"
    if [ -z "$l_num" ] || [ ${#l_num} -gt 15 ]; then continue; fi
    decimal_set "$l_num"
    l_num=$d
    [ "$l_num" -le "${h_rec:-0}" ] || h_rec=$l_num
  done
  printf '%s' "${h_rec:-0}"
}

# The file that records the highest generation number of the profile.
generation_record() {
  case $profile in
    *[!A-Za-z0-9._/-]*) g_name=$(printf '%s' "$profile" | tr -c 'A-Za-z0-9._-' '_') ;;
    *)
      # Only slashes to change (a profile's usual name): by the shell, no tr started.
      g_rest=$profile g_name=""
      while case $g_rest in */*) true ;; *) false ;; esac; do
        g_name="$g_name${g_rest%%/*}_" g_rest=${g_rest#*/}
      done
      g_name=$g_name$g_rest
      ;;
  esac
  printf '%s/%s' "$generations_dir" "$g_name"
}

# Step 3: the profile on a new generation holding system $1, within $2 seconds. Its number is
# one past the highest the profile ever had, recorded on the disk before its link is made: Nix
# numbers a generation one past the highest that exists, so once the generation of a failed
# activation is removed its number would come again, and "generation N" would name two
# systems. A profile already on $1 stays as it is. $1 is held by the activation's own GC root
# (realised) while this runs.
new_generation() {
  n_now=$(current_generation)
  # Its generation's link leads to $1, which resolves to itself: resolved by the shell.
  if [ -n "$n_now" ] && resolve_set "$profile-$n_now-link" && [ "$r_out" = "$1" ]; then
    log "the profile $profile is on $1 already (generation $n_now)"
    return 0
  fi
  n_gen=$(($(highest_generation) + 1))
  n_rec=$(generation_record)
  if ! { { [ -d "$generations_dir" ] || mkdir -p "$generations_dir"; } && printf '%s\n' "$n_gen" >"$n_rec.tmp" &&
    mv -f "$n_rec.tmp" "$n_rec"; }; then
    log "cannot record generation $n_gen of $profile in $n_rec"
    return 1
  fi
  # In the lock's record before the link exists: a takeover removes it unless the profile is on
  # it (restore_previous).
  l_new_gen=$n_gen
  write_info
  if profile_rooted; then
    set_generation_link "$1" "$2" && return 0
  else
    set_generation_by_nix "$1" "$2" && return 0
  fi
  # The profile is not on it: no rollback or boot menu may take it for a good system.
  forget_generation "$n_gen"
  return 1
}

# Whether the profile's links are garbage collector roots by where they are: the system
# profiles directory, which Nix's own gcroots/profiles names (as every Nix and NixOS has it);
# and flock is there to take Nix's profile lock.
profile_rooted() {
  [ "${profile%/*}" = /nix/var/nix/profiles ] && command -v flock >/dev/null &&
    p_roots=$(physical_dir /nix/var/nix/gcroots/profiles) &&
    [ "$p_roots" = "$(physical_dir /nix/var/nix/profiles)" ]
}

# The generation link n_gen to $1 and the profile switched to it, as `nix-env --set` makes them
# (a link beside the profile, then the profile replaced by a link to it in one rename, under
# Nix's profile lock), without starting Nix twice: where the profile's links are roots by their
# place (profile_rooted) and $1 is held by a root meanwhile, a plain link is a root at once.
set_generation_link() {
  n_link="$profile-$n_gen-link"
  n_tmp="$profile.nixship-$$"
  remove_file "$n_tmp"
  if ! ln -s "$1" "$n_link"; then
    log "cannot make $n_link"
    return 1
  fi
  if ln -s "${n_link##*/}" "$n_tmp" &&
    flock -w "$2" "$profile.lock" mv -fT "$n_tmp" "$profile"; then
    log "generation $n_gen of $profile: $1"
    return 0
  fi
  rm -f "$n_tmp"
  log "cannot switch $profile to generation $n_gen"
  return 1
}

# The same through Nix, for a profile elsewhere: the link made by nix-store --add-root
# (atomically, a GC root registered while the collector may run), then nix-env switches the
# profile to it under Nix's profile lock.
set_generation_by_nix() {
  n_start=$(now)
  bounded log "$2" nix-store --realise "$1" --add-root "$profile-$n_gen-link" || return 1
  n_left=$(($2 - ($(now) - n_start)))
  if [ "$n_left" -gt 0 ] && bounded log "$n_left" nix-env -p "$profile" --switch-generation "$n_gen"; then
    log "generation $n_gen of $profile: $1"
    return 0
  fi
  return 1
}

# The highest generation below $1.
previous_generation() { generations | awk -v below="$1" '$1 < below { best = $1 } END { printf "%s", best }'; }

# Whether generation $1 of the profile is one to switch to as root; why not is in g_why. Its link
# must lead straight to a store path in canonical form that resolves to itself (a link planted
# in the profiles, or one through a path a user controls, is not a system), and with pinned
# trust its profiles directory must be root's alone and the system signed by a pinned key, and
# must keep the host pinned (unpins).
generation_usable() {
  g_target=$(readlink "$profile-$1-link" 2>/dev/null)
  if ! store_path_form "$g_target" || ! store_path_resolves "$g_target"; then
    g_why="generation $1 of $profile leads to '$g_target', not to a store path in canonical form that resolves to itself: not a system to roll back to"
    return 1
  fi
  if [ "$pinned" = 1 ] && ! root_only_dir "$(dirname "$profile")"; then
    g_why="$(dirname "$profile") can be changed by users other than root: this host's trust is pinned, and its generations are not trusted (make it root's alone, mode 0755)"
    return 1
  fi
  if unsigned_by_pins "$g_target" "generation $1, "; then
    g_why="$p_why: not a system to roll back to"
    return 1
  fi
  if unpins "$g_target"; then
    g_why="generation $1: $p_why"
    return 1
  fi
}

# nix-env on the profile ($@: what it does), bounded to PROFILE_TIMEOUT: a rollback must not wait
# for good on the profile's lock that another Nix command holds.
profile_env() {
  timeout -k "$KILL_GRACE" "$PROFILE_TIMEOUT" nix-env -p "$profile" "$@"
}

# Removes generation $1 of the profile, which a failed activation made: no rollback, prune or
# boot menu may take it for a good system (nixship's own records keep what ran). Not the one
# the profile points at, nor the previous one.
forget_generation() {
  [ -n "$1" ] && [ "$1" != "$prev_gen" ] && [ "$1" != "$(current_generation)" ] &&
    [ -L "$profile-$1-link" ] || return 0
  profile_env --delete-generations "$1" >&2 ||
    log "could not remove generation $1 (a failed system) from $profile"
}

# Marks system $1 failed on this host for reason $2 (its first line, at most 500 bytes): the host
# runs it, and could not go back. `status` reports it while the host runs that system.
mark_failed() {
  printf 'path=%s\nsince=%s\nreason=%s\n' "$1" "$(date +%s)" \
    "$(printf '%s\n' "$2" | head -n 1 | head -c 500)" >"$state_dir/failed.tmp" &&
    mv -f "$state_dir/failed.tmp" "$state_dir/failed"
}

# The window record emptied (window_file): by a redirection alone, when it holds one.
forget_window() {
  [ ! -s "$window_file" ] || : >"$window_file"
}

# A confirmation window a boot cut (window_file, with no trace of its window in /run) on the
# system the host runs now, as a failed mark's JSON: never confirmed, it is activated again by
# the next deploy, and every view says why. Returns 1 (printing nothing) when there is none.
window_cut_json() {
  [ -s "$window_file" ] && [ ! -d "$state_dir/lock" ] || return 1
  c_token="" c_path="" c_since=""
  while IFS= read -r c_line; do
    case $c_line in
      token=*) c_token=${c_line#token=} ;;
      path=*) c_path=${c_line#path=} ;;
      since=*) c_since=${c_line#since=} ;;
    esac
  done 2>/dev/null <"$window_file"
  [ -n "$c_token" ] && [ -n "$c_path" ] && [ "$c_path" = "$r_out" ] || return 1
  # Its window under way, or ended with an outcome: not cut.
  [ ! -e "$state_dir/pending-$c_token" ] && [ ! -e "$state_dir/result-$c_token" ] || return 1
  digits "$c_since" || c_since=null
  printf '{"path":%s,"since":%s,"reason":%s}' "$(json_str "$c_path")" "$c_since" \
    "$(json_str "a boot cut its confirmation window (token $c_token): it was never confirmed")"
}

# The failed mark as JSON when it names the system the host runs, else null.
# Read by the shell: most hosts have no mark, and a status starts nothing for it.
failed_json() {
  f_path="" f_since="" f_reason=""
  if [ -f "$state_dir/failed" ]; then
    while IFS= read -r f_line; do
      case $f_line in
        path=*) f_path=${f_line#path=} ;;
        since=*) f_since=${f_line#since=} ;;
        reason=*) f_reason=${f_line#reason=} ;;
      esac
    done 2>/dev/null <"$state_dir/failed"
  fi
  resolve_set /run/current-system || true
  if [ -z "$f_path" ] || [ "$f_path" != "$r_out" ]; then
    window_cut_json || printf 'null'
    return 0
  fi
  digits "$f_since" || f_since=null
  printf '{"path":%s,"since":%s,"reason":%s}' "$(json_str "$f_path")" "$f_since" \
    "$(json_str "$f_reason")"
}

