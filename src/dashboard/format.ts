// Small formatting for pages: times as "how long ago", durations, counts. Pure.

export { ago, duration } from "./client/ago.js";
