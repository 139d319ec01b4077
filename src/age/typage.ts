// typage (age-encryption), loaded on first use: importing it costs every nixship command about
// 180 ms of start-up (its post-quantum code), and only the secrets need it.
type Typage = typeof import("age-encryption");

let loading: Promise<Typage> | undefined;

export function typage(): Promise<Typage> {
  loading ??= import("age-encryption");
  return loading;
}
