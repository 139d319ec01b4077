# Refuses $NIXSHIP_CHECK_PATHS unless each line is a store path in canonical form (or empty):
# the lines are data, one word each, never an option of the Nix that asks about them. Checked by
# the shell (store_path_form); grep, which costs a host more than the whole status, only finds
# the line to name when one is wrong.
check_paths_form() {
  c_ifs=$IFS c_bad=0
  case $- in *f*) c_glob=off ;; *) c_glob=on ;; esac
  set -f
  IFS='
'
  for c_line in ${NIXSHIP_CHECK_PATHS-}; do
    store_path_form "$c_line" || { c_bad=1; break; }
  done
  IFS=$c_ifs
  [ "$c_glob" = off ] || set +f
  [ "$c_bad" = 1 ] || return 0
  m_bad=$(printf '%s\n' "${NIXSHIP_CHECK_PATHS-}" |
    LC_ALL=C grep -n -v -x -E -e "$STORE_PATH_RE" -e '' | head -n 1)
  # grep -n's "LINE:TEXT", cut to its number by the shell.
  m_bad=${m_bad%%:*}
  usage "status --check-paths: line ${m_bad:-?} of the paths is not a store path in canonical form (/nix/store/HASH-NAME, one a line)"
}

# The hash parts of the paths in $NIXSHIP_CHECK_PATHS that are not in the store, as a JSON
# array, by the shell alone: a path is there when its name exists (a link whose target is gone
# too). No Nix is started (its start-up alone costs a host about 25 ms of CPU). A path on disk
# that Nix does not hold valid (a substitution cut short, a collection under way) counts as
# there: the answer only shapes the plan's figures and the deltas' pairs, and the realise,
# which asks Nix, fetches whatever is not valid. After check_paths_form, whose every line is a
# store path in canonical form or empty: one word each, split at the newlines, no globbing.
missing_paths() {
  set -f
  m_sep=""
  printf '['
  for m_path in ${NIXSHIP_CHECK_PATHS-}; do
    if [ -e "$m_path" ] || [ -L "$m_path" ]; then continue; fi
    m_hash=${m_path#/nix/store/}
    printf '%s"%s"' "$m_sep" "${m_hash%%-*}"
    m_sep=,
  done
  printf ']'
}

cmd_status() {
  check_paths=false
  while [ $# -gt 0 ]; do
    case $1 in
      --profile) refuse_when_pinned --profile "the system profile is the only one"; profile=${2-}; shift 2 ;;
      --check-paths) check_paths=true; shift ;;
      *) usage "status: unknown option '$1'" ;;
    esac
  done
  gens=""
  # The newest ten, by the shell (no tail started): the list is in ascending order, and the
  # options are read, so the positional parameters count it.
  g_all=$(generations)
  # shellcheck disable=SC2086 # generation numbers, one a word
  set -- $g_all
  g_skip=$(($# - 10))
  for n in $g_all; do
    g_skip=$((g_skip - 1))
    [ "$g_skip" -lt 0 ] || continue
    # A generation a failed activation is dropping at this moment has no path left: skip it.
    resolve_set "$profile-$n-link" || continue
    [ -n "$r_out" ] || continue
    json_opt_set "$r_out"
    gens="$gens${gens:+,}{\"generation\":$n,\"path\":$j_out}"
  done
  pending=""
  for f in "$state_dir"/pending-*; do [ -e "$f" ] && pending=${f##*/pending-}; done
  activation=null
  if [ -d "$state_dir/lock" ]; then
    judge_lock
    stale=false
    [ -z "$o_why" ] || stale=true
    activation=$(printf '{"command":%s,"path":%s,"pid":%s,"since":%s,"deadline":%s,"stale":%s}' \
      "$(json_str "$o_command")" "$(json_opt "$o_path")" "$(json_num "$o_pid")" \
      "$(json_num "$o_since")" "$(json_num "$o_deadline")" "$stale")
  fi
  missing=""
  if $check_paths; then
    # A pinned script is started by its wrapper, not piped: the paths come on its input.
    if [ "$pinned" = 1 ] && [ -z "${NIXSHIP_CHECK_PATHS+set}" ]; then
      NIXSHIP_CHECK_PATHS=$(head -c "$CHECK_PATHS_LIMIT")
    fi
    check_paths_form
    missing=",\"missing\":$(missing_paths)"
  fi
  read_boot
  boot_pending=null
  [ -z "$p_token" ] || boot_pending=$(printf '{"token":%s,"path":%s,"since":%s,"generation":%s,"previous":%s,"bootId":%s}' \
    "$(json_str "$p_token")" "$(json_opt "$p_path")" "$(json_num "$p_since")" \
    "$(json_num "$p_generation")" "$(json_opt "$p_prev_system")" "$(json_opt "$p_boot")")
  # Each value set by the shell where it can be (resolve_set, json_opt_set): a status starts
  # few processes, and most hosts are asked one at every deploy.
  boot_id_set
  json_opt_set "$i_out"
  boot="{\"id\":$j_out"
  boot_assessment_set
  json_opt_set "$a_out"
  boot="$boot,\"assessment\":$j_out,\"pending\":$boot_pending}"
  resolve_set /run/current-system || true
  json_opt_set "$r_out"
  s_current=$j_out
  resolve_set /run/booted-system || true
  json_opt_set "$r_out"
  s_booted=$j_out
  resolve_set "$profile" || true
  json_opt_set "$r_out"
  s_profile=$j_out
  json_opt_set "$pending"
  s_pending=$j_out
  s_generation=$(current_generation)
  digits "$s_generation" || s_generation=null
  s_pinned_activator=false
  [ ! -x "$PINNED_ACTIVATOR" ] || s_pinned_activator=true
  # Written in pieces, each value by its own function (no subshell for each).
  printf '{"ok":true,"command":"status","current":%s,"booted":%s,"profile":%s,"generation":%s,"generations":[%s],"pending":%s,"activation":%s,"failed":' \
    "$s_current" "$s_booted" "$s_profile" "$s_generation" "$gens" "$s_pending" "$activation"
  failed_json
  printf ',"reboot":'
  reboot_json
  printf ',"boot":%s,"secrets":"' "$boot"
  secrets_digest
  printf '","pinned":'
  pinned_json
  printf ',"pinnedActivator":%s%s}\n' "$s_pinned_activator" "$missing"
}

