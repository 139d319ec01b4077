# --- Secrets (see the header): step 2, after realise and before the profile.

# Removes what an unfinished secrets step wrote: the files decrypted beside their PATHs (each
# listed before it is made) and the work directory.
secrets_discard() {
  [ -d "$secrets_work" ] || return 0
  if [ -f "$secrets_work/temps" ]; then
    while IFS= read -r s_temp; do
      case $s_temp in /run/*/.nixship-*.new | /run/.nixship-*.new) rm -f "$s_temp" ;; esac
    done <"$secrets_work/temps"
  fi
  rm -rf "$secrets_work"
}

# A malformed bundle is the deployer's bug: exit 2, naming the line but never its content.

