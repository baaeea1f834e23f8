// Windowing for long lists (the session list, a tag's sessions in the tree): past WINDOW_FROM
// items only those in view, and MARGIN either side, are rendered; two spacers stand for the
// rest, so the scrollbar is right. 500 sessions then cost the page a few dozen rows, not
// 500 rows and 500 tree nodes laid out in one long task.
//
// "In view" is the part of the list inside the viewport and every scrolling ancestor (the
// sidebar and middle column scroll on a desktop; on a phone the page itself does). Item
// heights are taken as uniform: the average of the rendered ones.

import { useEffect, useRef, useState } from "./vendor/htm-preact-standalone.module.js";
import { html } from "./hooks.js";

export const WINDOW_FROM = 60;
const MARGIN = 6;

function scrolls(node) {
  const overflow = getComputedStyle(node).overflowY;
  return overflow === "auto" || overflow === "scroll";
}

/** The scrolling ancestors of `node`, innermost first. */
function scrollers(node) {
  const out = [];
  for (let up = node.parentElement; up && up !== document.body; up = up.parentElement) {
    if (scrolls(up)) out.push(up);
  }
  return out;
}

/** [top, bottom] of what can be seen of `node`'s surroundings, in viewport pixels. */
function clipOf(node) {
  let top = 0;
  let bottom = window.innerHeight;
  for (const up of scrollers(node)) {
    const rect = up.getBoundingClientRect();
    top = Math.max(top, rect.top);
    bottom = Math.min(bottom, rect.bottom);
  }
  return [top, bottom];
}

/**
 * The window of a list of `count` items about `estimate` px tall each:
 * `{first, last, windowed, spacers(items), reveal(index)}`: render items first..last-1 and
 * pass them to `spacers`, which puts them between the two stand-ins (`<li>` by default);
 * `reveal(i)` scrolls item i into view (it is rendered at the next frame).
 */
export function useWindow(count, estimate) {
  const head = useRef(null);
  const foot = useRef(null);
  const height = useRef(estimate);
  // Before anything is measured: as many as the window's height could show.
  const [range, setRange] = useState(() => [0, Math.ceil(window.innerHeight / estimate) + MARGIN]);
  const windowed = count > WINDOW_FROM;
  const first = windowed ? Math.min(range[0], count) : 0;
  const last = windowed ? Math.min(Math.max(range[1], first), count) : count;
  const shown = useRef([first, last]);
  shown.current = [first, last];

  const measure = () => {
    const [a, b] = shown.current;
    if (!head.current || !foot.current || b <= a) return;
    const span = foot.current.getBoundingClientRect().top - head.current.getBoundingClientRect().bottom;
    if (span > 0) height.current = span / (b - a);
  };

  useEffect(() => {
    if (!windowed) return undefined;
    let frame = 0;
    const update = () => {
      frame = 0;
      if (!head.current) return;
      measure();
      const start = head.current.getBoundingClientRect().top; // where item 0 is
      const [top, bottom] = clipOf(head.current);
      const h = height.current;
      const a = Math.min(count, Math.max(0, Math.floor((top - start) / h) - MARGIN));
      const b = Math.min(count, Math.max(a, Math.ceil((bottom - start) / h) + MARGIN));
      setRange((old) => (old[0] === a && old[1] === b ? old : [a, b]));
    };
    const schedule = () => {
      if (!frame) frame = requestAnimationFrame(update);
    };
    window.addEventListener("scroll", schedule, { capture: true, passive: true });
    window.addEventListener("resize", schedule);
    schedule();
    return () => {
      cancelAnimationFrame(frame);
      window.removeEventListener("scroll", schedule, { capture: true });
      window.removeEventListener("resize", schedule);
    };
  }, [count, windowed]);

  const reveal = (index) => {
    if (!head.current) return;
    measure();
    const h = height.current;
    const at = head.current.getBoundingClientRect().top + index * h;
    const [top, bottom] = clipOf(head.current);
    if (at >= top && at + h <= bottom) return;
    const by = at - top - Math.max(0, (bottom - top - h) / 2); // centred
    const [inner] = scrollers(head.current);
    if (inner) inner.scrollTop += by;
    else window.scrollBy(0, by);
  };

  const spacer = (ref, px, tag) => html`<${tag} ref=${ref} class="spacer" aria-hidden="true"
    role="presentation" style=${{ height: `${px}px` }}></${tag}>`;
  const spacers = (items, tag = "li") => [
    spacer(head, first * height.current, tag),
    items,
    spacer(foot, (count - last) * height.current, tag),
  ];
  return { first, last, windowed, spacers, reveal };
}
