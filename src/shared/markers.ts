/**
 * Citation markers as written in answers: `[1]`, `[1, 2]`, `[1-3]`. Pure and dependency-free, so the
 * server's citation parser and the browser's answer renderer read markers exactly alike.
 */

/** A range marker `[a-b]` wider than this is not expanded (it is noise, not a citation). */
export const MAX_RANGE_WIDTH = 20;

/** One marker; group 1 is its body ("1", "1, 2", "1-3"). Global: use with matchAll. */
export const CITATION_MARKER = /\[\s*(\d{1,4}(?:\s*(?:[,;]|[-–])\s*\d{1,4})*)\s*\]/g;

/** The numbers a marker body denotes, in written order ("1-3, 5" → 1,2,3,5); null for absurd ranges. */
export function expandMarker(body: string): number[] | null {
  const out: number[] = [];
  for (const part of body.split(/\s*[,;]\s*/)) {
    const range = /^(\d+)\s*[-–]\s*(\d+)$/.exec(part);
    if (range) {
      const a = Number(range[1]);
      const b = Number(range[2]);
      if (b < a || b - a > MAX_RANGE_WIDTH) return null;
      for (let k = a; k <= b; k++) out.push(k);
    } else {
      out.push(Number(part));
    }
  }
  return out;
}
