# The age to decrypt with: --age's bin/age (realised as the system is, within what is left of
# the activation timeout), else age from PATH.
find_age() {
  if [ -z "$age_path" ]; then
    age=$(command -v age) ||
      fail secrets 11 "age not found on the host: add it to the system or set secrets.age in the fleet"
    return 0
  fi
  realise_path "$age_path" "the age package " secrets 11 "$state_dir/realised-age"
  store_path_resolves "$age_path" ||
    fail secrets 11 "the age package $age_path is a link or resolves elsewhere: only a store path that is itself is run"
  require_pinned_signature "$age_path" "the age package " secrets 11
  age=$age_path/bin/age
  [ -x "$age" ] || fail secrets 11 "the age package $age_path has no bin/age"
}

user_exists() { digits "$1" || id -u "$1" >/dev/null 2>&1; }

group_exists() {
  digits "$1" || getent group "$1" >/dev/null 2>&1 ||
    awk -F: -v g="$1" '$1 == g { found = 1 } END { exit !found }' /etc/group 2>/dev/null
}

# Secret $1 cannot be installed because $2.
secret_failed() { step_failed secrets 11 "secret $1: $2"; }

# The name in the age header's nixship-secret stanza of $s_age, which the header's MAC binds (the
# decryption that follows checks it): a file encrypted as one secret is never installed as
# another. One without it (written before names were bound) is taken unless trust is pinned:
# there the caller may not choose which secret's file goes where. restore-secrets takes it all
# the same: the bundle it installs again is root's own, kept when an activation (under the
# rules then in force) installed it, and a host whose nixship-activate was just upgraded must
# still find its secrets after a boot.
# shellcheck disable=SC2016 # awk's
SECRET_STANZA_AWK='
NR == 1 { next }
/^---/ { exit }
$1 == "->" && $2 == "nixship-secret" { n++; v = NF == 3 ? $3 : "" }
END { if (n == 1 && v != "") print v; else if (n > 0) print "/" }
'
secret_name_bound() {
  s_bound=$(LC_ALL=C awk "$SECRET_STANZA_AWK" "$s_age") || s_bound=/
  case $s_bound in
    "$s_name") ;;
    "")
      [ "$pinned" = 0 ] || [ "$action" = restore-secrets ] ||
        secret_failed "$s_name" "its age file does not name the secret it is (written before nixship bound names), and this host's trust is pinned: run 'nixship secrets rekey' to write each file anew with its name" ;;
    *[!A-Za-z0-9_.-]* | -*)
      secret_failed "$s_name" "its age file's nixship-secret stanza is malformed" ;;
    *)
      secret_failed "$s_name" "its age file was encrypted as secret '$s_bound': a file is installed under the name it was encrypted as alone" ;;
  esac
}

# Decrypts the secret of line s_n (s_name ... s_sha) into .nixship-NAME.new beside its PATH,
# with its owner, group and mode, or fails naming it. age's stdout is never shown.
decrypt_secret() {
  s_age=$secrets_work/$s_n.age
  base64 -d <"$secrets_work/$s_n.b64" >"$s_age" 2>/dev/null ||
    bundle_bad "line $s_n: BASE64 does not decode"
  rm -f -- "$secrets_work/$s_n.b64"
  [ "$(sha256sum <"$s_age" | cut -c1-64)" = "$s_sha" ] ||
    secret_failed "$s_name" "its age file does not match its sha256"
  secret_name_bound
  user_exists "$s_owner" || secret_failed "$s_name" "owner '$s_owner' does not exist on this host"
  group_exists "$s_group" || secret_failed "$s_name" "group '$s_group' does not exist on this host"
  case $s_path/ in "$state_dir"/*) secret_failed "$s_name" "$s_path is in nixship's $state_dir" ;; esac
  [ ! -d "$s_path" ] || secret_failed "$s_name" "$s_path is a directory"
  s_dir=${s_path%/*}
  # Every directory on the way, as written and as resolved, root's alone (missing ones made so):
  # then nobody but root can swap one for a link while the secret is written, moved or removed.
  root_only_path "$s_dir" create || secret_failed "$s_name" "$d_why"
  s_real=$d_real
  s_fs=$(stat -f -c %T -- "$s_real" 2>/dev/null)
  case $s_fs in
    tmpfs | ramfs) ;;
    *) secret_failed "$s_name" "$s_dir is not on a tmpfs (it is on ${s_fs:-an unknown file system})" ;;
  esac
  s_temp=$s_real/.nixship-$s_name.new
  printf '%s\n' "$s_temp" >>"$secrets_work/temps"
  printf '%s\n' "$s_real" >"$secrets_work/dir-$s_n"
  rm -f -- "$s_temp"
  remaining_set
  [ "$r" -gt 0 ] || timed_out secrets
  [ "$r" -le "$SECRETS_TIMEOUT" ] || r=$SECRETS_TIMEOUT
  # The file is root's only until chown and chmod. bounded's redirection makes it, not age -o:
  # age 1.1 makes that file at the first byte it writes, so never for an empty secret.
  umask 077
  bounded "$s_temp" "$r" "$age" -d -i "$host_key" -- "$s_age"
  s_status=$?
  umask 022
  case $s_status in
    0) ;;
    124 | 137) secret_failed "$s_name" "decrypting it took longer than ${r}s" ;;
    *) secret_failed "$s_name" "cannot be decrypted with $host_key (not encrypted to this host, or tampered)" ;;
  esac
  chown -- "$s_owner:$s_group" "$s_temp" ||
    secret_failed "$s_name" "cannot give it owner $s_owner and group $s_group"
  chmod -- "$s_mode" "$s_temp" || secret_failed "$s_name" "cannot give it mode $s_mode"
}

# Removes secret file $1 of an earlier bundle, following no link: only where every directory on
# its way is root's alone (else it is left, and said), by its name within that directory.
remove_secret() {
  if ! root_only_path "${1%/*}"; then
    log "left $1, which an earlier bundle installed: $d_why"
    return 0
  fi
  (cd "$d_real" && [ "$(pwd -P)" = "$d_real" ] && exec rm -f -- "${1##*/}") ||
    log "could not remove $1, which an earlier bundle installed"
}

