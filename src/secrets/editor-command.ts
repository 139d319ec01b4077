// The editor `secrets edit` starts on its scratch file: $EDITOR (else $VISUAL, else vi) as the
// user wrote it, and where that is vim or neovim, with what it keeps on disk turned off for the
// run: its viminfo (neovim: shada), which holds the registers a `dd` or `cw` fills with the old
// value; its swap file; its undo file and backups. Other editors are started as they are: their
// own history or backup settings are theirs (docs/secrets.md says so).
import { access, constants, realpath } from "node:fs/promises";
import { basename, delimiter, isAbsolute, join } from "node:path";

/** The programs vim and neovim install as (Debian's alternatives resolve `vi` to one of them). */
const VIM = /^(?:vim(?:\.(?:basic|tiny|nox|gtk3?|athena))?|nvim|gvim)$/;

/** What turns vim's and neovim's state on disk off for one run. */
export const VIM_NO_STATE = "-i NONE -n --cmd 'set noundofile nobackup nowritebackup'";

/** `editor` with VIM_NO_STATE after its words when its program, found on `path`, is vim. */
export async function editorCommand(editor: string, path: string | undefined): Promise<string> {
  const program = editor.trim().split(/\s+/, 1)[0] ?? "";
  const found = await programOnPath(program, path);
  return found !== undefined && VIM.test(basename(found)) ? `${editor} ${VIM_NO_STATE}` : editor;
}

/** The real file `program` runs (links resolved), as the shell finds it; undefined: none. */
async function programOnPath(
  program: string,
  path: string | undefined,
): Promise<string | undefined> {
  if (program === "") return undefined;
  const candidates = program.includes("/")
    ? [program]
    : (path ?? "").split(delimiter).flatMap((dir) => (isAbsolute(dir) ? [join(dir, program)] : []));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return await realpath(candidate);
    } catch {
      // Not there, or not executable: the shell looks further.
    }
  }
  return undefined;
}
