/** Pieces shared by the benchmarks (kept here so two benches reading one corpus cannot drift apart). */
import fs from 'node:fs';

/** Resident and peak memory of process `pid` (VmRSS, VmHWM from /proc), in MB. */
export function procMemory(pid: number): { rss_mb: number; hwm_mb: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  return { rss_mb: Math.round(kb('VmRSS') / 1024), hwm_mb: Math.round(kb('VmHWM') / 1024) };
}

// Pronounceable unique words: base-K digits over syllables (letters only: one FTS5 token each).
const SYLLABLES = 'ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu ra re ri ro ru sa se si so su ta te ti to tu va ve vi vo vu za ze zi zo zu'.split(' ');

/** The i-th word of bench/retrieval.ts's corpus vocabulary (bench/serve-memory.ts queries that corpus). */
export function corpusWord(i: number): string {
  let s = '';
  let n = i;
  do {
    s += SYLLABLES[n % SYLLABLES.length];
    n = Math.floor(n / SYLLABLES.length);
  } while (n > 0);
  return `${s}x`; // the suffix keeps the porter stemmer from merging words
}