# Once all are decrypted: each replaces its PATH (a rename within its directory), the PATHs of
# the previous manifest that this one lacks go, and this manifest is recorded. Not interrupted.
commit_secrets() {
  trap '' INT TERM
  s_n=1
  while read -r s_name _ _ _ s_path _ <&3; do
    s_n=$((s_n + 1))
    # Within the directory checked (entered once, and still where it was resolved): a rename
    # there replaces the name without following it; -T refuses a directory planted at it. "--":
    # a name may start with "-", which mv would take for an option (and move nothing).
    s_real=$(cat -- "$secrets_work/dir-$s_n")
    (cd "$s_real" && [ "$(pwd -P)" = "$s_real" ] && exec mv -fT -- ".nixship-$s_name.new" "${s_path##*/}") ||
      secret_failed "$s_name" "cannot be moved to $s_path"
  done 3<"$secrets_work/manifest"
  if [ -f "$state_dir/secrets" ]; then
    cut -d' ' -f5 -- "$secrets_work/manifest" >"$secrets_work/paths"
    while read -r _ _ _ _ s_path _ <&3; do
      case $s_path in /run/?*) grep -a -q -x -F -e "$s_path" -- "$secrets_work/paths" || remove_secret "$s_path" ;; esac
    done 3<"$state_dir/secrets"
  fi
  mv -f -- "$secrets_work/manifest" "$state_dir/secrets"
  # A test leaves the boot default as it was: the bundle kept for after a boot stays its own.
  [ -n "$secrets_file" ] || [ "$action" = test ] || save_secrets
  rm -rf -- "$secrets_work"
  log "installed $s_what"
  trap 'interrupted INT' INT
  trap 'interrupted TERM' TERM
}

install_secrets() {
  l_phase=secrets
  mark_phase secrets
  write_info
  secrets_discard
  { mkdir -p -- "$state_dir" && mkdir -m 700 -- "$secrets_work"; } ||
    step_failed secrets 11 "cannot create $secrets_work"
  if [ -n "$secrets_file" ]; then
    head -c "$((MAX_SECRETS_BUNDLE + 1))" -- "$secrets_file" >"$secrets_work/bundle" ||
      step_failed secrets 11 "cannot read $secrets_file"
    [ "$(($(wc -c <"$secrets_work/bundle")))" -le "$MAX_SECRETS_BUNDLE" ] || bundle_large
  elif [ -n "$secrets_url" ]; then
    fetch_bundle
  elif [ "$pinned" = 1 ] && [ -z "${NIXSHIP_SECRETS+set}" ]; then
    # A pinned script is started by its wrapper, not piped: the bundle comes on its input.
    head -c "$((MAX_SECRETS_BUNDLE + 1))" >"$secrets_work/bundle" ||
      step_failed secrets 11 "cannot write $secrets_work/bundle"
    [ "$(($(wc -c <"$secrets_work/bundle")))" -le "$MAX_SECRETS_BUNDLE" ] || bundle_large
  else
    printf '%s' "$NIXSHIP_SECRETS" >"$secrets_work/bundle" ||
      step_failed secrets 11 "cannot write $secrets_work/bundle"
    [ "$(($(wc -c <"$secrets_work/bundle")))" -le "$MAX_SECRETS_BUNDLE" ] || bundle_large
  fi
  check_bundle
  require_declared_secrets
  s_count=$(($(wc -l <"$secrets_work/manifest")))
  s_what="$s_count secrets"
  [ "$s_count" != 1 ] || s_what="1 secret"
  if [ "$s_count" = 0 ]; then
    log "installing $s_what"
  else
    find_age
    [ -r "$host_key" ] || step_failed secrets 11 "cannot read the host key $host_key"
    log "installing $s_what (age: $age, key: $host_key)"
    # Each line's BASE64 into a file of its own, in one pass over the bundle.
    awk -v dir="$secrets_work" 'NR > 1 { f = dir "/" NR ".b64"; print $7 >f; close(f) }' \
      "$secrets_work/bundle" || step_failed secrets 11 "cannot split the secrets bundle"
    s_n=1
    while read -r s_name s_owner s_group s_mode s_path s_sha <&3; do
      s_n=$((s_n + 1))
      decrypt_secret
    done 3<"$secrets_work/manifest"
  fi
  commit_secrets
}

