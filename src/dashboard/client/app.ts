// The dashboard's client script (compiled by tsc, served from the package): keeps the page's
// live part (#live) current without a reload. The server says over an event stream when its
// snapshot changed; the page then fetches itself again and swaps #live for the new one. The
// server renders and escapes everything; this script only moves server-made markup.
// Filters apply as they change, without leaving the field being typed in.
//
// A browser gives an origin at most 6 connections over HTTP/1.1, and an event stream holds one
// for as long as its page is open: with a stream per tab, a seventh tab would never load. So one
// tab of the browser holds the stream (the one holding a Web Lock; when it closes, the next
// takes the lock) and passes each event to the others over a BroadcastChannel.

import { ago } from "./ago.js";

const live = (): HTMLElement | null => document.getElementById("live");

let fetching: Promise<void> | undefined;
let again = false;
/** The page to fetch next: the newest asked for (filters change it while a fetch runs). */
let wanted = "";

/**
 * Fetches `url` and swaps in its #live. One fetch at a time; asked again meanwhile, it fetches
 * once more when that one ends, the newest URL asked for.
 */
async function refresh(url: string): Promise<void> {
  wanted = url;
  if (fetching !== undefined) {
    again = true;
    return;
  }
  fetching = (async () => {
    do {
      again = false;
      // A page that cannot be had now (429, 503, the server gone) is left as it is: the next
      // event or change asks again.
      const response = await fetch(wanted, { headers: { accept: "text/html" } }).catch(
        () => undefined,
      );
      if (response?.ok !== true) continue;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const next = doc.getElementById("live");
      const current = live();
      if (next === null || current === null) continue;
      const focus = focusedIn(current);
      current.replaceWith(document.adoptNode(next));
      // A keyboard user's place stays where it was: on the same link or field of the new one.
      if (focus !== undefined)
        next.querySelector<HTMLElement>(focus)?.focus({ preventScroll: true });
    } while (again);
  })().finally(() => {
    fetching = undefined;
  });
  await fetching;
}

/**
 * A selector for the element of `root` that has the keyboard's focus (by its id, else its link),
 * to find its copy in the #live that replaces `root`; undefined when the focus is elsewhere.
 */
function focusedIn(root: HTMLElement): string | undefined {
  const e = document.activeElement;
  if (!(e instanceof HTMLElement) || e === root || !root.contains(e)) return undefined;
  if (e.id !== "") return `#${CSS.escape(e.id)}`;
  const href = e.getAttribute("href");
  return href === null ? undefined : `${e.localName}[href="${CSS.escape(href)}"]`;
}

const LOCK = "nixship-dashboard-events";

function onVersion(version: string): void {
  if (live()?.dataset.version !== version) void refresh(location.href);
}

/** Opens the event stream; each snapshot version goes to `tell`. */
function openStream(tell: (version: string) => void): void {
  const events = new EventSource("/api/events");
  events.addEventListener("snapshot", (event) => tell((event as MessageEvent<string>).data));
}

function follow(): void {
  if (typeof EventSource === "undefined") return;
  if (typeof BroadcastChannel === "undefined" || navigator.locks === undefined) {
    openStream(onVersion);
    return;
  }
  const channel = new BroadcastChannel(LOCK);
  channel.onmessage = (event: MessageEvent<string>) => onVersion(event.data);
  // Held until this tab closes: then the next tab waiting for it opens the stream.
  void navigator.locks.request(
    LOCK,
    () =>
      new Promise<never>(() => {
        openStream((version) => {
          channel.postMessage(version);
          onVersion(version);
        });
      }),
  );
}

function filtersApplyAsTheyChange(): void {
  const form = document.querySelector<HTMLFormElement>("form.filters");
  if (form === null) return;
  let timer: number | undefined;
  const apply = () => {
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(form))
      if (typeof v === "string" && v !== "") params.set(k, v);
    const url = `${location.pathname}${params.size > 0 ? `?${params}` : ""}`;
    history.replaceState(null, "", url);
    void refresh(url);
  };
  form.addEventListener("change", apply);
  form.addEventListener("input", () => {
    clearTimeout(timer);
    timer = window.setTimeout(apply, 250);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
}

/** Keeps every "how long ago" of the page current, each second, between renders. */
function tickTimes(): void {
  window.setInterval(() => {
    const now = new Date();
    for (const t of document.querySelectorAll<HTMLTimeElement>("time[data-ago]")) {
      const text = ago(t.dateTime, now);
      if (t.textContent !== text) t.textContent = text;
    }
  }, 1000);
}

follow();
filtersApplyAsTheyChange();
tickTimes();
