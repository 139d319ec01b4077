// The one text of an interrupt, whatever layer meets it: "interrupted (SIGINT)", from the abort
// reason the command's trap gave (cli/interrupts.ts), said once.

/** "interrupted (REASON)" from the signal's abort reason; "interrupted" when it gave none. */
export function interruptReason(signal: AbortSignal | undefined): string {
  const reason: unknown = signal?.reason;
  const text =
    typeof reason === "string"
      ? reason
      : reason instanceof Error && reason.name !== "AbortError"
        ? reason.message
        : "";
  if (text === "") return "interrupted";
  return text.startsWith("interrupted") ? text : `interrupted (${text})`;
}