# Keeps the bundle just installed (its ciphertexts, which only the host key opens) and the age
# package it named on the disk, root's alone, for restore-secrets after a boot. Best effort: the
# secrets are installed; a host that cannot keep them gets them again at its next activation.
save_secrets() {
  (mkdir -p -- "$boot_dir" && umask 077 &&
    cp -- "$secrets_work/bundle" "$saved_secrets.new" &&
    printf '%s\n' "$age_path" >"$saved_age.new" &&
    mv -f -- "$saved_age.new" "$saved_age" && mv -f -- "$saved_secrets.new" "$saved_secrets") ||
    log "could not keep the secrets bundle in $saved_secrets: after a boot they are back only with the next activation"
}

# Whether the secrets installed are those of the bundle kept on the disk (its manifest is the
# installed one).
saved_secrets_installed() {
  [ -f "$state_dir/secrets" ] || return 1
  tail -n +2 -- "$saved_secrets" | cut -d' ' -f1-6 | cmp -s - "$state_dir/secrets"
}

# Whether $1 is an http or https URL of only the characters a URL holds (RFC 3986): no space,
# quote or backslash, which could end the string curl reads it in. Else why not, in u_why.
url_check() {
  case $1 in
    *[!]A-Za-z0-9._~:/?#[@!\$\&\'\(\)*+,\;=%-]*) u_why="holds a character a URL does not (percent-encode it)" ;;
    http://?* | https://?*) return 0 ;;
    *) u_why="must be an http or https URL" ;;
  esac
  return 1
}

# --secrets and the options that go with it.
check_secrets_options() {
  if [ "$secrets" = 0 ]; then
    [ -z "$age_path$host_key$secrets_url$secrets_sha256" ] ||
      usage "activate: --age, --host-key, --secrets-url and --secrets-sha256 go with --secrets"
    return 0
  fi
  [ -z "$age_path" ] || store_path_form "$age_path" ||
    usage "activate: --age must be a store path in canonical form (/nix/store/HASH-NAME, nothing before or after), got '$age_path'"
  [ -z "$host_key" ] || [ "$host_key" = /etc/ssh/ssh_host_ed25519_key ] ||
    refuse_when_pinned --host-key "secrets are decrypted with the host's own key"
  host_key=${host_key:-/etc/ssh/ssh_host_ed25519_key}
  case $host_key in /?*) ;; *) usage "activate: --host-key must be an absolute path" ;; esac
  if [ -n "$secrets_url$secrets_sha256" ]; then
    # "-": the URL is the first line of the input, kept out of every process's arguments (a
    # presigned URL carries the signer's access key and session token).
    if [ "$secrets_url" = - ]; then
      secrets_url=$(head -c "$((MAX_SECRETS_URL + 2))" | head -n 1)
    fi
    [ ${#secrets_url} -le "$MAX_SECRETS_URL" ] ||
      usage "activate: --secrets-url is longer than $MAX_SECRETS_URL characters"
    # "none": the empty bundle (nothing to fetch); "age:BASE64": the URL sealed to this host's
    # key, opened once age is at hand (fetch_bundle).
    case $secrets_url in
      none) ;;
      age:*[!A-Za-z0-9+/=]* | age:) usage "activate: --secrets-url age:… must be base64 of an age file" ;;
      age:*) ;;
      *) url_check "$secrets_url" || usage "activate: --secrets-url $u_why" ;;
    esac
    case $secrets_sha256 in *[!0-9a-f]* | '') secrets_sha256=bad ;; esac
    [ ${#secrets_sha256} = 64 ] ||
      usage "activate: --secrets-url needs --secrets-sha256, the bundle's sha256 in lowercase hex"
  elif [ -z "${NIXSHIP_SECRETS+set}" ] && [ "$pinned" = 0 ]; then
    usage "activate: --secrets needs the bundle in NIXSHIP_SECRETS (set before the script in its input) or --secrets-url"
  fi
}

# Removes what an unfinished secrets step wrote: the files decrypted beside their PATHs (each
# listed before it is made) and the work directory.
secrets_discard() {
  [ -d "$secrets_work" ] || return 0
  if [ -f "$secrets_work/temps" ]; then
    while IFS= read -r s_temp; do
      case $s_temp in /run/*/.nixship-*.new | /run/.nixship-*.new) rm -f -- "$s_temp" ;; esac
    done <"$secrets_work/temps"
  fi
  rm -rf -- "$secrets_work"
}

# The sha256 of the installed secrets' manifest (of nothing, when none were ever installed).
secrets_digest() {
  # No secrets: the digest of nothing, known (no sha256sum started for each status).
  [ -f "$state_dir/secrets" ] ||
    { printf 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'; return 0; }
  s_sum=$(sha256sum <"$state_dir/secrets")
  printf '%s' "${s_sum%% *}"
}

