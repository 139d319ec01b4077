log() { printf 'activate: %s\n' "$*" >&2; }

# Marks the start of phase $1 for whoever drives the script: a line of its own on stderr,
# "activate: @phase NAME" (realise, secrets, profile, switch, reboot, health, rollback).
mark_phase() { printf 'activate: @phase %s\n' "$1" >&2; }

# A JSON string: escapes, and control characters dropped. Most values (paths, actions,
# tokens) need no escaping and take no subprocess.
json_str() {
  case $1 in
    *[\"\\]* | *[![:print:]]*)
      printf '"%s"' "$(printf '%s' "$1" | tr '\n\t' '  ' | tr -d '\000-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')" ;;
    *) printf '"%s"' "$1" ;;
  esac
}

# "null" for an empty value, a JSON string otherwise.
json_opt() { if [ -n "$1" ]; then json_str "$1"; else printf 'null'; fi; }

# j_out: what json_opt prints for $1, set with no subshell where nothing needs escaping (most
# values), for a verb that writes many values (status).
json_opt_set() {
  case $1 in
    '') j_out=null ;;
    *[\"\\]* | *[![:print:]]*) j_out=$(json_str "$1") ;;
    *) j_out="\"$1\"" ;;
  esac
}

json_num() { if [ -n "$1" ]; then printf '%s' "$1"; else printf 'null'; fi; }

usage() {
  log "$1"
  printf '{"ok":false,"command":%s,"result":"usage","exitCode":2,"message":%s}\n' \
    "$(verb_json)" "$(json_str "$1")"
  exit 2
}

# The command being run, as JSON: one of the script's commands, or null (none, or unknown).
verb_json() {
  case ${command-} in
    activate | after-boot | confirm-boot | abort-boot | confirm | abort | rollback | prune | check | status | closure)
      json_str "$command" ;;
    *) printf 'null' ;;
  esac
}

