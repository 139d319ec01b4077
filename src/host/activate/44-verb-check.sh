# The check verb (cmd_check): the command checks given (as activate takes them), then systemd's
# failed units, run again on the system the host runs now, by the same code as the activation's
# health step; it changes nothing and takes no lock. The deployer repeats it during a bake.
cmd_check() {
  health_cmds="" health_timeout=30
  while [ $# -gt 0 ]; do
    case $1 in
      --health-cmd | --health-once | --health-timeout) health_option "$1" "${2-}"; shift 2 ;;
      *) usage "check: unknown option '$1'" ;;
    esac
  done
  check_health_timeouts check
  mkdir -p "$state_dir"
  c_current=$(resolve /run/current-system || true)
  h_check=""
  if run_health_checks "$c_current"; then
    printf '{"ok":true,"command":"check","result":"passed","current":%s}\n' "$(json_opt "$c_current")"
    return 0
  fi
  [ -z "$h_dir" ] || rm -rf "$h_dir"
  printf '{"ok":false,"command":"check","result":"failed","exitCode":5,"message":%s,"check":%s,"current":%s}\n' \
    "$(json_str "$h_message")" "$(json_opt "$h_check")" "$(json_opt "$c_current")"
  exit 5
}
