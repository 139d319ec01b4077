// Times a host or a record gives in seconds since the epoch: only those a Date can show are
// taken, so that no view meets one it cannot print.

/** 9999-12-31T23:59:59Z: the last second an ISO 8601 date of four-digit years shows. */
export const MAX_EPOCH_SECONDS = 253_402_300_799;

/** Whether `value` is a whole number of seconds from the epoch up to MAX_EPOCH_SECONDS. */
export function isEpochSeconds(value: unknown): value is number {
  return (
    typeof value === "number" &&
    Number.isSafeInteger(value) &&
    value >= 0 &&
    value <= MAX_EPOCH_SECONDS
  );
}
