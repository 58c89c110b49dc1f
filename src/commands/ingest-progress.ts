/**
 * What `mneme ingest` shows while it runs (issue 14, item 2): on a terminal a progress bar with the
 * total, the percentage and the ETA (cli-progress); otherwise one summary line every
 * PROGRESS_LINE_MS (logs and CI stay readable). The total is counted by a walk before the run.
 */
import type { Writable } from 'node:stream';
import cliProgress from 'cli-progress';
import { walk } from '../../ingest/walk.ts';

/** Interval of the summary line when stderr is not a terminal, in ms. */
export const PROGRESS_LINE_MS = 5000;
/** Redraw interval of the terminal bar, in ms. */
export const PROGRESS_REDRAW_MS = 200;

export interface IngestProgressState {
  filesDone: number;
  filesTotal: number;
  filesFailed: number;
  chunksEmbedded: number;
  /** ms since the run started. */
  elapsedMs: number;
}

/** Seconds left from the pace so far (pure); null before the first file. */
export function etaSeconds(s: IngestProgressState): number | null {
  if (s.filesDone <= 0 || s.filesTotal <= 0) return null;
  return (s.elapsedMs / s.filesDone) * Math.max(0, s.filesTotal - s.filesDone) / 1000;
}

/** "1 h 02 min", "3 min 05 s", "12 s" (pure). */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${s} s`;
}

/** The non-terminal summary line (pure), e.g. `ingest: 120/400 files (30%), 2 failed, 900 chunks embedded, ETA 40 s`. */
export function progressLine(s: IngestProgressState): string {
  const pct = s.filesTotal > 0 ? Math.floor((100 * s.filesDone) / s.filesTotal) : 0;
  const eta = etaSeconds(s);
  return `ingest: ${s.filesDone}/${s.filesTotal} files (${pct}%), ${s.filesFailed} failed, ${s.chunksEmbedded} chunks embedded, ETA ${eta === null ? 'unknown' : formatDuration(eta)}`;
}

/** Files the run will look at (the same walk the pipeline makes; unsupported and excluded ones included). */
export async function countFiles(paths: string[], dataDir: string): Promise<number> {
  let n = 0;
  for await (const item of walk(paths, { exclude: [dataDir] })) if (item.type !== 'skipped') n++;
  return n;
}

export interface ProgressDisplay {
  update(s: Omit<IngestProgressState, 'elapsedMs' | 'filesTotal'>): void;
  /** Removes the bar (terminal) — call before printing the summary. */
  stop(): void;
}

/** A bar on a terminal, summary lines elsewhere. */
export function progressDisplay(out: Writable, isTty: boolean, filesTotal: number, now: () => number = Date.now): ProgressDisplay {
  const started = now();
  if (isTty) {
    const bar = new cliProgress.SingleBar(
      {
        stream: out as unknown as NodeJS.WritableStream,
        format: 'ingest |{bar}| {percentage}% | {value}/{total} files | {failed} failed | {chunks} chunks embedded | ETA {eta_formatted}',
        fps: 1000 / PROGRESS_REDRAW_MS,
        clearOnComplete: true,
        hideCursor: false,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(filesTotal, 0, { failed: 0, chunks: 0 });
    return {
      update: (s) => bar.update(Math.min(s.filesDone, filesTotal), { failed: s.filesFailed, chunks: s.chunksEmbedded }),
      stop: () => bar.stop(),
    };
  }
  let last = started;
  return {
    update: (s) => {
      const t = now();
      if (t - last < PROGRESS_LINE_MS) return;
      last = t;
      out.write(`${progressLine({ ...s, filesTotal, elapsedMs: t - started })}\n`);
    },
    stop: () => undefined,
  };
}
